"""Print the benchmark's figures: one block per tenant, then a summary across sizes and the targets.

Why the targets live here and not in tests: the figures depend on the machine and on what else
it runs, so they are reported, never asserted (a timing assertion fails on a busy CI runner and
passes on a fast laptop, and tells nothing either way).
"""

from __future__ import annotations

from typing import Any

from bench.tenants import format_count

SWEEP_SECONDS_TARGET = 60.0
PEAK_MB_TARGET = 4096.0
GRADING_SECONDS_TARGET = 2.0
GRADING_CONNECTORS_TARGET = 10_000
ENTITIES_PER_BATCH_TARGET = 50.0
TARGET_EMAILS_PER_DAY = 1_000_000
MANY_CONNECTORS = 500


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mb(value: Any) -> str:
    return "-" if value is None else f"{value:,.0f} MB"


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)]
        print(indent + "  ".join(cells).rstrip())


def peak_mb(t: dict[str, Any]) -> float | None:
    """The sweep's peak resident memory: the child's high-water mark right after the sweep."""
    return (t.get("memoryAfterSweepMB") or {}).get("VmHWM")


def print_tenant(t: dict[str, Any]) -> None:
    rows = t["tableRows"]
    sweep = t["sweep"]
    gen = t.get("generatedSeconds")
    print(f"  export: EmailEvents {rows.get('EmailEvents', 0):,} rows, {t['exportBytes'] / 1e9:.2f} GB on disk"
          + (f" (generated once in {gen:.0f} s)" if gen else ""))
    print(f"  load {t['loadSeconds']:.2f} s; sweep {t['sweepSeconds']:.2f} s wall, {sweep['queryCount']} queries, "
          f"{sweep['rowsReturned']:,} rows returned, {sweep['connectors']} verdicts {sweep['counts']}")
    print(f"  peak memory: {_mb(peak_mb(t))} after load + sweep (whole measuring process: "
          f"{_mb(t.get('childPeakRssMB'))})")
    if not sweep["complete"]:
        print("  INCOMPLETE: " + "; ".join(sweep["errors"]))
    table = [("query", "rows", "seconds", "EmailEvents scanned", "other rows scanned", "time range")]
    for q in t["queries"]:
        span = f"{q['from'][:13]} .. {q['to'][:13]}" if q.get("from") else ""
        table.append((q["name"], _n(q["rows"]), _s(q["seconds"]), _n(q["scannedEmailEvents"]),
                      _n(q["scannedOther"]), span if q["checked"] else "not checked (no table)"))
    _table(table)
    g, gs = t["grading"], t.get("gradingScaled")
    line = (f"  grading: {g['connectors']} connectors in {g['seconds']:.3f} s ({g['msPerConnector']:.2f} ms each; "
            f"grade() alone {g['gradeSeconds']:.3f} s)")
    if gs:
        line += (f"; {gs['connectors']:,} connectors in {gs['seconds']:.2f} s ({gs['msPerConnector']:.3f} ms each; "
                 f"grade() alone {gs['gradeSeconds']:.2f} s)")
    print(line)
    st = t.get("storage")
    if st:
        s = st["sweep"]
        kinds = ", ".join(f"{k} {v}" for k, v in s["byKind"].items())
        print(f"  storage: {s['requests']} requests to store the sweep ({kinds}); {s['entitiesWritten']} entities "
              f"in {s['writeRequests']} write requests ({_s(s['entitiesPerWriteRequest'])} each), "
              f"{s['batches']} transactions of {_s(s['entitiesPerBatch'])} entities on average "
              f"(largest {s['largestBatch']}); watermark claim + finish {st['watermark']['requests']} requests")
    if t.get("playbook"):
        table = [("playbook query (7 days)", "rows", "seconds", "EmailEvents scanned", "connectors flagged")]
        for q in t["playbook"]:
            table.append((q["name"], _n(q.get("rows")), _s(q.get("seconds")) if q.get("seconds") is not None
                          else q.get("reason") or "-", _n(q.get("scannedEmailEvents")), _n(q.get("connectorsFlagged"))))
        scanned = sum(q["scannedEmailEvents"] for q in t["queries"])
        table.append(("our sweep (all queries)", _n(sweep["rowsReturned"]), _s(t["sweepSeconds"]), _n(scanned),
                      f"{sum(v for k, v in sweep['counts'].items() if k == 'truePositive')} TP"))
        _table(table)


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, measured, met / missed / not measured) for each target of the issue."""
    out = []
    big = [t for t in doc["tenants"] if t["spec"]["emailsPerDay"] >= TARGET_EMAILS_PER_DAY]
    if big:
        worst = max(big, key=lambda t: t["sweepSeconds"])
        met = worst["sweepSeconds"] < SWEEP_SECONDS_TARGET
        out.append((f"sweep at {format_count(TARGET_EMAILS_PER_DAY)}/day x 14d < {SWEEP_SECONDS_TARGET:.0f} s",
                    f"{worst['sweepSeconds']:.1f} s", "met" if met else "MISSED"))
        heaviest = max(big, key=lambda t: peak_mb(t) or 0)
        peak = peak_mb(heaviest) or 0
        out.append((f"peak memory at {format_count(TARGET_EMAILS_PER_DAY)}/day < {PEAK_MB_TARGET / 1024:.0f} GB",
                    _mb(peak), "met" if peak < PEAK_MB_TARGET else "MISSED"))
    else:
        out.append((f"sweep / memory at {format_count(TARGET_EMAILS_PER_DAY)}/day", "-",
                    "not measured (add --sizes 1m)"))
    scaled = [t["gradingScaled"] for t in doc["tenants"] if t.get("gradingScaled")]
    if scaled:
        # The target is grade() over the connectors' facts, as the issue defines it; building the
        # facts (baselines from 14 days of hourly rows per connector) is shown beside it.
        worst = max(scaled, key=lambda g: g["gradeSeconds"])
        size = "" if worst["connectors"] == GRADING_CONNECTORS_TARGET else \
            f" (the target is for {GRADING_CONNECTORS_TARGET:,})"
        out.append((f"grade() over {worst['connectors']:,} connectors' facts < {GRADING_SECONDS_TARGET:.0f} s{size}",
                    f"{worst['gradeSeconds']:.2f} s", "met" if worst["gradeSeconds"] < GRADING_SECONDS_TARGET
                    else "MISSED"))
        slowest = max(scaled, key=lambda g: g["seconds"])
        out.append((f"  whole grading phase, {slowest['connectors']:,} connectors (facts, baselines, grade)",
                    f"{slowest['seconds']:.2f} s", "(shown, not a target)"))
    many = [t["storage"]["sweep"] for t in doc["tenants"]
            if t.get("storage") and t["spec"]["connectors"] >= MANY_CONNECTORS]
    if many:
        worst = min(many, key=lambda s: s["entitiesPerBatch"] or 0)
        value = worst["entitiesPerBatch"] or 0
        out.append((f"entities per transaction, {MANY_CONNECTORS}+ connectors >= {ENTITIES_PER_BATCH_TARGET:.0f}",
                    _s(value), "met" if value >= ENTITIES_PER_BATCH_TARGET else "MISSED"))
    return out


def print_summary(doc: dict[str, Any]) -> None:
    m = doc["machine"]
    print(f"\nMachine: {m.get('cpu', '?')}, {m.get('cpus')} CPUs, {m.get('memoryGB')} GB; Python {m['python']}, "
          f"duckdb {m['duckdb']}, duckdb-kql {m['duckdb-kql']}")
    rows = [("tenant", "EmailEvents", "load s", "sweep s", "peak", "queries", "rows back", "grade() 10k s",
             "grading 10k s", "storage req", "entities/txn")]
    for t in doc["tenants"]:
        st = (t.get("storage") or {}).get("sweep") or {}
        gs = t.get("gradingScaled") or {}
        rows.append((t["spec"]["label"], _n(t["tableRows"].get("EmailEvents")), _s(t["loadSeconds"]),
                     _s(t["sweepSeconds"]), _mb(peak_mb(t)), str(t["sweep"]["queryCount"]),
                     _n(t["sweep"]["rowsReturned"]), _s(gs.get("gradeSeconds")), _s(gs.get("seconds")),
                     _n(st.get("requests")),
                     _s(st.get("entitiesPerBatch"))))
    _table(rows)
    print("\nTargets:")
    _table([("target", "measured", ""), *targets(doc)])
