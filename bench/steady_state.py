"""The steady state: what an hourly sweep costs once the baselines are stored (Table Storage).

A simulated tenant is swept as the timer sweeps it, on a real Azurite: a first stored sweep at T0
(the backfill), then ``--hours`` hourly sweeps, each from its own stored aggregates; beside them
the one-shot sweep (no store: every query reads its whole range). The hourly sweeps are the timer's:
their windows end the ingestion delay before the clock, so what they store is final at once. Per sweep: EmailEvents rows
scanned (rows in each query's recorded ``timeStart`` .. ``timeEnd``, bench/scanned.py's definition),
its ratio to one hour's EmailEvents rows, wall time, Table Storage requests and entities written,
and the bytes stored per connector-day.

    python -m bench.steady_state --emails-per-day 100000 --connectors 20
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.scanned import rows_in_range
from bench.storage_count import CountingConnection, RequestCounter
from grading.storage.aggregates import HourlyAggregates
from grading.storage.tables import GraderTables
from grading.sweep import AGGREGATE_KINDS, TRAFFIC_KIND, run_sweep

H = timedelta(hours=1)
OUT = Path(__file__).parent / "out"


def _hours_read(sweep: dict[str, Any]) -> float:
    """Hours of EmailEvents the sweep's queries read, summed over its query runs' recorded ranges: the
    ratio to one hour's rows when every hour holds as much mail (whatever hour of the day was swept)."""
    total = 0.0
    for q in sweep["queries"]:
        if q.get("timeStart") and "EmailEvents" in (q.get("tables") or ()):
            start = datetime.fromisoformat(q["timeStart"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(q["timeEnd"].replace("Z", "+00:00"))
            total += (end - start) / H
    return total


def _scanned(source: Any, sweep: dict[str, Any], present: frozenset[str]) -> int:
    total = 0
    for q in sweep["queries"]:
        if not q.get("timeStart") or "EmailEvents" not in (q.get("tables") or ()):
            continue
        start = datetime.fromisoformat(q["timeStart"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(q["timeEnd"].replace("Z", "+00:00"))
        total += rows_in_range(source._export.connection, ["EmailEvents"], start, end, present).email_events
    return total


def measure(folder: Path, connection_string: str, *, hours: int, end: datetime) -> dict[str, Any]:
    from grading.sources.local import LocalSource

    counter = RequestCounter()
    tables = GraderTables.open(CountingConnection(connection_string=connection_string, counter=counter),
                               f"steady{int(time.time())}")
    store = HourlyAggregates(tables.aggregates)
    t0 = end - hours * H
    out: dict[str, Any] = {"sweeps": []}
    with LocalSource(folder) as source:
        present = source.tables()
        # One hour's rows: the mean hour of the last day (a single night hour would flatter nothing).
        hour_rows = rows_in_range(source._export.connection, ["EmailEvents"], end - 24 * H, end,
                                  present).email_events / 24
        out["emailEventsOneHour"] = round(hour_rows)
        for k in range(hours + 1):
            now = t0 + k * H
            source.now = now
            counter.mark(f"s{k}")
            started = time.perf_counter()
            # As the timer sweeps: its clock is the window end plus the ingestion delay, so every hour it
            # stores has all its rows (ingested_until), and none is read twice (grading/scheduler.py).
            result = run_sweep(source, now=now, window_start=now - H, aggregates=store, ingested_until=now)
            wall = time.perf_counter() - started
            summary = counter.summary(f"s{k}")
            scanned = _scanned(source, result.sweep, present)
            out["sweeps"].append({
                "kind": "backfill" if k == 0 else "hourly", "now": now.isoformat(), "wallSeconds": round(wall, 2),
                "emailEventsScanned": scanned, "ratioToOneHour": round(scanned / hour_rows, 1) if hour_rows else None,
                "emailEventsHoursRead": _hours_read(result.sweep),
                "tableRequests": summary["requests"], "entitiesWritten": summary["entitiesWritten"],
                "trafficScanned": {q["name"]: [q["timeStart"], q["timeEnd"], q.get("sourceRuns")]
                                   for q in result.sweep["queries"] if q["name"] in ("connector_traffic",
                                                                                   "connector_history")},
            })
        source.now = end
        started = time.perf_counter()
        one_shot = run_sweep(source, now=end, window_start=end - H)
        wall = time.perf_counter() - started
        scanned = _scanned(source, one_shot.sweep, present)
        out["oneShot"] = {"wallSeconds": round(wall, 2), "emailEventsScanned": scanned,
                          "emailEventsHoursRead": _hours_read(one_shot.sweep),
                          "ratioToOneHour": round(scanned / hour_rows, 1) if hour_rows else None,
                          "perQuery": {q["name"]: _one(source, q, present) for q in one_shot.sweep["queries"]}}
        out["steadyPerQuery"] = {q["name"]: _one(source, q, present) for q in result.sweep["queries"]}
        connectors = len({r["Connector"] for r in store.rows(TRAFFIC_KIND, end - 24 * H, end)[0]})
        # Stored strings count two bytes a character (UTF-16), as the service counts them.
        per_day = {kind: 2 * store.stored_chars(kind, end - 24 * H, end) for kind in AGGREGATE_KINDS}
        out["storedBytesPerDay"] = per_day
        out["storedBytesPerConnectorDay"] = round(per_day[TRAFFIC_KIND] / connectors) if connectors else None
        out["storedBytesPerConnectorDayAllKinds"] = round(sum(per_day.values()) / connectors) if connectors else None
        out["connectorsPerDay"] = connectors
        # The correspondents are read from their folded profile (one entry per domain), not by the day.
        seen, through = store.read_profile("correspondents")
        profile = store.table.query_entities("PartitionKey eq @p", parameters={"p": "correspondents-profile"})
        out["correspondentsProfile"] = {
            "domains": len(seen), "through": through.isoformat() if through else None,
            "bytes": 2 * sum(len(v) for e in profile for v in e.values() if isinstance(v, str)),
        }
    return out


def _one(source: Any, q: dict[str, Any], present: frozenset[str]) -> int:
    if not q.get("timeStart") or "EmailEvents" not in (q.get("tables") or ()):
        return 0
    start = datetime.fromisoformat(q["timeStart"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(q["timeEnd"].replace("Z", "+00:00"))
    return rows_in_range(source._export.connection, ["EmailEvents"], start, end, present).email_events


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.steady_state", description=__doc__.splitlines()[0])
    p.add_argument("--emails-per-day", type=int, default=100_000)
    p.add_argument("--days", type=int, default=16)
    p.add_argument("--connectors", type=int, default=20)
    p.add_argument("--hours", type=int, default=3, help="hourly sweeps after the backfill (default 3)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from devtools.azurite import running_azurite
    from grading.cli import main as grading_main

    folder = args.out / "steady" / f"s{args.seed}-{args.emails_per_day}-{args.days}d-{args.connectors}c"
    if not (folder / "EmailEvents.parquet").exists():
        grading_main(["simulate", "--seed", str(args.seed), "--days", str(args.days), "--emails-per-day",
                      str(args.emails_per_day), "--connectors", str(args.connectors), str(folder)])
    end = datetime(2026, 11, 20, tzinfo=UTC)
    with running_azurite() as azurite:
        figures = measure(folder, azurite.connection_string, hours=args.hours, end=end)
    figures["tenant"] = {"emailsPerDay": args.emails_per_day, "days": args.days, "connectors": args.connectors}
    print(json.dumps(figures, indent=2, default=str))
    (args.out / f"steady-{args.emails_per_day}.json").write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
