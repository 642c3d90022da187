"""The playbook's own sample queries on a tenant, timed: ``python -m bench.playbook_queries``.

Why beside the sweep: the playbook answers its volume question with one query over seven days
of raw EmailEvents per alert; the grader answers every question for every connector with a
fixed set of aggregating queries. Running both on the same export, with the same engine and the
same ``now``, shows what each costs and what each returns.

Why a process of its own, writing a line per query as it finishes: the sample written as
Microsoft published it (``volume_as_written``) compares every row with ``toscalar(...)`` of a
sub-query, which duckdb-kql runs slowly at volume; the parent stops this process at a deadline
and reports the queries that did not finish as stopped, with the time they were given.
The sample queries and why they are kept as they are: ``bench/playbook/*.kql``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

PLAYBOOK = Path(__file__).with_name("playbook")
QUERIES = ("volume_fixed", "external_senders_fixed", "volume_as_written")
"""Cheapest first, so a deadline stops only the one that runs away."""
LOOKBACK = timedelta(days=7)
"""The sample queries read ``now(-7d) .. now()``."""
TABLES = ("EmailEvents", "CloudAppEvents")


def run_queries(data: Path, now: datetime, out: Path, names: tuple[str, ...] = QUERIES) -> None:
    """Run *names* on the export in *data* with ``now()`` = *now*, appending a JSON line per query to *out*."""
    from bench.scanned import rows_in_range
    from grading.hunting.rendering import Dialect, RenderedQuery
    from grading.sources.local import LocalSource
    from grading.sources.local.export import load_export

    texts = {name: (PLAYBOOK / f"{name}.kql").read_text(encoding="utf-8") for name in names}
    tables = {name: frozenset(t for t in TABLES if t in text) for name, text in texts.items()}
    with load_export(data) as export:
        present = frozenset(export.report.tables)
        scanned = {name: rows_in_range(export.connection, tables[name], now - LOOKBACK, now, present)
                   for name in names}
    with LocalSource(data, now=now) as source, out.open("a", encoding="utf-8") as sink:
        for name in names:
            print(f"    playbook query {name} ...", file=sys.stderr, flush=True)
            started = time.perf_counter()
            query = RenderedQuery(name, texts[name], Dialect.ADVANCED_HUNTING, tables[name], now - LOOKBACK, now)
            result = source.run(query)
            seconds = time.perf_counter() - started
            line = {
                "name": name, "seconds": round(seconds, 3), "rows": len(result.rows),
                "complete": result.complete, "reason": result.reason,
                "scannedEmailEvents": scanned[name].email_events, "scannedOther": scanned[name].other,
                "connectorsFlagged": len({r.get("Connectors") for r in result.rows}),
            }
            sink.write(json.dumps(line) + "\n")
            sink.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="export folder")
    p.add_argument("--now", required=True, help="what now() means, ISO 8601 UTC (the sweep's window end)")
    p.add_argument("--out", type=Path, required=True, help="JSON lines file, one line per finished query")
    args = p.parse_args(argv)
    run_queries(args.data, datetime.fromisoformat(args.now.replace("Z", "+00:00")), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
