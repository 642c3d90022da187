"""A simulated week of the service as the timer runs it, against a real Azurite: a week of hourly sweeps
from the stored aggregates holds.

A small simulated tenant with 15 days of history before the week and the week itself; the timer's own entry
point (:func:`grading.scheduler.run_scheduled_sweep`: watermark, lease, storing, incidents, report) fires at
minute 5 of every simulated hour, and the daily maintenance (:func:`grading.scheduler.run_maintenance`,
with the Aggregates retention) at 03:30, as ``function_app.py`` schedules them. The first run is the
backfill; then 168 hourly sweeps. What a user relies on is asserted per hour, per day and at the end."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from grading.classification import Classification
from grading.settings import StorageSettings
from grading.sources.local import LocalSource
from grading.storage.connection import StorageConnection
from grading.sweep import SweepResult, run_sweep

H = timedelta(hours=1)
DAY = timedelta(days=1)
END = datetime(2026, 11, 20, tzinfo=UTC)  # the simulator's default end of telemetry
WEEK = 7 * 24
T0 = END - WEEK * H  # the backfill's window ends here; the hourly sweeps grade [T0, END)
TIMER_MINUTE = timedelta(minutes=5)  # SWEEP_SCHEDULE "0 5 * * * *" (local.settings.example.json)
MAINTENANCE_AT = timedelta(hours=3, minutes=30)  # function_app.MAINTENANCE_SCHEDULE, daily at 03:30 UTC
HISTORY_DAYS = 15  # the baseline lookback (14 days) and the evaluation span (a day) before the week


def floor(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def verdicts_of(verdicts: list[dict[str, Any]]) -> dict[str, tuple[str, str | None, int]]:
    return {v["connector"]: (v["classification"], v.get("determination"), v["score"]) for v in verdicts}


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    """Rows as a sorted list of their JSON (the store returns its kind's order, a query its own)."""
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


@pytest.fixture(scope="module")
def week_tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    from grading.cli import main

    folder = tmp_path_factory.mktemp("week") / "export"
    assert main(["simulate", "--seed", "1", "--days", str(HISTORY_DAYS + 7), "--emails-per-day", "100",
                 "--connectors", "6", str(folder)]) == 0
    labels = json.loads(folder.with_name("export.labels.json").read_text())
    return folder, labels


def planted_in_the_week(labels: dict[str, Any]) -> dict[str, tuple[datetime, datetime]]:
    """Each true-positive connector the scenarios plant: when its attacker first touched it (created or
    changed it) and when its first malicious mail came through it."""
    out = {}
    for s in labels["scenarios"]:
        if s.get("expectedClassification") != Classification.TRUE_POSITIVE or not s.get("connector"):
            continue
        times = s.get("times") or {}
        touched = parse(times.get("created") or times["changed"])
        mail = parse(times.get("trafficStart") or times["phishingStart"])
        out[s["connector"]] = (touched, mail)
    return out


def aggregate_entities(table: Any) -> tuple[int, dict[str, set[str]]]:
    """How many entities the Aggregates table holds, and the stored days of each kind."""
    days: dict[str, set[str]] = {}
    n = 0
    for e in table.query_entities("PartitionKey ge @a", parameters={"a": ""}, select=["PartitionKey", "RowKey"]):
        kind, day = e["PartitionKey"].rsplit("-", 1)
        days.setdefault(kind, set()).add(day)
        n += 1
    return n, days


def test_a_simulated_week_of_hourly_timer_sweeps_holds(
        week_tenant: tuple[Path, dict[str, Any]], storage_connection_string: str, unique_name: str) -> None:
    from grading.scheduler import SweepServices, run_maintenance, run_scheduled_sweep

    folder, labels = week_tenant
    planted = planted_in_the_week(labels)
    assert len(planted) == 3 and all(T0 <= t <= m < END for t, m in planted.values()), planted  # TPs in the week
    settings = StorageSettings(connection_string=storage_connection_string, table_prefix=unique_name,
                               remediation_queue=f"q-{unique_name}", report_container=f"r-{unique_name}")
    services = SweepServices.connect(StorageConnection.from_settings(settings), settings)
    assert services.aggregates is not None
    clock = [T0]
    services.store.clock = lambda: clock[0]  # the simulated clock (the store's retention and records)
    ws = services.window_settings
    reread = H * math.ceil(ws.ingestion_delay / H)  # an hour stored before its delay passed is read once more
    keep = ws.baseline_lookback + ws.evaluation_span + max(ws.first_window, ws.max_window) + DAY

    graded: dict[datetime, SweepResult] = {}  # by window end

    def sweep(*args: Any, **kwargs: Any) -> SweepResult:
        result = run_sweep(*args, **kwargs)
        graded[kwargs["now"]] = result
        return result

    services.sweep = sweep
    per_day: list[tuple[datetime, int, dict[str, int]]] = []  # after each maintenance: entities, days per kind
    first_tp: dict[str, datetime] = {}
    enqueued: Counter[str] = Counter()
    tp_incidents: set[str] = set()
    started = time.perf_counter()
    with LocalSource(folder) as source:
        # The backfill: the first run grades GRADER_FIRST_WINDOW up to T0 and stores 15 days of hours.
        clock[0] = T0 + H + TIMER_MINUTE
        first = run_scheduled_sweep(services, source, now=clock[0])
        assert first.status == "graded" and first.complete and first.advanced, first.error
        assert first.window == (T0 - ws.first_window, T0)
        backfill = graded[T0].sweep
        assert backfill["aggregates"] == {"used": True}
        previous = {q["name"]: q for q in backfill["queries"]}
        for k in range(1, WEEK + 1):
            end = T0 + k * H
            clock[0] = end + H + TIMER_MINUTE  # the timer at minute 5 grades up to the hour before the delay
            run = run_scheduled_sweep(services, source, now=clock[0])
            # Every hourly sweep is complete and moves the watermark on by exactly its hour.
            assert run.status == "graded" and run.complete and run.advanced, (end, run.error)
            assert run.window == (end - H, end)
            assert services.watermark.watermark() == end
            record = graded[end].sweep
            assert record["aggregates"] == {"used": True}, record["aggregates"]
            # Each query served from the store reads from the source only the new hour(s) of its span (and
            # the hour(s) stored before their ingestion delay had passed, read once more).
            queries = {q["name"]: q for q in record["queries"]}
            stored = {n: q for n, q in queries.items() if "stored" in q}
            assert {"connector_traffic", "connector_history", "tenant_domains"} <= set(stored)
            for name, q in stored.items():
                span_start, span_end = parse(q["stored"]["timeStart"]), parse(q["stored"]["timeEnd"])
                assert q["complete"] and q["stored"]["hours"] == (span_end - span_start) / H, (end, q)
                before = previous[name]["stored"]["timeEnd"]
                # URL and attachment rows are read an hour either side (padHours), and that hour's delay
                # passes an hour later, so their newest hour is read once more.
                pad = timedelta(hours=q["stored"].get("padHours", 0))
                if q["timeStart"] is not None:
                    assert parse(q["timeStart"]) >= parse(before) - reread - 2 * pad, (end, q)
                    assert parse(q["timeEnd"]) <= span_end + pad, (end, q)
                    assert q["sourceRuns"] == 1, (end, q)
            previous = queries
            by_connector = verdicts_of(graded[end].verdicts)
            for v in graded[end].verdicts:
                if v["classification"] == Classification.TRUE_POSITIVE:
                    first_tp.setdefault(v["connector"], end)
                    tp_incidents.add(v["incidentKey"])
            enqueued.update(run.enqueued)
            # The daily maintenance, between the timer's runs at 03:05 and 04:05.
            if (clock[0] - T0) % DAY < MAINTENANCE_AT < (clock[0] - T0) % DAY + H:
                clock[0] = T0 + (clock[0] - T0) // DAY * DAY + MAINTENANCE_AT
                done = run_maintenance(services)
                n, days = aggregate_entities(services.aggregates.table)
                per_day.append((clock[0], n, {kind: len(d) for kind, d in days.items()}))
                cutoff = f"{clock[0] - keep:%Y%m%d}"
                assert all(min(d) >= cutoff for d in days.values()), (clock[0], done, days)
            # At every day boundary the classifications equal a one-shot sweep's (no store) on the same data.
            if k % 24 == 0:
                source.now = end
                reference = run_sweep(source, now=end, window_start=end - H)
                assert reference.complete, reference.sweep["errors"]
                assert by_connector == verdicts_of(reference.verdicts), end
                assert graded[end].sweep["tenantDomains"] == reference.sweep["tenantDomains"]
                for name in set(stored) & set(reference.results) - {"correspondents"}:
                    assert canonical(graded[end].results[name].rows) == canonical(
                        reference.results[name].rows), (end, name)
                # The correspondents come from their folded profile (each domain's last sighting): the same
                # domains, and so the same split of every connector's domains.
                assert ({r["Domain"] for r in graded[end].results["correspondents"].rows}
                        == {r["Domain"] for r in reference.results["correspondents"].rows}), end
                for name in ("recipient_profile", "sender_domains"):
                    assert graded[end].results[name].rows == reference.results[name].rows, (end, name)
            graded.pop(end - DAY, None)  # keep memory flat
    elapsed = time.perf_counter() - started
    print(f"\nsimulated week: backfill and {WEEK} hourly sweeps and {len(per_day)} maintenance runs in "
          f"{elapsed:.1f} s; aggregates after each maintenance: {[(f'{t:%m-%d}', n) for t, n, _ in per_day]}; "
          f"first truePositive (first malicious mail, window end): "
          f"{[(n, f'{planted[n][1]:%m-%dT%H:%M}', f'{t:%m-%dT%H:%M}') for n, t in first_tp.items()]}")

    # The TP connectors planted in the week are graded truePositive by the sweep whose graded hour holds their
    # first malicious mail at the latest (some as soon as the hour of the attacker's change), not before the
    # attacker touched them, and are still truePositive at the end of the week.
    for name, (touched, mail) in planted.items():
        assert name in first_tp, (name, touched, mail)
        assert floor(touched) + H <= first_tp[name] <= floor(mail) + H, (name, touched, mail, first_tp[name])
        assert by_connector[name][0] == Classification.TRUE_POSITIVE, (name, by_connector[name])
    # Each truePositive incident went to the remediation queue once, by the sweep that first graded it.
    assert tp_incidents and set(enqueued) == tp_incidents and set(enqueued.values()) == {1}, enqueued

    # Retention keeps the stored aggregates bounded: once the history is full (the oldest stored day reaches
    # the retention), the days stored per kind and the entities stop growing.
    full = [(t, n, kinds) for t, n, kinds in per_day if t - keep >= T0 - HISTORY_DAYS * DAY]
    assert len(full) >= 2, per_day
    assert len({tuple(sorted(kinds.items())) for _, _, kinds in full}) == 1, full
    counts = [n for _, n, _ in full]
    assert max(counts) <= counts[0] * 1.05, per_day
