"""The alert -> connector link by evidence message (grading/alert_links.py), on a simulated tenant run by
the local engine and, for the stored path, a real Azurite: an alert whose only link is a message its
connector relayed still names the connector, on the one-shot and the stored path; a steady-state stored
sweep reads no EmailEvents for the link and a new alert's new message id is looked up once; an id not
found before its ingestion delay is looked up again; a failed lookup is never graded as complete; hostile
ids stay literals."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from grading.hunting.rendering import Dialect, RenderedQuery, kql_dynamic, load_queries, render
from grading.settings import WindowSettings
from grading.sources.base import QueryResult
from grading.sources.local import LocalSource
from grading.storage.aggregates import HourlyAggregates
from grading.storage.connection import StorageConnection
from grading.storage.message_links import StoredMessageLinks
from grading.storage.tables import GraderTables
from grading.sweep import run_sweep

H = timedelta(hours=1)
END = datetime(2026, 11, 20, tzinfo=UTC)  # the simulator's default end of telemetry
TEMPLATE_ALERT = "Suspicious connector activity"
# A short baseline keeps the stored path's backfill (an hour of Table Storage writes per stored hour) quick; the
# link reads the change lookback (seven days), which it does not shorten.
WINDOWS = WindowSettings(baseline_lookback=timedelta(days=2))


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grading.cli import main

    folder = tmp_path_factory.mktemp("links") / "export"
    assert main(["simulate", "--seed", "1", "--days", "9", "--emails-per-day", "200", "--connectors", "6",
                 str(folder)]) == 0
    return folder


@pytest.fixture
def export(tenant: Path, tmp_path: Path) -> Path:
    """A copy of the simulated tenant this test may change."""
    folder = tmp_path / "export"
    shutil.copytree(tenant, folder)
    return folder


def store_of(connection_string: str, prefix: str) -> HourlyAggregates:
    return HourlyAggregates(GraderTables.open(StorageConnection(connection_string), prefix).aggregates)


def relayed_message(folder: Path, start: datetime, end: datetime, *, not_by: tuple[str, ...] = ()) -> dict[str, Any]:
    """An EmailEvents row of [start, end) relayed by a connector (not one of *not_by*), of the connector with the
    most mail in that range."""
    parquet = folder / "EmailEvents.parquet"
    table = pq.read_table(parquet) if parquet.exists() else pacsv.read_csv(folder / "EmailEvents.csv")
    rows = [r for r in table.to_pylist()
            if r["Connectors"] and r["Connectors"] not in not_by and start <= r["Timestamp"] < end]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["Connectors"]] = counts.get(r["Connectors"], 0) + 1
    busiest = max(sorted(counts), key=counts.__getitem__)
    return next(r for r in rows if r["Connectors"] == busiest)


def add_alert(folder: Path, alert_id: str, when: datetime, message_ids: list[str]) -> None:
    """A connector alert whose evidence is only MailMessage entities: no connector name, no IP, no account."""
    info = pq.read_table(folder / "AlertInfo.parquet")
    evidence = pq.read_table(folder / "AlertEvidence.parquet")
    template = next(r for r in info.to_pylist() if r["Title"] == TEMPLATE_ALERT)
    mail = next(r for r in evidence.to_pylist() if r["EntityType"] == "MailMessage")
    pq.write_table(info.from_pylist([*info.to_pylist(), dict(template, AlertId=alert_id, Timestamp=when)],
                                    schema=info.schema), folder / "AlertInfo.parquet")
    added = [dict(mail, AlertId=alert_id, Timestamp=when + timedelta(seconds=i), NetworkMessageId=m)
             for i, m in enumerate(message_ids)]
    pq.write_table(evidence.from_pylist([*evidence.to_pylist(), *added], schema=evidence.schema),
                   folder / "AlertEvidence.parquet")


def add_email(folder: Path, row: dict[str, Any]) -> None:
    table = pq.read_table(folder / "EmailEvents.parquet")
    pq.write_table(table.from_pylist([*table.to_pylist(), row], schema=table.schema), folder / "EmailEvents.parquet")


class Recording:
    """The local source, keeping the text of every lookup it is asked (and failing it when told to)."""

    def __init__(self, inner: LocalSource, fail: str | None = None) -> None:
        self.inner, self.fail = inner, fail
        self.name, self.dialect = inner.name, inner.dialect
        self.lookups: list[str] = []

    def run(self, query: RenderedQuery) -> QueryResult:
        if query.name == "alert_messages":
            self.lookups.append(query.text)
            if self.fail:
                return QueryResult.failed(query, self.fail)
        return self.inner.run(query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def sweep(folder: Path, end: datetime, fail: str | None = None, **kwargs: Any) -> tuple[Any, Recording]:
    with LocalSource(folder) as local:
        local.now = end
        source = Recording(local, fail)
        return run_sweep(source, now=end, window_start=end - H, window_settings=WINDOWS,  # type: ignore[arg-type]
                         **kwargs), source


def record(result: Any, name: str = "alert_messages") -> dict[str, Any]:
    return next(q for q in result.sweep["queries"] if q["name"] == name)


def alert_ids_of(result: Any, connector: str) -> list[str]:
    verdict = next(v for v in result.verdicts if v["connector"] == connector)
    return verdict["evidence"]["alertIds"]


def test_an_alert_linked_only_by_an_evidence_message_names_its_connector(export: Path) -> None:
    message = relayed_message(export, END - 4 * H, END - 3 * H, not_by=("Security Gateway",))
    connector = message["Connectors"]
    add_alert(export, "fa-only-by-message", END - 3 * H + timedelta(minutes=5), [message["NetworkMessageId"]])

    one_shot, _ = sweep(export, END)
    assert one_shot.complete, one_shot.sweep["errors"]
    alert = next(a for a in one_shot.results["connector_alerts"].rows if a["AlertId"] == "fa-only-by-message")
    assert alert["EvidenceConnectors"] == [connector]
    assert not any(alert["RemoteIPs"]) and not any(alert["AccountObjectIds"])  # nothing else links it
    assert "fa-only-by-message" in alert_ids_of(one_shot, connector)
    assert all("fa-only-by-message" not in v["evidence"]["alertIds"] for v in one_shot.verdicts
               if v["connector"] != connector)
    lookup = record(one_shot)
    assert (lookup["timeStart"], lookup["timeEnd"], lookup["tables"]) == (
        f"{END - 7 * 24 * H:%Y-%m-%dT%H:%M:%SZ}", f"{END:%Y-%m-%dT%H:%M:%SZ}", ["EmailEvents"])
    assert "EmailEvents" not in record(one_shot, "connector_alerts")["tables"]


def test_a_stored_steady_state_sweep_reads_no_email_events_for_the_link_and_a_new_id_is_looked_up_once(
        export: Path, storage_connection_string: str, unique_name: str) -> None:
    """The stored path: the new alert's only link is its evidence message, as in the test above; the
    links the stored sweep grades with are the one-shot sweep's."""
    from bench.scanned import rows_in_range

    store = store_of(storage_connection_string, unique_name)
    sweep(export, END - 3 * H, aggregates=store)
    steady, source = sweep(export, END - 2 * H, aggregates=store)
    lookup = record(steady)
    assert source.lookups == [] and lookup["rows"] == 0 and lookup["complete"]
    # The bench's measure, EmailEvents rows in the query's recorded time range: none, as it has no range.
    assert (lookup["timeStart"], lookup["timeEnd"], lookup["tables"], lookup["sourceRuns"]) == (None, None, [], 0)
    assert lookup["reason"] == "not run: every evidence message id is answered by the store"

    message = relayed_message(export, END - 3 * H, END - 2 * H, not_by=("Security Gateway",))
    add_alert(export, "fa-new", END - 2 * H + timedelta(minutes=5), [message["NetworkMessageId"]])
    fresh, source = sweep(export, END - H, aggregates=store)
    assert fresh.complete, fresh.sweep["errors"]
    [text] = source.lookups  # one lookup, of the new id alone
    assert f"let messageIds = {kql_dynamic([message['NetworkMessageId']])};" in text
    assert record(fresh)["messageIds"] == {"evidence": 4, "lookedUp": 1, "stored": 3}
    assert "fa-new" in alert_ids_of(fresh, message["Connectors"])
    with LocalSource(export) as local:
        counted = rows_in_range(local._export.connection, ["EmailEvents"], END - H - 7 * 24 * H, END - H,
                                local.tables()).email_events
    assert counted > 0  # what that one lookup costs: the change lookback's EmailEvents rows, once

    after, source = sweep(export, END, aggregates=store)
    assert source.lookups == [] and record(after)["timeStart"] is None
    assert record(after)["messageIds"] == {"evidence": 4, "lookedUp": 0, "stored": 4}
    assert "fa-new" in alert_ids_of(after, message["Connectors"])
    one_shot, _ = sweep(export, END)
    assert {v["connector"]: v["evidence"]["alertIds"] for v in after.verdicts} == {
        v["connector"]: v["evidence"]["alertIds"] for v in one_shot.verdicts}
    assert record(one_shot)["messageIds"] == {"evidence": 4, "lookedUp": 4}


def test_an_evidence_message_not_found_before_its_ingestion_delay_is_looked_up_again(
        export: Path, storage_connection_string: str, unique_name: str) -> None:
    store = store_of(storage_connection_string, unique_name)
    alert_time = END - H - timedelta(minutes=10)  # inside the ingestion delay (30 min) of the sweep at END - H
    add_alert(export, "fa-late", alert_time, ["late-message"])
    early, source = sweep(export, END - H, aggregates=store)
    assert len(source.lookups) == 1 and early.complete
    [link] = [v for k, v in StoredMessageLinks(store.table).read(END - 2 * H, END).items() if k == "late-message"]
    assert link.connectors == () and not link.final

    # Its EmailEvents row arrives late; the first sweep past the delay asks for it once more, and links it.
    relayed = relayed_message(export, END - 3 * H, END - 2 * H, not_by=("Security Gateway",))
    add_email(export, dict(relayed, NetworkMessageId="late-message", Timestamp=alert_time - timedelta(minutes=5)))
    later, source = sweep(export, END, aggregates=store)
    [text] = source.lookups
    assert 'dynamic(["late-message"])' in text
    assert "fa-late" in alert_ids_of(later, relayed["Connectors"])
    link = StoredMessageLinks(store.table).read(END - 2 * H, END)["late-message"]
    assert link.final and [c for c, _ in link.connectors] == [relayed["Connectors"]]


def test_a_failed_lookup_makes_the_alerts_input_incomplete_and_stores_nothing(
        tenant: Path, storage_connection_string: str, unique_name: str) -> None:
    store = store_of(storage_connection_string, unique_name)
    for kwargs in ({}, {"aggregates": store}):
        failed, source = sweep(tenant, END, fail="the service answered 500", **kwargs)
        assert len(source.lookups) == 1
        assert not failed.complete
        reason = "the connectors of its evidence messages could not be looked up (alert_messages): " \
                 "the service answered 500"
        assert f"connector_alerts: {reason}" in failed.sweep["errors"]
        lookup = record(failed)
        assert not lookup["complete"] and lookup["reason"] == "the service answered 500"
        assert lookup["timeStart"] and lookup["tables"] == ["EmailEvents"]
        assert not record(failed, "connector_alerts")["complete"]
        assert {v["classification"] for v in failed.verdicts} == {"unknown"}
        assert all(reason in v["reasonIfUnknown"] for v in failed.verdicts)
    # Nothing of the failed lookup was stored: the next sweep asks again, and completes.
    again, source = sweep(tenant, END, aggregates=store)
    assert len(source.lookups) == 1 and again.complete
    assert record(again)["messageIds"] == {"evidence": 3, "lookedUp": 3, "stored": 0}


HOSTILE_IDS = ['a"b', "c\\d", "e\nf\r\tg", '"); EmailEvents | take 1 //', "x'y", ""]


@pytest.mark.parametrize("dialect", list(Dialect))
def test_hostile_message_ids_are_rendered_as_literals(dialect: Dialect) -> None:
    fixture, now = Path(__file__).parent / "fixtures" / "small_tenant", datetime(2026, 3, 13, tzinfo=UTC)
    query = load_queries()["alert_messages"]
    real = relayed_message(fixture, now - 3 * 24 * H, now)
    ids = [*HOSTILE_IDS, real["NetworkMessageId"]]
    values = {"messageIds": ids, "changeStart": now - 3 * 24 * H, "windowEnd": now}
    text = render(query, values, dialect, start=now - 3 * 24 * H, end=now).text
    assert text.count("let messageIds = ") == 1
    assert f"let messageIds = {kql_dynamic(ids)};" in text
    assert "\nf" not in text  # the newline is escaped: the id cannot end a line of the query
    if dialect is Dialect.ADVANCED_HUNTING:  # the local engine runs the advanced-hunting dialect
        with LocalSource(fixture, now=now) as source:
            result = source.run(render(query, values))
        assert result.complete, result.reason
        assert [(r["NetworkMessageId"], r["Connector"]) for r in result.rows] == [
            (real["NetworkMessageId"], real["Connectors"])]


def test_the_daily_maintenance_deletes_links_older_than_the_change_lookback(
        storage_connection_string: str, unique_name: str) -> None:
    from grading.scheduler import SweepServices, run_maintenance
    from grading.settings import StorageSettings
    from grading.storage.message_links import MessageLink

    settings = StorageSettings(connection_string=storage_connection_string, table_prefix=unique_name,
                               remediation_queue=f"q-{unique_name}", report_container=f"r-{unique_name}")
    services = SweepServices.connect(StorageConnection.from_settings(settings), settings)
    assert services.aggregates is not None
    links = StoredMessageLinks(services.aggregates.table)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    links.write([MessageLink("old-id", (("Relay", old),), True, old, old),
                 MessageLink("recent-id", (), True, recent, recent)])
    assert run_maintenance(services)["removed"]["aggregates"] == 1
    assert set(links.read(now - timedelta(days=60), now)) == {"recent-id"}
