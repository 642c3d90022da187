"""One tenant's sweep, measured in a process of its own: ``python -m bench.measure --data DIR --out FILE``.

Why a child process: peak memory is a property of a process. The parent (:mod:`bench.run`)
starts one of these per tenant, so each figure is this tenant's alone. The child reads its own
high-water mark (``VmHWM`` in ``/proc/self/status``) right after the sweep, before anything
else runs in it; the parent also records the child's whole-life peak from ``os.wait4``.

Steps, in order: load the export (timed); sweep it as ``python -m grading sweep --data`` does
(the export's ``--now``, the default windows and policy, every query timed by the sweep
itself); peak memory; rows scanned per query (:mod:`bench.scanned`); the grading phase
replayed for the tenant's connectors and for ``--grade-connectors`` (:mod:`bench.grading_time`);
and, with ``BENCH_AZURITE`` set to a connection string, the storage requests of storing the
sweep (:mod:`bench.storage_count`). Everything goes to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()


def progress(message: str) -> None:
    """A progress line on stderr (the parent passes it through): the big tenant takes minutes."""
    print(f"    [{time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def memory_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (``VmRSS`` / ``VmHWM``), in MB."""
    out: dict[str, float] = {}
    try:
        text = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def measure(data: Path, *, grade_connectors: int, azurite: str | None) -> dict[str, Any]:
    from bench.grading_time import time_grading
    from bench.recording import RecordingSource
    from bench.scanned import rows_in_range
    from grading.settings import WindowSettings
    from grading.sources.local import LocalSource
    from grading.sources.local.export import load_export
    from grading.sweep import default_now, run_sweep

    doc: dict[str, Any] = {"data": str(data), "memoryAtStartMB": memory_mb()}
    ws = WindowSettings()

    progress(f"loading {data.name}")
    started = time.perf_counter()
    local = LocalSource(data)
    doc["loadSeconds"] = round(time.perf_counter() - started, 3)
    doc["tableRows"] = {t: r.rows for t, r in local.report.tables.items()}
    doc["memoryAfterLoadMB"] = memory_mb()

    now = default_now(local, live=False, ingestion_delay=ws.ingestion_delay)
    local.now = now
    source = RecordingSource(local)
    progress("sweeping")
    started = time.perf_counter()
    result = run_sweep(source, now=now, window_settings=ws)  # type: ignore[arg-type]
    doc["sweepSeconds"] = round(time.perf_counter() - started, 3)
    doc["memoryAfterSweepMB"] = memory_mb()
    sweep = result.sweep
    doc["sweep"] = {k: sweep.get(k) for k in ("windowStart", "windowEnd", "queryCount", "rowsReturned", "connectors",
                                              "counts", "complete", "errors", "notChecked", "durationSeconds")}
    doc["verdicts"] = {v["connector"]: v["classification"] for v in result.verdicts}
    local.close()

    progress("counting rows scanned")
    with load_export(data) as export:
        present = frozenset(export.report.tables)
        queries = []
        for run in source.runs:
            r = run.result
            checked = r.complete and not r.missing_tables
            scanned = rows_in_range(export.connection, run.tables, run.start, run.end, present) \
                if checked and run.start and run.end else None
            queries.append({
                "name": run.label, "query": run.query, "from": iso(run.start), "to": iso(run.end),
                "rows": len(r.rows), "seconds": round(r.elapsed_seconds, 3), "complete": r.complete,
                "checked": not r.missing_tables, "reason": r.reason,
                "scannedEmailEvents": scanned.email_events if scanned else 0,
                "scannedOther": scanned.other if scanned else 0,
            })
        doc["queries"] = queries

    window_start = datetime.fromisoformat(sweep["windowStart"].replace("Z", "+00:00"))
    progress("timing the grading phase")
    doc["grading"] = time_grading(source.runs, source.dialect, now=now, window_start=window_start,
                                  window_settings=ws).as_dict()
    if grade_connectors:
        progress(f"timing the grading phase for {grade_connectors:,} connectors")
        doc["gradingScaled"] = time_grading(source.runs, source.dialect, now=now, window_start=window_start,
                                            window_settings=ws, connectors=grade_connectors).as_dict()
    if azurite:
        from bench.storage_count import store_counted

        progress("storing the sweep in Azurite")
        doc["storage"] = store_counted(result, azurite, source=f"local:{data.resolve()}")
    doc["memoryAtEndMB"] = memory_mb()
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="export folder")
    p.add_argument("--out", type=Path, required=True, help="JSON file to write the figures to")
    p.add_argument("--grade-connectors", type=int, default=10_000,
                   help="also time grading this many connectors (0: skip)")
    args = p.parse_args(argv)
    doc = measure(args.data, grade_connectors=args.grade_connectors, azurite=os.environ.get("BENCH_AZURITE"))
    args.out.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
