"""The analyst's storage verbs: ``sweep --store table``, ``verdicts``, ``suppress``, and the demo.

Why here and not in :mod:`grading.cli`: the CLI stays a thin parser; what a verb does with Table
Storage lives beside the store. Connections come from the same settings as the Functions app
(``AzureWebJobsStorage`` locally), so the CLI reads and writes exactly what the timer does.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import ServiceRequestError

from grading.text import safe_text


def _usage(message: str) -> Exception:
    from grading.cli import UsageError

    return UsageError(message)


def open_services(environ: Mapping[str, str] | None = None, *, hint: str = "") -> Any:
    """The scheduler's services from the environment, or a usage error saying what to set."""
    from grading.scheduler import Services
    from grading.settings import SettingsError
    from grading.storage.connection import STORAGE_HINT

    try:
        return Services.from_environment(environ)
    except SettingsError as exc:
        raise _usage(f"{exc}{hint if 'not configured' in str(exc) else ''}") from None
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


def add_store_parsers(sub: Any) -> None:
    p = sub.add_parser("verdicts", help="list the latest stored verdict of every connector (or one's history)")
    p.add_argument("--history", metavar="CONNECTOR", help="every stored verdict of this connector, newest first")
    p.add_argument("--sweeps", action="store_true",
                   help="list the stored sweep records (failed ones included) and their report blobs")
    p.add_argument("--json", type=Path, help="write the listing as JSON to this file ('-' for stdout)")
    p.set_defaults(func=cmd_verdicts)

    p = sub.add_parser("suppress", help="mark a connector's latest verdict a false positive until it changes")
    p.add_argument("connector", help="the connector's name, exactly as the verdicts spell it")
    p.add_argument("--reason", required=True, help="why this is a false positive (shown on later verdicts)")
    p.add_argument("--by", help="who decides (default: the signed-in user name)")
    p.set_defaults(func=cmd_suppress)


def _table(rows: list[tuple[str, ...]], out: Any) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + "  " + r[-1], file=out)


def _emit_json(path: Path, doc: Any) -> None:
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if str(path) == "-":
        sys.stdout.write(text + "\n")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")


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
    _table(rows, out)


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
    _table(rows, out)


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
    _table(rows, out)


def cmd_verdicts(args: argparse.Namespace) -> int:
    services = open_services()
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
        _emit_json(args.json, doc)
        if str(args.json) == "-":
            return 0
    printer(doc)
    return 0


def cmd_suppress(args: argparse.Namespace) -> int:
    from grading.storage.store import StoreError

    services = open_services()
    by = args.by or _user()
    try:
        s = services.store.suppress(args.connector, reason=args.reason, by=by)
    except StoreError as exc:
        raise _usage(str(exc)) from None
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


# ---------------------------------------------------------------------------------------------
# demo


def run_demo(sample: Path, json_path: Path, out: Any = None) -> int:
    """Start Azurite, sweep the bundled sample tenant into Table Storage, read it back, stop Azurite."""
    from grading.cli import print_verdicts, sweep_export
    from grading.devtools.azurite import running_azurite
    from grading.policy import load_policy
    from grading.scheduler import Services
    from grading.settings import StorageSettings, TenantSettings, WindowSettings, load_section
    from grading.storage.connection import StorageConnection

    out = out or sys.stdout

    print("Starting Azurite (the local Azure Storage emulator) ...", file=out)
    with running_azurite() as azurite:
        settings = StorageSettings(connection_string=azurite.connection_string)
        tenant = load_section(TenantSettings)
        services = Services.connect(StorageConnection.from_settings(settings), settings,
                                    window_settings=load_section(WindowSettings), tenant_settings=tenant,
                                    policy=load_policy(tenant.policy_file))
        print(f"Sweeping the bundled sample tenant ({sample}) ...", file=out)
        result = sweep_export(sample, now=None, window_start=None, policy_path=None)
        graded = persist(services, result, enqueue=True, data=sample, out=out)
        print_verdicts(graded.verdicts, graded.sweep, out=out)
        print("\nRead back from Table Storage (python -m grading verdicts):", file=out)
        print_latest(services.store.latest_verdicts(), out=out)
        queued = services.queue.client.get_queue_properties().approximate_message_count
        print(f"remediation queue {services.queue.name}: {queued} message(s)", file=out)
        _emit_json(json_path, {"verdicts": graded.verdicts, "sweep": graded.sweep})
        print(f"verdicts written to {json_path}", file=out)
        from grading.report import render_html

        page = json_path.with_name("report.html")
        page.write_text(render_html(graded.verdicts, graded.sweep), encoding="utf-8")
        print(f"report written to {page} (open it in a browser)", file=out)
    print("Azurite stopped.", file=out)
    return 0
