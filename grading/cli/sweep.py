"""The grading verbs: ``sweep`` (an export folder, stored or not) and ``queries``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grading.classification import Classification
from grading.cli.common import EXIT_OK, parse_instant, print_table, write_json
from grading.cli.tenants import add_tenant_option
from grading.errors import UsageError
from grading.text import safe_text


def add_parsers(sub: Any) -> None:
    _add_sweep(sub)
    _add_queries(sub)


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
    p.add_argument("--approved", type=Path,
                   help="JSON file of approved connector configurations to compare with (a list, or a simulator "
                   "labels file's approvedConfigurations); with --store table, the stored approvals and "
                   "inventory are used as well")
    add_tenant_option(p)
    p.set_defaults(func=cmd_sweep)


def _add_queries(sub: Any) -> None:
    p = sub.add_parser("queries", help="print the hunting queries, rendered for a dialect")
    p.add_argument("--dialect", choices=("ah", "la"), default="ah")
    p.add_argument("name", nargs="?", help="one query (default: list them)")
    p.set_defaults(func=cmd_queries)


def print_verdicts(verdicts: list[dict[str, Any]], sweep: dict[str, Any], out: Any = None) -> None:
    """A readable table: connector, type, classification, score, top findings."""
    out = out or sys.stdout
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
        if v["classification"] == Classification.UNKNOWN and v.get("reasonIfUnknown"):
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
    print_table(rows, out)
    counts = ", ".join(f"{k} {n}" for k, n in sweep["counts"].items())
    print(f"{sweep['connectors']} connectors: {counts}", file=out)


def sweep_export(
    data: Path, *, now: datetime | None, window_start: datetime | None, policy_path: Path | None,
    tenant_settings: Any = None, policy: Any = None, known: dict[str, Any] | None = None,
    aggregates: Any = None,
) -> Any:
    """Load *data* and sweep it with the local source (shared by ``sweep`` and ``demo``);
    *tenant_settings* and *policy* replace the environment's (a registered tenant's own); *known*: the
    approved configurations and inventory snapshots (``approved``, ``inventory``) to compare with."""
    from grading.policy import load_policy
    from grading.settings import TenantSettings, WindowSettings, load_section
    from grading.sources.local import LocalSource
    from grading.sources.local.export import format_report
    from grading.sweep import default_now, run_sweep

    if not data.is_dir():
        raise UsageError(f"--data {data}: not a folder; pass the export folder (one file per table)")
    window_settings = load_section(WindowSettings)
    tenant = tenant_settings if tenant_settings is not None else load_section(TenantSettings)
    if policy is None or policy_path is not None:
        policy = load_policy(policy_path or tenant.policy_file)
    # Nothing is graded past the clock: a row dated later is a stray (excluded and reported), and
    # a --now later than it has no telemetry to stand on.
    not_after = datetime.now(UTC).replace(microsecond=0) + window_settings.clock_skew
    if now is not None and now > not_after:
        raise UsageError(f"--now {now:%Y-%m-%dT%H:%M:%SZ} is later than the clock plus GRADER_CLOCK_SKEW "
                         f"({not_after:%Y-%m-%dT%H:%M:%SZ}): a sweep grades what has happened; pass an earlier --now")
    if now is not None and window_start is not None and window_start >= now:
        raise UsageError(f"--window-start {window_start:%Y-%m-%dT%H:%M:%SZ} is not before --now "
                         f"{now:%Y-%m-%dT%H:%M:%SZ}; the graded window runs from --window-start to --now")
    source = LocalSource(data, not_after=not_after)  # an ExportError names the file and what to do (exit 2)
    with source:
        if source.report.notices:
            # What the loader filled, ignored or excluded, said once (stderr keeps --json - clean).
            print(format_report(source.report), file=sys.stderr)
        if now is None:
            try:
                now = default_now(source, live=False, ingestion_delay=window_settings.ingestion_delay)
            except ValueError as exc:
                raise UsageError(f"--data {data}: {exc}") from None
            print(f"--now {now:%Y-%m-%dT%H:%M:%SZ}: one second after the export's latest EmailEvents or "
                  "CloudAppEvents event not dated after the clock plus GRADER_CLOCK_SKEW", file=sys.stderr)
            if window_start is not None and window_start >= now:
                raise UsageError(f"--window-start {window_start:%Y-%m-%dT%H:%M:%SZ} is not before --now "
                                 f"{now:%Y-%m-%dT%H:%M:%SZ} (the export's default); pass an earlier one")
        source.now = source.now or now
        result = run_sweep(
            source,
            now=now,
            window_start=window_start,
            window_settings=window_settings,
            tenant_settings=tenant,
            policy=policy,
            **(known or {}),
            aggregates=aggregates,
        )
        excluded = source.report.future_rows
        if excluded:
            result.sweep["excludedFutureRows"] = {"notAfter": not_after.isoformat().replace("+00:00", "Z"),
                                                  "tables": excluded}
        return result

def cmd_sweep(args: argparse.Namespace) -> int:
    services = None
    if args.store == "table":
        from grading.cli.state import open_services

        # Before the sweep, so a storage problem fails fast.
        services = open_services(hint="; or pass --store memory to keep nothing", tenant=args.tenant)
    if args.data is None:
        raise UsageError(
            "--data is required for now: the cloud sources are selected through GRADER_SOURCE "
            "in the Functions app"
        )
    tenant_settings = policy = None
    if args.tenant is not None:  # the tenant's own domains and policy, stored in its tables
        from grading.cli.tenants import tenant_services

        scope = services if services is not None else tenant_services(args.tenant)
        tenant_settings, policy = scope.tenant_settings, scope.policy
    known: dict[str, Any] = {}
    if services is not None and services.configurations is not None:
        known = services.configurations.read()
    if args.approved is not None:
        from grading.storage.approved import approvals_from_json

        try:
            doc = json.loads(args.approved.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--approved {args.approved}: {exc}") from None
        known["approved"] = {**known.get("approved", {}), **approvals_from_json(doc)}
    result = sweep_export(args.data, now=args.now, window_start=args.window_start, policy_path=args.policy,
                          tenant_settings=tenant_settings, policy=policy, known=known,
                          aggregates=services.aggregates if services is not None else None)
    if services is not None:
        from grading.cli.state import persist

        # Suppressions are applied to what is printed, as to what is stored.
        persist(services, result, enqueue=not args.no_remediation, data=args.data)
    print_verdicts(result.verdicts, result.sweep)
    if args.json:
        write_json(args.json, result.as_json())
    if args.html or args.markdown:
        from grading.report import render_html, render_markdown, write_text

        for path, render in ((args.html, render_html), (args.markdown, render_markdown)):
            if path:
                write_text(path, render(result.verdicts, result.sweep))
    return EXIT_OK


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
