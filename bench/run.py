"""Benchmarks at tenant scale: ``python -m bench.run`` (``make bench``).

    python -m bench.run                                   # quick: 10k and 100k mails a day, 20 and 500 connectors
    python -m bench.run --sizes 1m --connectors 20        # the 1M-mails-a-day target (~21M EmailEvents rows)
    python -m bench.run --sizes 10k,100k,1m --days 14 --connectors 20,500 --json bench/out/results.json

For every size x connector count it simulates a tenant once (cached in ``bench/out/tenants``,
keyed by the parameters and the simulator's code), then, each in a process of its own:
sweeps it on the local engine and measures load time, sweep wall time, peak memory, every
query's rows returned, time and rows scanned, the grading phase for the tenant's connectors
and for 10,000, and the Table Storage requests of storing the sweep on a real Azurite
(:mod:`bench.measure`); then runs the playbook's own sample queries on the same export
(:mod:`bench.playbook_queries`). Azurite is started for the run (on free ports, in memory), unless
``BENCH_AZURITE`` holds the connection string of one already running. It prints the figures and
checks them against the targets;
it asserts nothing (exit code 0 whatever the figures, 1 if a step failed). ``bench/RESULTS.md``
records a run and what it shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import print_summary, print_tenant
from bench.tenants import TenantSpec, ensure_tenant, generation_seconds, parse_count

OUT = Path(__file__).with_name("out")


def _wait(proc: subprocess.Popen[bytes], deadline: float | None) -> tuple[int | None, float]:
    """Wait for *proc* until *deadline* (monotonic); returns (exit status or None if it was
    stopped, peak RSS in MB of the process as ``wait4`` reports it)."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, round(usage.ru_maxrss / 1024, 1)
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            return None, round(usage.ru_maxrss / 1024, 1)
        time.sleep(0.1)


def measure_tenant(folder: Path, work: Path, *, azurite: str | None, grade_connectors: int) -> dict[str, Any]:
    """Run :mod:`bench.measure` on *folder* in a child process; its figures plus the child's peak RSS."""
    out = work / f"{folder.name}.measure.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ)
    env.pop("BENCH_AZURITE", None)
    if azurite:
        env["BENCH_AZURITE"] = azurite
    cmd = [sys.executable, "-m", "bench.measure", "--data", str(folder), "--out", str(out),
           "--grade-connectors", str(grade_connectors)]
    proc = subprocess.Popen(cmd, env=env)
    status, peak = _wait(proc, None)
    if status != 0 or not out.exists():
        raise RuntimeError(f"measuring {folder.name} failed (exit status {status})")
    doc = json.loads(out.read_text(encoding="utf-8"))
    doc["childPeakRssMB"] = peak
    return doc


def playbook_tenant(folder: Path, work: Path, now: str, timeout: float) -> list[dict[str, Any]]:
    """The playbook's sample queries on *folder*, in a child process stopped after *timeout* seconds."""
    from bench.playbook_queries import QUERIES

    out = work / f"{folder.name}.playbook.jsonl"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.playbook_queries", "--data", str(folder), "--now", now, "--out", str(out)]
    proc = subprocess.Popen(cmd)
    started = time.monotonic()
    status, _peak = _wait(proc, started + timeout)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    done = {line["name"] for line in lines}
    for name in QUERIES:
        if name not in done:
            reason = f"stopped after {timeout:.0f} s" if status is None else f"did not run (exit status {status})"
            lines.append({"name": name, "seconds": None, "rows": None, "complete": False, "reason": reason})
    return lines


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            if line.startswith("MemTotal"):
                info["memoryGB"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    from importlib.metadata import version

    info["duckdb"] = version("duckdb")
    info["duckdb-kql"] = version("duckdb-kql")
    return info


def _counts(text: str) -> list[int]:
    try:
        return [parse_count(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:6]))
    p.add_argument("--sizes", type=_counts, default=_counts("10k,100k"),
                   help="background mails a day, comma-separated (10k, 100k, 1m; default 10k,100k)")
    p.add_argument("--days", type=int, default=14, help="days of telemetry (default 14)")
    p.add_argument("--connectors", type=_counts, default=_counts("20,500"),
                   help="connectors per tenant, comma-separated (default 20,500)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.add_argument("--grade-connectors", type=int, default=10_000,
                   help="also time grading this many connectors (default 10000; 0 skips)")
    p.add_argument("--no-storage", action="store_true", help="skip the Table Storage measurement (no Azurite)")
    p.add_argument("--no-playbook", action="store_true", help="skip the playbook's sample queries")
    p.add_argument("--playbook-timeout", type=float, default=300.0,
                   help="seconds the playbook's sample queries get per tenant before they are stopped (default 300)")
    p.add_argument("--out", type=Path, default=OUT,
                   help="scratch folder: cached tenants and results (default bench/out)")
    p.add_argument("--json", type=Path, help="also write every figure as JSON here "
                   "(default: OUT/results-<time>.json)")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every tenant the arguments name; returns the whole document."""
    tenants_dir = args.out / "tenants"
    work = args.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"startedAt": datetime.now(UTC).isoformat(), "machine": machine(), "tenants": []}
    with ExitStack() as stack:
        azurite = None
        if not args.no_storage:
            azurite = os.environ.get("BENCH_AZURITE")  # a storage emulator already running
            if not azurite:
                from devtools.azurite import running_azurite

                azurite = stack.enter_context(running_azurite()).connection_string
        for emails in args.sizes:
            for connectors in args.connectors:
                spec = TenantSpec(emails, args.days, connectors, args.seed)
                print(f"\n== {spec.label}", flush=True)
                folder = ensure_tenant(spec, tenants_dir, log=lambda m: print("  " + m, flush=True))
                tenant = measure_tenant(folder, work, azurite=azurite, grade_connectors=args.grade_connectors)
                tenant["spec"] = {"emailsPerDay": emails, "days": args.days, "connectors": connectors,
                                  "seed": args.seed, "label": spec.label}
                tenant["exportBytes"] = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                tenant["generatedSeconds"] = generation_seconds(spec, tenants_dir)
                if not args.no_playbook:
                    tenant["playbook"] = playbook_tenant(folder, work, tenant["sweep"]["windowEnd"],
                                                         args.playbook_timeout)
                print_tenant(tenant)
                doc["tenants"].append(tenant)
    doc["finishedAt"] = datetime.now(UTC).isoformat()
    return doc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        doc = run(args)
    except (RuntimeError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print_summary(doc)
    path = args.json or args.out / f"results-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    print(f"\nall figures: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
