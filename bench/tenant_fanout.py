"""Many tenants: the hourly fan-out and one tenant's queue-triggered sweep, timed and counted on Azurite.

``python -m bench.tenant_fanout`` (defaults: 50 tenants x 20 connectors) registers the tenants, runs
the fan-out (:func:`grading.wiring.fan_out_tenants`) and then hands every tenant-sweep message to
the tenant-sweep handler (:func:`grading.wiring.run_tenant_sweep_message`), one after another as
one instance of the host would, each tenant graded by the local engine (duckdb-kql over a simulated
export, the real grader) and stored in its own tables. It prints, and writes as JSON with
``--json``:

* the fan-out's wall time and its storage requests (registry read, one queue message per tenant);
* per tenant-sweep: wall time, and storage requests by kind (registry, concurrency slot, watermark,
  verdicts and states in transactions, the report blob, incidents), counted on the wire by
  :mod:`bench.storage_count`'s hook on the grader's own clients.

All tenants share one simulated export (``--emails-per-day``, ``--days``, generated once and cached
like :mod:`bench.run`'s): what differs per tenant is its tables, watermark, report folder and
queue messages, which is what is measured. Nothing is asserted; ``bench/RESULTS.md`` records a run.
``BENCH_AZURITE`` may hold the connection string of an Azurite already running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.storage_count import CountingConnection, RequestCounter
from bench.tenants import TenantSpec, ensure_tenant, parse_count
from grading.settings import WindowSettings
from grading.sources.local import LocalSource
from grading.storage.tenants import Tenant
from grading.sweep import default_now
from grading.wiring import fan_out_tenants, run_tenant_sweep_message, tenant_registry


def _tid(n: int) -> str:
    return f"{n:08x}-0000-4000-8000-{n:012x}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = TenantSpec(args.emails_per_day, args.days, args.connectors, args.seed)
    folder = ensure_tenant(spec, Path(args.out) / "tenants", log=lambda m: print("  " + m, flush=True))
    with LocalSource(folder) as source:
        latest = default_now(source, live=False, ingestion_delay=WindowSettings().ingestion_delay)
    now = latest + WindowSettings().ingestion_delay + timedelta(minutes=5)
    with ExitStack() as stack:
        connection_string = os.environ.get("BENCH_AZURITE")
        if not connection_string:
            from devtools.azurite import running_azurite

            connection_string = stack.enter_context(running_azurite()).connection_string
        prefix = f"b{uuid.uuid4().hex[:8]}"
        env = {
            "AzureWebJobsStorage": connection_string, "GRADER_TABLE_PREFIX": prefix,
            "GRADER_REPORT_CONTAINER": f"{prefix}-reports", "TENANT_SWEEP_QUEUE": f"{prefix}-tenant-sweeps",
            "TENANT_REMEDIATION_QUEUE": f"{prefix}-tenant-remediation",
            "TENANT_MAX_CONCURRENT_SWEEPS": str(args.tenants),
        }
        counter = RequestCounter()
        connection = CountingConnection(connection_string=connection_string, counter=counter)
        registry = tenant_registry(env, connection=connection)
        for n in range(1, args.tenants + 1):
            registry.add(Tenant(_tid(n), display_name=f"Customer {n}", source="local", data_dir=str(folder)))

        counter.mark("fanout")
        started = time.perf_counter()
        fanned = fan_out_tenants(env, now=now, connection=connection)
        fan_out_seconds = time.perf_counter() - started
        fan_out_requests = counter.summary("fanout")

        from azure.storage.queue import QueueClient, TextBase64DecodePolicy

        queue = QueueClient.from_connection_string(connection_string, env["TENANT_SWEEP_QUEUE"],
                                                   message_decode_policy=TextBase64DecodePolicy())
        sweeps = []
        while (received := queue.receive_message(visibility_timeout=600)) is not None:
            phase = f"sweep-{len(sweeps)}"
            counter.mark(phase)
            started = time.perf_counter()
            result = run_tenant_sweep_message(received.content, env, now=now, connection=connection)
            seconds = time.perf_counter() - started
            counter.mark("between")
            queue.delete_message(received)
            summary = counter.summary(phase)
            sweeps.append({"tenant": result.tenant_id, "status": result.status, "seconds": round(seconds, 2),
                           "requests": summary["requests"], "byKind": summary["byKind"],
                           "entitiesWritten": summary["entitiesWritten"], "batches": summary["batches"]})
            print(f"  tenant {len(sweeps):3d} {result.tenant_id}: {result.status}, {seconds:.1f} s, "
                  f"{summary['requests']} storage requests", flush=True)
    requests = [s["requests"] for s in sweeps]
    return {
        "tenants": args.tenants, "connectors": args.connectors, "export": spec.label,
        "fanOut": {"sent": len(fanned.sent), "seconds": round(fan_out_seconds, 3),
                   "requests": fan_out_requests["requests"], "byKind": fan_out_requests["byKind"]},
        "tenantSweep": {
            "graded": sum(1 for s in sweeps if s["status"] == "graded"),
            "secondsMedian": round(statistics.median(s["seconds"] for s in sweeps), 2) if sweeps else None,
            "secondsTotal": round(sum(s["seconds"] for s in sweeps), 1),
            "requestsMedian": statistics.median(requests) if requests else None,
            "requestsMin": min(requests, default=None), "requestsMax": max(requests, default=None),
            "byKindFirst": sweeps[0]["byKind"] if sweeps else {},
            "byKindLast": sweeps[-1]["byKind"] if sweeps else {},
        },
        "sweeps": sweeps,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.tenant_fanout", description=__doc__.splitlines()[0])
    p.add_argument("--tenants", type=int, default=50)
    p.add_argument("--connectors", type=int, default=20)
    p.add_argument("--emails-per-day", type=parse_count, default=parse_count("2k"))
    p.add_argument("--days", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bench/out", help="where the simulated export is cached (gitignored)")
    p.add_argument("--json", type=Path, help="write every figure as JSON to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    doc = run(args)
    f, t = doc["fanOut"], doc["tenantSweep"]
    print(f"\n{doc['tenants']} tenants x {doc['connectors']} connectors ({doc['export']}):")
    print(f"  fan-out: {f['sent']} messages in {f['seconds']} s, {f['requests']} storage requests {f['byKind']}")
    print(f"  tenant sweep: {t['graded']} graded; median {t['secondsMedian']} s each ({t['secondsTotal']} s in all, "
          f"one worker); storage requests per tenant-sweep: median {t['requestsMedian']} "
          f"(min {t['requestsMin']}, max {t['requestsMax']})")
    print(f"  requests of one tenant-sweep by kind: {t['byKindLast']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0 if t["graded"] == doc["tenants"] else 1


if __name__ == "__main__":
    sys.exit(main())
