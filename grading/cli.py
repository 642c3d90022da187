"""``python -m grading``: sweep, simulate, show queries, run the demo.

Exit codes (the contract): 0 the sweep completed (whatever the verdicts), 2 bad input or usage,
1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grading.text import safe_text

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
SAMPLE_TENANT = Path(__file__).with_name("sample_tenant")

log = logging.getLogger("grading")


class UsageError(Exception):
    """Bad input or usage: printed as-is, exit code 2."""


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; a value without a zone is refused (the grader works in UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-20T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC")
    return value.astimezone(UTC)


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="grade every connector of an export folder (or the configured source)")
    p.add_argument(
        "--data", type=Path, help="export folder (local source); default: the GRADER_SOURCE setting"
    )
    p.add_argument(
        "--now", type=parse_instant, help="end of the graded window (default: the export's latest event)"
    )
    p.add_argument(
        "--window-start", type=parse_instant, help="start of the graded window (default: now - 24h)"
    )
    p.add_argument("--json", type=Path, help="write {verdicts, sweep} as JSON to this file ('-' for stdout)")
    p.add_argument("--html", type=Path, help="write a self-contained HTML report to this file")
    p.add_argument("--markdown", type=Path, help="write the report as Markdown to this file ('-' for stdout)")
    p.add_argument(
        "--store",
        choices=("memory", "table"),
        default="table",
        help="where verdicts and baselines go (default table: Azure Table Storage through the "
        "AzureWebJobsStorage setting; memory: keep nothing)",
    )
    p.add_argument(
        "--no-remediation",
        action="store_true",
        help="with --store table: do not put true-positive incidents on the remediation queue",
    )
    p.add_argument("--policy", type=Path, help="JSON file overriding the grading policy")
    p.set_defaults(func=cmd_sweep)


def _add_queries(sub: Any) -> None:
    p = sub.add_parser("queries", help="print the hunting queries, rendered for a dialect")
    p.add_argument("--dialect", choices=("ah", "la"), default="ah")
    p.add_argument("name", nargs="?", help="one query (default: list them)")
    p.set_defaults(func=cmd_queries)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="start Azurite, sweep the bundled sample tenant into Table Storage, stop Azurite")
    p.add_argument("--json", type=Path, default=Path(".demo/sweep.json"))
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grading", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_sweep(sub)
    _add_queries(sub)
    _add_demo(sub)
    from grading.simulate import add_simulate_parser
    from grading.storage.commands import add_store_parsers

    add_simulate_parser(sub)
    add_store_parsers(sub)
    from grading.remediation.commands import add_remediation_parsers

    add_remediation_parsers(sub)
    return parser


# ---------------------------------------------------------------------------------------------


def print_verdicts(verdicts: list[dict[str, Any]], sweep: dict[str, Any], out: Any = sys.stdout) -> None:
    """A readable table: connector, type, classification, score, top findings."""
    print(
        f"Sweep {sweep['sweepId']}  window {sweep['windowStart']} .. {sweep['windowEnd']}  "
        f"source {sweep['source']}  {sweep['queryCount']} queries, {sweep['rowsReturned']} rows, "
        f"{sweep['durationSeconds']} s",
        file=out,
    )
    if not sweep["complete"]:
        print("INCOMPLETE: " + "; ".join(safe_text(e) for e in sweep["errors"]), file=out)
    for note in sweep.get("notChecked", []):
        print("not checked: " + safe_text(note), file=out)
    rows = [("CONNECTOR", "TYPE", "CLASSIFICATION", "SCORE", "TOP FINDINGS")]
    for v in verdicts:
        top = "; ".join(safe_text(f["summary"], 70) for f in v["findings"][:2])
        if v["classification"] == "unknown" and v.get("reasonIfUnknown"):
            top = safe_text(v["reasonIfUnknown"], 90)
        det = f" ({v['determination']})" if v.get("determination") else ""
        rows.append(
            (
                safe_text(v["connector"], 40),
                v["connectorType"],
                v["classification"] + det,
                str(v["score"]),
                top,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:4])) + "  " + r[4], file=out)
    counts = ", ".join(f"{k} {n}" for k, n in sweep["counts"].items())
    print(f"{sweep['connectors']} connectors: {counts}", file=out)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if str(path) == "-":
        sys.stdout.write(text + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def sweep_export(
    data: Path, *, now: datetime | None, window_start: datetime | None, policy_path: Path | None
) -> Any:
    """Load *data* and sweep it with the local source (shared by ``sweep`` and ``demo``)."""
    from grading.hunting.export import ExportError, format_report
    from grading.hunting.sources.local import LocalSource
    from grading.policy import load_policy
    from grading.settings import TenantSettings, WindowSettings, load_section
    from grading.sweep import default_now, run_sweep

    if not data.is_dir():
        raise UsageError(f"--data {data}: not a folder; pass the export folder (one file per table)")
    window_settings = load_section(WindowSettings)
    tenant = load_section(TenantSettings)
    policy = load_policy(policy_path or tenant.policy_file)
    try:
        source = LocalSource(data)
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    with source:
        if source.report.notices:
            # What the loader filled or ignored, said once (stderr keeps --json - clean).
            print(format_report(source.report), file=sys.stderr)
        if now is None:
            try:
                now = default_now(source, live=False, ingestion_delay=window_settings.ingestion_delay)
            except ValueError as exc:
                raise UsageError(f"--data {data}: {exc}") from None
        source.now = source.now or now
        return run_sweep(
            source,
            now=now,
            window_start=window_start,
            window_settings=window_settings,
            tenant_settings=tenant,
            policy=policy,
        )

def cmd_sweep(args: argparse.Namespace) -> int:
    services = None
    if args.store == "table":
        from grading.storage.commands import open_services

        # Before the sweep, so a storage problem fails fast.
        services = open_services(hint="; or pass --store memory to keep nothing")
    if args.data is None:
        raise UsageError(
            "--data is required for now: the cloud sources are selected through GRADER_SOURCE "
            "in the Functions app"
        )
    result = sweep_export(args.data, now=args.now, window_start=args.window_start, policy_path=args.policy)
    if services is not None:
        from grading.storage.commands import persist

        # Suppressions are applied to what is printed, as to what is stored.
        persist(services, result, enqueue=not args.no_remediation, data=args.data)
    print_verdicts(result.verdicts, result.sweep)
    if args.json:
        _write_json(args.json, result.as_json())
    if args.html or args.markdown:
        from grading.report import render_html, render_markdown, write_text

        for path, render in ((args.html, render_html), (args.markdown, render_markdown)):
            if path:
                write_text(path, render(result.verdicts, result.sweep))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    if not SAMPLE_TENANT.is_dir():
        raise UsageError(f"the bundled sample tenant is missing at {SAMPLE_TENANT}")
    from grading.storage.commands import run_demo

    code = run_demo(SAMPLE_TENANT, args.json)
    if code == EXIT_OK:
        print_demo_next_steps(args.json.with_name("report.html"))
    return code


def print_demo_next_steps(report: Path, out: Any = None) -> None:
    """The demo's closing lines: where its report is, how to open it, and what to run next."""
    out = out or sys.stdout
    opener = {"darwin": "open", "win32": "start"}.get(sys.platform, "xdg-open")
    print(
        "\nDone. The sweep's report (one page, no server needed):\n"
        f"  {report}    open it: {opener} {report}   or in a browser: {report.resolve().as_uri()}\n"
        "Next:\n"
        "  sweep your own export (one file per table, EmailEvents and CloudAppEvents at least; README):\n"
        "    .venv/bin/python -m grading sweep --data path/to/export --store memory --html report.html\n"
        "  deploy to a tenant in report mode (it grades and notifies, changes nothing): azd up\n"
        "    (docs/operations.md walks through it)",
        file=out,
    )


def cmd_queries(args: argparse.Namespace) -> int:
    from grading.hunting.rendering import Dialect, load_queries, render

    queries = load_queries()
    if not args.name:
        for q in queries.values():
            print(f"{q.name:28} {q.question}")
        return EXIT_OK
    if args.name not in queries:
        raise UsageError(f"no query named {args.name!r}; known: {', '.join(queries)}")
    print(render(queries[args.name], {}, Dialect(args.dialect)).text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from grading.hunting.rendering import ParameterError, QueryFileError
    from grading.policy import PolicyError
    from grading.settings import SettingsError

    try:
        return int(args.func(args))
    except (UsageError, SettingsError, PolicyError, ParameterError, QueryFileError) as exc:
        print(f"error: {safe_text(str(exc), 2000)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as exc:
        log.debug("sweep failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {safe_text(str(exc), 2000)}", file=sys.stderr)
        return EXIT_ERROR
