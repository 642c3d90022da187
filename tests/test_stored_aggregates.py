"""Baselines from stored hourly aggregates (grading/storage/aggregates.py) against a real Azurite:
a backfill then hourly sweeps grade exactly as one sweep reading the whole history; the second of
two CLI sweeps an hour apart reads only the new hours; a late row is read once its delay has passed;
an interrupted backfill resumes; the sweep record says what each query read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from grading.settings import WindowSettings
from grading.sources.local import LocalSource
from grading.storage.aggregates import HourlyAggregates
from grading.storage.connection import StorageConnection
from grading.storage.tables import GraderTables
from grading.sweep import SPAN_KINDS, TRAFFIC_KIND, run_sweep

H = timedelta(hours=1)
END = datetime(2026, 11, 20, tzinfo=UTC)  # the simulator's default end of telemetry


@pytest.fixture(scope="session")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    from grading.cli import main

    out = {}
    for seed in (1, 2, 3):
        folder = tmp_path_factory.mktemp(f"agg{seed}") / "export"
        assert main(["simulate", "--seed", str(seed), "--days", "16", "--emails-per-day", "200",
                     "--connectors", "6", str(folder)]) == 0
        out[seed] = folder
    return out


def aggregates(connection_string: str, prefix: str) -> HourlyAggregates:
    tables = GraderTables.open(StorageConnection(connection_string), prefix)
    return HourlyAggregates(tables.aggregates)


def sweep(source: LocalSource, end: datetime, start: datetime, **kwargs: Any) -> Any:
    source.now = end
    return run_sweep(source, now=end, window_start=start, **kwargs)


def by_connector(result: Any) -> dict[str, tuple[str, str | None, int]]:
    return {v["connector"]: (v["classification"], v["determination"], v["score"]) for v in result.verdicts}


def canonical(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their ``make_list`` columns sorted (a list's order is the engine's)."""
    return [{k: sorted(map(str, v)) if isinstance(v, list) else v for k, v in r.items()} for r in rows]


def query(result: Any, name: str) -> dict[str, Any]:
    return next(q for q in result.sweep["queries"] if q["name"] == name)


# A backfill then a whole day of hourly sweeps on each of three seeds, against the one-shot sweep at the end
# (about half a minute a seed on two cores); tests/test_stored_week.py runs a week.
@pytest.mark.parametrize(("seed", "hours"), [(1, 24), (2, 24), (3, 24)])
def test_a_backfill_then_hourly_sweeps_grade_as_one_sweep_over_the_whole_history(
        seed: int, hours: int, tenants: dict[int, Path], storage_connection_string: str, unique_name: str) -> None:
    store = aggregates(storage_connection_string, unique_name)
    t0 = END - hours * H
    ws = WindowSettings()
    with LocalSource(tenants[seed]) as source:
        first = sweep(source, t0, t0 - 24 * H, aggregates=store)
        assert first.sweep["aggregates"] == {"used": True}
        backfill = query(first, "connector_history")
        assert backfill["sourceRuns"] >= 14  # a day per query run
        for k in range(1, hours + 1):
            last = sweep(source, t0 + k * H, t0 + (k - 1) * H, aggregates=store)
            assert last.complete, last.sweep["errors"]
            history = query(last, "connector_history")
            assert history["sourceRuns"] == 0 and history["timeStart"] is None  # the baseline: all stored
            traffic = query(last, "connector_traffic")
            # Only the new hour and the hour before it (its late-row re-read once the delay has passed).
            assert traffic["timeStart"] >= f"{t0 + (k - 2) * H:%Y-%m-%dT%H:%M:%SZ}"
            assert traffic["timeEnd"] == f"{t0 + k * H:%Y-%m-%dT%H:%M:%SZ}"
            for name in ("tenant_domains", "correspondents"):
                assert query(last, name)["timeStart"] >= f"{t0 + (k - 25) * H:%Y-%m-%dT%H:%M:%SZ}", name
            for name in SPAN_KINDS:  # the evaluation span: stored too, so only the new hours and their re-reads
                span = query(last, name)
                assert span["stored"]["hours"] == 24, name
                assert span["timeStart"] >= f"{t0 + (k - 4) * H:%Y-%m-%dT%H:%M:%SZ}", name
            for name in ("recipient_profile", "sender_domains"):  # split from connector_domains and correspondents
                assert query(last, name)["derivedFrom"] == ["connector_domains", "correspondents"]
                assert query(last, name)["timeStart"] is None and query(last, name)["tables"] == []
        reference = sweep(source, END, END - H)  # no store: every query reads its whole range
    assert by_connector(last) == by_connector(reference)
    assert last.sweep["tenantDomains"] == reference.sweep["tenantDomains"]
    for name in ("tenant_domains", "connector_traffic", "connector_history", "recipient_profile", "sender_domains",
                 "mail_coverage", "similar_senders", "connector_urls", "connector_attachments"):
        assert last.results[name].rows == reference.results[name].rows, name
    assert canonical(last.results["connector_domains"].rows) == canonical(reference.results["connector_domains"].rows)
    assert ws.ingestion_delay == timedelta(minutes=30)


def test_a_late_row_is_read_once_the_ingestion_delay_has_passed(
        tenants: dict[int, Path], storage_connection_string: str, unique_name: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    store = aggregates(storage_connection_string, unique_name)
    folder = tmp_path / "export"
    folder.mkdir()
    for f in tenants[1].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    table = pq.read_table(folder / "EmailEvents.parquet")
    rows = table.to_pylist()
    late_hour = END - 2 * H
    relayed = next(r for r in rows if r["Connectors"] and late_hour <= r["Timestamp"].replace(tzinfo=UTC) < END - H)
    late = dict(relayed, NetworkMessageId="late-0000", Timestamp=late_hour + timedelta(minutes=59))
    before = [r for r in rows if r is not late]
    pq.write_table(table.from_pylist(before, schema=table.schema), folder / "EmailEvents.parquet")
    with LocalSource(folder) as source:
        sweep(source, END - H, END - 2 * H, aggregates=store)
    stored, _ = store.rows(TRAFFIC_KIND, late_hour, late_hour + H)
    count = sum(r["Messages"] for r in stored if r["Connector"] == relayed["Connectors"])
    assert not store.markers(TRAFFIC_KIND, late_hour, late_hour + H)[late_hour].final
    # The row arrives late, after the sweep of its hour; the next sweep re-reads that hour once.
    pq.write_table(table.from_pylist([*before, late], schema=table.schema), folder / "EmailEvents.parquet")
    with LocalSource(folder) as source:
        result = sweep(source, END, END - H, aggregates=store)
    assert query(result, "connector_traffic")["timeStart"] == f"{late_hour:%Y-%m-%dT%H:%M:%SZ}"
    stored, _ = store.rows(TRAFFIC_KIND, late_hour, late_hour + H)
    assert sum(r["Messages"] for r in stored if r["Connector"] == relayed["Connectors"]) == count + 1
    assert store.markers(TRAFFIC_KIND, late_hour, late_hour + H)[late_hour].final


def test_an_interrupted_backfill_resumes_where_it_stopped(
        tenants: dict[int, Path], storage_connection_string: str, unique_name: str) -> None:
    store = aggregates(storage_connection_string, unique_name)
    calls = []

    class Interrupted(Exception):
        pass

    real = store.write

    def write(*args: Any, **kwargs: Any) -> None:
        if args[0] == TRAFFIC_KIND:
            calls.append(args[1])
            if len(calls) == 5:
                raise Interrupted
        real(*args, **kwargs)

    store.write = write  # type: ignore[method-assign]
    with LocalSource(tenants[2]) as source:
        with pytest.raises(Interrupted):
            sweep(source, END, END - H, aggregates=store)
        store.write = real  # type: ignore[method-assign]
        stored = store.markers(TRAFFIC_KIND, END - 16 * 24 * H, END)
        assert len(stored) == 4 * 24  # four whole days stored before the interruption
        resumed = sweep(source, END, END - H, aggregates=store)
        reference = sweep(source, END, END - H)
    runs = query(resumed, "connector_history")
    assert runs["timeStart"] == f"{calls[4]:%Y-%m-%dT%H:%M:%SZ}"  # the first day not stored
    assert by_connector(resumed) == by_connector(reference)
    assert resumed.results["connector_history"].rows == reference.results["connector_history"].rows


def test_the_cli_second_sweep_an_hour_later_reads_only_the_new_hours(
        tenants: dict[int, Path], storage_connection_string: str, unique_name: str,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from grading.cli import main

    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setenv("GRADER_TABLE_PREFIX", unique_name)
    monkeypatch.setenv("REMEDIATION_QUEUE", f"q-{unique_name}")
    t1, t2 = END - H, END
    for t, name in ((t1, "t1.json"), (t2, "t2.json")):
        assert main(["sweep", "--data", str(tenants[3]), "--store", "table", "--no-remediation",
                     "--now", t.isoformat(), "--window-start", (t - H).isoformat(),
                     "--json", str(tmp_path / name)]) == 0
    capsys.readouterr()
    second = json.loads((tmp_path / "t2.json").read_text())["sweep"]
    queries = {q["name"]: q for q in second["queries"]}
    overlap = WindowSettings().ingestion_delay
    assert queries["connector_history"]["timeStart"] is None and queries["connector_history"]["tables"] == []
    # The stored kinds read the new hour, plus the hour before it (its re-read once the delay has passed)...
    for name in ("tenant_domains", "connector_traffic"):
        assert queries[name]["timeStart"] >= f"{floor(t1 - H - overlap):%Y-%m-%dT%H:%M:%SZ}", name
        assert queries[name]["tables"] == ["EmailEvents"]
    # ... and the hour that entered the correspondents' history (24 h back, final long ago).
    assert queries["correspondents"]["timeStart"] == f"{t2 - 25 * H:%Y-%m-%dT%H:%M:%SZ}"
    assert queries["correspondents"]["timeEnd"] == f"{t2 - 24 * H:%Y-%m-%dT%H:%M:%SZ}"
    # No mail query reads the 14-day history or the 24-hour evaluation span any more: the new hours only (and
    # the hour either side that URL and attachment rows may be stamped in).
    for q in second["queries"]:
        assert {"timeStart", "timeEnd", "tables"} <= set(q), q
        if q.get("timeStart") and "EmailEvents" in q["tables"] and q["name"] != "correspondents":
            assert q["timeStart"] >= f"{floor(t1 - 2 * H - overlap):%Y-%m-%dT%H:%M:%SZ}", q
    # The alerts' evidence messages were looked up (over the change lookback) by the first sweep, not again.
    assert "EmailEvents" not in queries["connector_alerts"]["tables"]
    assert queries["alert_messages"]["timeStart"] is None and queries["alert_messages"]["messageIds"]["lookedUp"] == 0


def floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def test_the_sweep_record_says_what_each_query_read(tenants: dict[int, Path]) -> None:
    with LocalSource(tenants[1]) as source:
        result = sweep(source, END, END - H)
    history = query(result, "connector_history")
    assert history["timeStart"] == "2026-11-05T00:00:00Z" and history["timeEnd"] == "2026-11-19T00:00:00Z"
    assert history["tables"] == ["EmailEvents"]
    assert query(result, "admin_logon_locations")["tables"] == ["CloudAppEvents", "IdentityLogonEvents"]
    # Without a store the correspondents' two weeks are read a day a run (no answer holds every domain).
    correspondents = query(result, "correspondents")
    assert correspondents["sourceRuns"] == 14 and correspondents["timeEnd"] == "2026-11-19T00:00:00Z"
    assert "aggregates" not in result.sweep


def test_the_timer_sweeps_from_its_stored_aggregates_and_maintenance_keeps_them_bounded(
        tenants: dict[int, Path], storage_connection_string: str, unique_name: str) -> None:
    from grading.scheduler import SweepServices, run_maintenance, run_scheduled_sweep
    from grading.settings import StorageSettings

    settings = StorageSettings(connection_string=storage_connection_string, table_prefix=unique_name,
                               remediation_queue=f"q-{unique_name}", report_container=f"r-{unique_name}")
    services = SweepServices.connect(StorageConnection.from_settings(settings), settings)
    services.sweep = run_sweep
    assert services.aggregates is not None
    with LocalSource(tenants[1]) as source:
        first = run_scheduled_sweep(services, source, now=END - 2 * H + timedelta(minutes=35))
        second = run_scheduled_sweep(services, source, now=END - H + timedelta(minutes=35))
    assert first.status == second.status == "graded" and second.complete
    record = services.store.get_sweep(second.sweep_id)  # the stored record says what each query read
    queries = {q["name"]: q for q in record["queries"]}
    assert record["aggregates"] == {"used": True}
    assert queries["connector_history"]["timeStart"] is None
    # The timer's windows end the ingestion delay before its clock, so an hour it stores is final at once and
    # never read again: every hourly mail query reads just the new hour.
    for name in ("connector_traffic", "tenant_domains", "mail_coverage", "connector_domains", "similar_senders"):
        assert queries[name]["timeStart"] == f"{END - 2 * H:%Y-%m-%dT%H:%M:%SZ}", name
        assert queries[name]["timeEnd"] == f"{END - H:%Y-%m-%dT%H:%M:%SZ}", name
    stored = services.aggregates.markers(TRAFFIC_KIND, END - 17 * 24 * H, END)
    assert min(stored) == END - 26 * H - 14 * 24 * H  # the first run: its window (24 h) and 14 days before
    # Retention: the days no baseline can read any more (the clock is well past the export) go.
    removed = run_maintenance(services)["removed"]
    assert removed["aggregates"] > 0
    left = services.aggregates.markers(TRAFFIC_KIND, END - 17 * 24 * H, END)
    ws = services.window_settings
    keep = ws.baseline_lookback + ws.evaluation_span + max(ws.first_window, ws.max_window) + timedelta(days=1)
    oldest_day = (datetime.now(UTC) - keep).replace(hour=0, minute=0, second=0, microsecond=0)
    assert len(left) < len(stored) and min(left) >= oldest_day


def test_the_steady_state_benchmark_measures_what_it_says(tenants: dict[int, Path],
                                                          storage_connection_string: str) -> None:
    from bench.steady_state import measure

    figures = measure(tenants[1], storage_connection_string, hours=1, end=END)
    backfill, hourly = figures["sweeps"]
    assert backfill["kind"] == "backfill" and hourly["kind"] == "hourly"
    # (The backfill itself already passes the stored correspondents, so it may scan less than the one-shot.)
    assert hourly["emailEventsScanned"] < min(figures["oneShot"]["emailEventsScanned"], backfill["emailEventsScanned"])
    assert hourly["trafficScanned"]["connector_history"] == [None, None, 0]
    assert 0 < hourly["tableRequests"] < backfill["tableRequests"]
    assert figures["storedBytesPerConnectorDay"] > 0


def test_a_sweep_of_an_earlier_window_does_not_take_later_correspondents_for_known(
        tenants: dict[int, Path], storage_connection_string: str, unique_name: str) -> None:
    """The folded correspondents profile keeps each domain's last sighting; a resweep of an earlier
    window (its profile is ahead of it) reads the stored hours instead, and grades as the one-shot."""
    store = aggregates(storage_connection_string, unique_name)
    earlier = END - 30 * H
    with LocalSource(tenants[2]) as source:
        sweep(source, END, END - H, aggregates=store)
        assert store.read_profile("correspondents")[1] == END - 24 * H
        again = sweep(source, earlier, earlier - H, aggregates=store)
        reference = sweep(source, earlier, earlier - H)
    assert again.complete and query(again, "correspondents")["stored"]["profileDomains"] == 0
    assert store.read_profile("correspondents")[1] == END - 24 * H  # not folded back
    assert by_connector(again) == by_connector(reference)
    for name in ("recipient_profile", "sender_domains"):
        assert again.results[name].rows == reference.results[name].rows, name
