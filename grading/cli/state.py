"""The analyst's storage verbs: ``sweep --store table``, ``verdicts``, ``suppress``.

Why here and not in :mod:`grading.cli`: the CLI stays a thin parser; what a verb does with Table
Storage lives beside the store. Connections come from the same settings as the Functions app
(``AzureWebJobsStorage`` locally), so the CLI reads and writes exactly what the timer does.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import ServiceRequestError

from grading.cli.common import print_table, write_json
from grading.cli.tenants import add_tenant_option
from grading.errors import UsageError
from grading.text import safe_text


def open_services(environ: Mapping[str, str] | None = None, *, hint: str = "", tenant: str | None = None) -> Any:
    """The scheduler's services from the environment (*tenant*: that registered tenant's), or a usage
    error saying what to set."""
    from grading.settings import SettingsError
    from grading.storage.connection import STORAGE_HINT
    from grading.wiring import sweep_services

    try:
        if tenant is not None:
            from grading.cli.tenants import tenant_services

            return tenant_services(tenant)
        return sweep_services(environ)
    except SettingsError as exc:
        raise UsageError(f"{exc}{hint if 'not configured' in str(exc) else ''}") from None
    except ServiceRequestError as exc:
        raise RuntimeError(f"cannot reach Table Storage ({exc.message}): {STORAGE_HINT}") from None


def persist(services: Any, result: Any, *, enqueue: bool, data: Path | None = None, out: Any = None) -> Any:
    """Store a sweep result (of export folder *data*), put new TP incidents on the queue (unless told
    not to), say what happened."""
    from grading.scheduler import publish_incidents, store_result

    out = out or sys.stdout

    graded = store_result(services, result, source=f"local:{data.resolve()}" if data else None)
    if enqueue:
        publish_incidents(services, graded)
    prefix = services.storage_settings.table_prefix
    if graded.written:
        print(f"stored sweep {graded.sweep_id} in Table Storage (tables {prefix}*): "
              f"{len(graded.verdicts)} verdicts", file=out)
        print(report_line(graded.sweep.get("report")), file=out)
    else:
        print(f"this window was already graded completely as sweep {graded.sweep_id}; nothing written", file=out)
    if enqueue:
        print(f"{len(graded.enqueued)} new true-positive incident(s) put on queue {services.queue.name}", file=out)
    return graded


def report_line(report: Mapping[str, Any] | None) -> str:
    """Where a stored sweep's HTML report is, or why it is not."""
    if not report:
        return "no report written for this sweep"
    if report.get("error"):
        return f"report not written (the sweep is stored without it): {safe_text(report['error'], 300)}"
    return f"report: {report.get('url')} (container {report.get('container')}, blob {report.get('blob')})"


# ---------------------------------------------------------------------------------------------
# verdicts


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("verdicts", help="list the latest stored verdict of every connector (or one's history)")
    p.add_argument("--history", metavar="CONNECTOR", help="every stored verdict of this connector, newest first")
    p.add_argument("--sweeps", action="store_true",
                   help="list the stored sweep records (failed ones included) and their report blobs")
    p.add_argument("--json", type=Path, help="write the listing as JSON to this file ('-' for stdout)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_verdicts)

    p = sub.add_parser("suppress", help="mark a connector's latest verdict a false positive until it changes")
    p.add_argument("connector", help="the connector's name, exactly as the verdicts spell it")
    p.add_argument("--reason", required=True, help="why this is a false positive (shown on later verdicts)")
    p.add_argument("--by", help="who decides (default: the signed-in user name)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_suppress)


def print_latest(latest: list[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout
    if not latest:
        print("no verdicts stored yet: run a sweep with --store table (the default)", file=out)
        return
    rows = [("CONNECTOR", "TYPE", "CLASSIFICATION", "SCORE", "WINDOW END", "NOTE")]
    for v in latest:
        det = f" ({v['determination']})" if v.get("determination") else ""
        if v["suppressionActive"]:
            s = v["suppression"]
            note = safe_text(f"suppressed by {s['by']} (graded {s['gradedClassification']}): {s['reason']}", 100)
        elif v.get("reasonIfUnknown"):
            note = safe_text(v["reasonIfUnknown"], 90)
        else:
            note = "; ".join(safe_text(f.get("summary", ""), 60) for f in v.get("topFindings", [])[:2])
        rows.append((safe_text(v["connector"], 40), str(v.get("connectorType")), f"{v['classification']}{det}",
                     str(v.get("score")), v["windowEnd"], note))
    print_table(rows, out)


def print_history(connector: str, history: list[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout
    if not history:
        print(f"no stored verdicts for connector '{safe_text(connector, 200)}'", file=out)
        return
    rows = [("WINDOW", "CLASSIFICATION", "SCORE", "INCIDENT", "SWEEP")]
    for h in history:
        det = f" ({h['determination']})" if h.get("determination") else ""
        note = " suppressed" if h.get("suppressed") else ""
        rows.append((f"{h['windowStart']} .. {h['windowEnd']}", f"{h['classification']}{det}{note}",
                     str(h.get("score")), str(h.get("incidentKey") or "")[:12], str(h["sweepId"])))
    print_table(rows, out)


def print_sweeps(sweeps: list[dict[str, Any]], out: Any = None) -> None:
    out = out or sys.stdout
    if not sweeps:
        print("no sweeps stored yet", file=out)
        return
    rows = [("SWEEP", "STATUS", "WINDOW", "CONNECTORS", "ENQUEUED", "REPORT", "ERRORS")]
    for s in sweeps:
        report = s.get("report") or {}
        rows.append((str(s.get("sweepId")), str(s.get("status")), f"{s.get('windowStart')} .. {s.get('windowEnd')}",
                     str(s.get("connectors", "")), str(s.get("enqueued", 0)),
                     str(report.get("blob") or ("failed" if report.get("error") else "-")),
                     safe_text("; ".join(s.get("errors") or []), 100)))
    print_table(rows, out)


def cmd_verdicts(args: argparse.Namespace) -> int:
    services = open_services(tenant=getattr(args, "tenant", None))
    store = services.store
    doc: Any
    if args.sweeps:
        doc = store.sweeps()
        printer: Any = print_sweeps
    elif args.history is not None:
        doc = store.history(args.history, full=bool(args.json))
        printer = lambda d: print_history(args.history, d)  # noqa: E731
    else:
        doc = store.latest_verdicts()
        printer = print_latest
    if args.json:
        write_json(args.json, doc)
        if str(args.json) == "-":
            return 0
    printer(doc)
    return 0


def cmd_suppress(args: argparse.Namespace) -> int:
    from grading.storage.store import StoreError

    services = open_services(tenant=getattr(args, "tenant", None))
    by = args.by or _user()
    try:
        s = services.store.suppress(args.connector, reason=args.reason, by=by)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    print(f"suppressed '{safe_text(s.connector, 200)}' (incident {s.incident_key[:12]}, graded "
          f"{s.graded_classification}) by {safe_text(s.by, 100)}: later sweeps grade it falsePositive until its "
          "configuration changes")
    incident = services.ledger.get(s.incident_key)
    if incident is not None:
        print(f"note: this incident was already put on the remediation queue ({incident.get('State')}); "
              "a suppression does not withdraw remediation already queued")
    return 0


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown analyst"
