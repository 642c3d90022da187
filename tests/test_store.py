"""Table Storage of sweeps, verdicts, connector state and suppressions, against a real Azurite."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from store_fakes import iso, make_result, make_verdict

from grading.storage.connection import StorageConnection
from grading.storage.entities import CHUNK_CHARS
from grading.storage.store import GraderStore, StoreError, sweep_id_for

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
HOSTILE = [
    "Partner relay",
    "a/b\\c#d?e%f",
    "line\nbreak\x00nul\x7f\u0085",
    "‮evil-reversed 🐍 ' \" <script>",
    "x" * 2000,  # longer than a key can hold: cut and hashed
]


@pytest.fixture
def store(storage_connection_string: str, unique_name: str) -> GraderStore:
    return GraderStore.open(StorageConnection(connection_string=storage_connection_string), unique_name)


def snapshot(store: GraderStore) -> dict[str, list[Any]]:
    """Every entity of every table, with its etag: any write changes this."""
    out = {}
    for table in store.tables.all():
        rows = [(e["PartitionKey"], e["RowKey"], e.metadata["etag"], dict(e)) for e in table.list_entities()]
        out[table.table_name] = sorted(rows, key=lambda r: (r[0], r[1]))
    return out


def test_verdicts_baselines_and_sweep_record_read_back(store: GraderStore) -> None:
    start, end = T0 - timedelta(hours=24), T0
    verdicts = [
        make_verdict(
            name,
            "truePositive" if i == 1 else "falsePositive",
            window_start=start,
            window_end=end,
            change_time=T0 - timedelta(days=1),
            compromised_admin=i == 1,
        )
        for i, name in enumerate(HOSTILE)
    ]
    result = make_result(copy.deepcopy(verdicts), window_start=start, window_end=end)
    outcome = store.persist_sweep(result)

    assert outcome.written
    assert outcome.sweep_id == sweep_id_for(start, end, "fake") == result.sweep["sweepId"]
    stored = store.sweep_verdicts(outcome.sweep_id)
    assert sorted(stored, key=lambda v: v["connector"]) == sorted(verdicts, key=lambda v: v["connector"])

    record = store.get_sweep(outcome.sweep_id)
    assert record is not None
    assert record["status"] == "complete" and record["complete"] is True
    assert record["windowStart"] == iso(start) and record["windowEnd"] == iso(end)
    assert record["counts"]["truePositive"] == 1 and record["counts"]["falsePositive"] == 4
    assert record["queryCount"] == 14 and record["rowsReturned"] == 50 and record["connectors"] == 5

    latest = {v["connector"]: v for v in store.latest_verdicts()}
    assert set(latest) == set(HOSTILE)
    tp = latest[HOSTILE[1]]
    assert tp["classification"] == "truePositive" and tp["determination"] == "compromisedAccount"
    assert tp["incidentKey"] == verdicts[1]["incidentKey"]
    assert tp["baseline"]["band"] == {"median": 3.0, "upper": 9.0, "p99": 12.0, "hours": 300, "cutoff": iso(start)}
    assert tp["windowEnd"] == iso(end)
    assert latest[HOSTILE[0]]["determination"] is None

    history = store.history(HOSTILE[2], full=True)
    assert len(history) == 1 and history[0]["verdict"]["connector"] == HOSTILE[2]
    assert store.latest_verdicts()[0]["connector"] == HOSTILE[1]  # true positives first


def test_a_rerun_over_the_same_window_changes_nothing(store: GraderStore) -> None:
    start, end = T0 - timedelta(hours=1), T0
    first = make_result(
        [make_verdict("Partner relay", window_start=start, window_end=end)], window_start=start, window_end=end
    )
    assert store.persist_sweep(first).written
    before = snapshot(store)

    again = make_result(
        [make_verdict("Partner relay", window_start=start, window_end=end)], window_start=start, window_end=end
    )
    outcome = store.persist_sweep(again)

    assert not outcome.written
    assert outcome.sweep_id == first.sweep["sweepId"]
    assert snapshot(store) == before


def test_the_same_window_of_two_exports_is_two_sweeps(store: GraderStore) -> None:
    start, end = T0 - timedelta(hours=1), T0
    a = store.persist_sweep(
        make_result([make_verdict("Relay", window_start=start, window_end=end)], window_start=start, window_end=end),
        source="local:/exports/a",
    )
    b = store.persist_sweep(
        make_result([make_verdict("Relay", window_start=start, window_end=end)], window_start=start, window_end=end),
        source="local:/exports/b",
    )
    assert a.written and b.written and a.sweep_id != b.sweep_id
    assert len(store.history("Relay")) == 2


def test_an_incomplete_sweep_is_stored_as_such_and_redone_but_keeps_the_latest_state(store: GraderStore) -> None:
    s1, e1 = T0 - timedelta(hours=2), T0 - timedelta(hours=1)
    store.persist_sweep(
        make_result(
            [make_verdict("Relay", "truePositive", window_start=s1, window_end=e1)], window_start=s1, window_end=e1
        )
    )
    s2, e2 = e1, T0
    bad = make_result(
        [make_verdict("Relay", "unknown", window_start=s2, window_end=e2)],
        window_start=s2,
        window_end=e2,
        complete=False,
        errors=("mail_coverage: timed out",),
    )
    sweep_id = store.persist_sweep(bad).sweep_id

    record = store.get_sweep(sweep_id)
    assert record["status"] == "incomplete" and record["errors"] == ["mail_coverage: timed out"]
    assert store.latest_verdicts()[0]["classification"] == "truePositive"  # not hidden by an unknown
    assert [h["classification"] for h in store.history("Relay")] == ["unknown", "truePositive"]

    # The same window graded again completely replaces the incomplete record.
    good = make_result(
        [make_verdict("Relay", "falsePositive", window_start=s2, window_end=e2)], window_start=s2, window_end=e2
    )
    assert store.persist_sweep(good).written
    assert store.get_sweep(sweep_id)["status"] == "complete"
    assert store.latest_verdicts()[0]["classification"] == "falsePositive"


def test_an_older_window_does_not_overwrite_a_newer_state(store: GraderStore) -> None:
    new_s, new_e = T0 - timedelta(hours=1), T0
    old_s, old_e = T0 - timedelta(days=3), T0 - timedelta(days=2)
    store.persist_sweep(
        make_result(
            [make_verdict("Relay", "falsePositive", window_start=new_s, window_end=new_e)],
            window_start=new_s,
            window_end=new_e,
        )
    )
    store.persist_sweep(
        make_result(
            [make_verdict("Relay", "truePositive", window_start=old_s, window_end=old_e)],
            window_start=old_s,
            window_end=old_e,
        )
    )
    latest = store.latest_verdicts()[0]
    assert latest["classification"] == "falsePositive" and latest["windowEnd"] == iso(new_e)
    assert len(store.history("Relay")) == 2


def test_large_evidence_is_split_and_oversized_evidence_trimmed_deliberately(store: GraderStore) -> None:
    start, end = T0 - timedelta(hours=1), T0
    big = make_verdict("Big", window_start=start, window_end=end, other_senders=2_000)  # ~100 KB
    huge = make_verdict("Huge", window_start=start, window_end=end, other_senders=20_000)  # ~1 MB of a list
    huge["evidence"]["urls"] = ["https://example.test/" + "u" * 100] * 10
    long = make_verdict("Long", window_start=start, window_end=end, change_time=T0 - timedelta(hours=2))
    long["evidence"]["changes"][0]["parameters"] = [{"Name": "Comment", "Value": "p" * 600_000}]  # one huge string
    result = make_result(copy.deepcopy([big, huge, long]), window_start=start, window_end=end)
    outcome = store.persist_sweep(result)

    stored = {v["connector"]: v for v in store.sweep_verdicts(outcome.sweep_id)}
    assert stored["Big"] == big  # over one 64 KiB property, stored whole across several
    entity = store.tables.verdicts.get_entity(outcome.sweep_id, "Big")
    assert entity["VerdictChunks"] > 1 and all(
        len(entity[f"Verdict{i}"]) <= CHUNK_CHARS for i in range(entity["VerdictChunks"])
    )
    # Trimmed step by step, least needed first, and says so; the rest of the verdict is intact.
    cut = "evidence lists cut to their first 100 items"
    assert stored["Huge"]["evidence"]["storageTrimmed"] == [cut]
    assert stored["Huge"]["evidence"]["otherSenders"] == huge["evidence"]["otherSenders"][:100]
    assert stored["Huge"]["evidence"]["urls"] == huge["evidence"]["urls"]
    assert stored["Huge"]["findings"] == huge["findings"] and stored["Huge"]["incidentKey"] == huge["incidentKey"]
    assert stored["Long"]["evidence"]["storageTrimmed"] == [
        cut,
        "evidence.otherSenders",
        "evidence.urls",
        "evidence.changes[].parameters",
    ]
    assert stored["Long"]["evidence"]["changes"][0]["parameters"] == []
    assert stored["Long"]["evidence"]["changes"][0]["time"] == long["evidence"]["changes"][0]["time"]
    assert stored["Long"]["evidence"]["hourlyVolume"] == long["evidence"]["hourlyVolume"]
    assert set(outcome.trimmed) == {"Huge", "Long"}
    assert store.get_sweep(outcome.sweep_id)["complete"] is True


def test_hundreds_of_connectors_are_written_in_several_transactions(store: GraderStore) -> None:
    start, end = T0 - timedelta(hours=1), T0
    names = [f"relay-{i:03d}/#?" for i in range(230)]
    result = make_result(
        [make_verdict(n, window_start=start, window_end=end) for n in names], window_start=start, window_end=end
    )
    outcome = store.persist_sweep(result)
    assert sorted(v["connector"] for v in store.sweep_verdicts(outcome.sweep_id)) == sorted(names)
    assert len(store.latest_verdicts()) == 230


def test_suppress_needs_a_known_connector_and_a_reason(store: GraderStore) -> None:
    with pytest.raises(StoreError, match="no stored verdict"):
        store.suppress("Never seen", reason="test", by="ana")
    start, end = T0 - timedelta(hours=1), T0
    store.persist_sweep(
        make_result(
            [make_verdict("Relay", "truePositive", window_start=start, window_end=end)],
            window_start=start,
            window_end=end,
        )
    )
    with pytest.raises(StoreError, match="reason"):
        store.suppress("Relay", reason="   ", by="ana")

    s = store.suppress("Relay", reason="our new scanner\nforged: line", by="ana")
    latest = store.latest_verdicts()[0]
    assert latest["classification"] == "falsePositive" and latest["gradedClassification"] == "truePositive"
    assert latest["suppressionActive"] and latest["suppression"]["by"] == "ana"
    assert latest["suppression"]["reason"] == "our new scanner\nforged: line"  # stored as data; printed escaped
    assert s.incident_key == latest["incidentKey"]


def test_retention_removes_only_what_is_older_than_the_setting(
    storage_connection_string: str, unique_name: str
) -> None:
    clock = {"now": T0}
    store = GraderStore.open(
        StorageConnection(connection_string=storage_connection_string), unique_name, clock=lambda: clock["now"]
    )
    old_s, old_e = T0 - timedelta(days=100), T0 - timedelta(days=99)
    new_s, new_e = T0 - timedelta(hours=1), T0
    old = store.persist_sweep(
        make_result(
            [
                make_verdict("Gone", window_start=old_s, window_end=old_e),
                make_verdict("Kept", window_start=old_s, window_end=old_e),
            ],
            window_start=old_s,
            window_end=old_e,
        )
    )
    new = store.persist_sweep(
        make_result([make_verdict("Kept", window_start=new_s, window_end=new_e)], window_start=new_s, window_end=new_e)
    )

    removed = store.cleanup(older_than=timedelta(days=90))

    assert removed == {"verdicts": 2, "sweeps": 1, "incidents": 0, "connectors": 1}
    assert store.get_sweep(old.sweep_id) is None and store.sweep_verdicts(old.sweep_id) == []
    assert store.get_sweep(new.sweep_id) is not None
    assert [v["connector"] for v in store.latest_verdicts()] == ["Kept"]
    assert store.cleanup(older_than=timedelta(days=90)) == {"verdicts": 0, "sweeps": 0, "incidents": 0, "connectors": 0}
