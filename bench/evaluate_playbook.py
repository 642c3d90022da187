"""Per scenario, our verdict beside what the playbook's own sample queries would flag.

    python -m bench.evaluate_playbook [--seeds 1 2 3] [--days 14] [--emails-per-day 3000] [--base-only]

For each seed it simulates a tenant (with the look-alike pairs of ``simulate --look-alikes`` unless
``--base-only``), sweeps it, then runs the playbook's volume query as
Microsoft wrote it, the same query with its flaws fixed, and the external-senders query per
connector (all with thresholds of 100) on the very same export, and prints one row a scenario.
A connector "flagged" by a playbook query is one with at least one row in its result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from grading.cli.common import parse_instant
from grading.cli.sweep import sweep_export
from grading.hunting.rendering import Dialect, RenderedQuery
from grading.sources.local import LocalSource

PLAYBOOK = Path(__file__).with_name("playbook")
QUERIES = ("volume_as_written", "volume_fixed", "external_senders_fixed")


def playbook_flags(folder: Path, now) -> dict[str, set[str]]:
    """Connector names each playbook query returns rows for."""
    source = LocalSource(folder, now=now)
    out: dict[str, set[str]] = {}
    for name in QUERIES:
        text = (PLAYBOOK / f"{name}.kql").read_text(encoding="utf-8")
        query = RenderedQuery(name, text, Dialect.ADVANCED_HUNTING, frozenset({"EmailEvents", "CloudAppEvents"}))
        result = source.run(query)
        if not result.complete:
            raise RuntimeError(f"playbook query {name} failed: {result.reason}")
        out[name] = {r["Connectors"] for r in result.rows}
    source.close()
    return out


def evaluate(seed: int, days: int, emails: int, workdir: Path, look_alikes: bool = True) -> list[tuple[str, ...]]:
    folder = workdir / f"seed{seed}"
    subprocess.run([sys.executable, "-m", "grading", "simulate", str(folder), "--seed", str(seed), "--days",
                    str(days), "--emails-per-day", str(emails), "--connectors", "10",
                    *(["--look-alikes"] if look_alikes else [])], check=True, capture_output=True)
    labels = json.loads(folder.with_suffix(".labels.json").read_text(encoding="utf-8"))
    result = sweep_export(folder, now=None, window_start=None, policy_path=None)
    now = parse_instant(result.sweep["windowEnd"])
    verdicts = {v["connector"]: v for v in result.verdicts}
    flags = playbook_flags(folder, now)
    rows = []
    for s in labels["scenarios"]:
        name = s["connector"]
        if not name:
            continue
        v = verdicts.get(name, {})
        expected = s["expectedClassification"]
        ours = v.get("classification", "-")
        verdict = "ok" if ours == expected else "WRONG"
        rows.append((str(seed), s["id"], expected, ours, str(v.get("score", "-")), verdict,
                     *("flag" if name in flags[q] else "-" for q in QUERIES)))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--emails-per-day", type=int, default=3000)
    p.add_argument("--base-only", action="store_true", help="without the look-alike scenario pairs")
    args = p.parse_args(argv)
    header = ("seed", "scenario", "expected", "ours", "score", "", *QUERIES)
    rows = [header]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            rows.extend(evaluate(seed, args.days, args.emails_per_day, Path(tmp), not args.base_only))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)))
    print("\nA playbook 'flag' on a falsePositive scenario is a false alarm; '-' on a truePositive is a miss.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
