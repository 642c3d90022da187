"""The operator's remediation verbs: ``pending``, ``approve``, ``deny``, ``reenable``, ``inventory``,
``remediate --once``.

Why here and not in :mod:`grading.cli`: the CLI stays a thin parser. The verbs act through the
same runner, tables and identity as the queue-triggered function (settings from the environment:
``AzureWebJobsStorage``, ``REMEDIATION_*``, ``EXCHANGE_*``; DefaultAzureCredential, i.e. the
operator's ``az login`` locally), so an approval is recorded and audited exactly like an action of
the function.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from grading.cli.common import EXIT_ERROR, EXIT_OK, write_json
from grading.cli.tenants import add_tenant_option
from grading.text import safe_text


def _who(args: argparse.Namespace) -> str:
    return args.by or getpass.getuser()


def _runner(tenant: str | None = None) -> Any:
    from grading.wiring import build_runner

    if tenant is not None:
        from grading.cli.tenants import tenant_runner

        return tenant_runner(tenant)
    return build_runner()


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("pending", help="list remediation actions waiting for approval")
    add_tenant_option(p)
    p.set_defaults(func=cmd_pending)

    p = sub.add_parser("approve", help="perform a remediation action held past the hourly cap")
    p.add_argument("action_id", metavar="ACTION_ID", help="the id shown by `pending` and in the notification")
    p.add_argument("--by", help="who decides (default: the signed-in user name)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("deny", help="refuse a held remediation action for good")
    p.add_argument("action_id", metavar="ACTION_ID")
    p.add_argument("--reason", default="", help="why (recorded in the audit log)")
    p.add_argument("--by", help="who decides (default: the signed-in user name)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_deny)

    p = sub.add_parser("reenable", help="roll back the grader's disable of a connector (or, with "
                       "--transport-rule, of a transport rule)")
    p.add_argument("connector", metavar="CONNECTOR", help="the connector's name, exactly as the verdicts spell it "
                   "(with --transport-rule: the rule's name)")
    p.add_argument("--transport-rule", action="store_true", dest="rule",
                   help="CONNECTOR names a transport rule the grader disabled: Enable-TransportRule it")
    p.add_argument("--type", choices=("Inbound", "Outbound"), dest="kind",
                   help="the connector's kind, needed only when no disable of it is recorded")
    p.add_argument("--by", help="who decides (default: the signed-in user name)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_reenable)

    p = sub.add_parser("remediate", help="process what is on the remediation queue now, in the configured "
                       "REMEDIATION_MODE (report mode: a dry run)")
    p.add_argument("--once", action="store_true", required=True,
                   help="one pass over the messages on the queue now (the only mode: the Functions trigger "
                        "runs continuously)")
    p.add_argument("--json", type=Path, metavar="FILE|-",
                   help="write one JSON object per message (messageId, connector, incidentKey, outcome, reason) "
                        "as an array to FILE ('-' for stdout) instead of lines")
    add_tenant_option(p)
    p.set_defaults(func=cmd_remediate)

    p = sub.add_parser("inventory", help="refresh the connector inventory now (read-only Get-…Connector)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_inventory)


def _print_line(line: Any, out: Any) -> int:
    from grading.remediation.runner import SUCCESS

    print(f"{line.outcome}: {line.action.action} {safe_text(line.action.label or line.action.target, 200)} "
          f"(id {line.action.action_id}): {safe_text(line.detail, 600)}", file=out)
    return EXIT_OK if line.outcome in SUCCESS or line.outcome in ("denied", "reenabled") else EXIT_ERROR


def cmd_pending(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    waiting = _runner(getattr(args, "tenant", None)).pending.waiting()
    if not waiting:
        print("no remediation action is waiting for approval", file=out)
    for held in waiting:
        print(f"{held.action.action_id}  {held.action.action}  {safe_text(held.action.label, 120)}  held "
              f"{held.held_at:%Y-%m-%dT%H:%MZ}  incident {held.action.incident_key}: {safe_text(held.reason, 200)}",
              file=out)
    return 0


def cmd_approve(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    runner = _runner(getattr(args, "tenant", None))
    return _print_line(runner.approve(args.action_id, by=_who(args)), out)


def cmd_deny(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    runner = _runner(getattr(args, "tenant", None))
    return _print_line(runner.deny(args.action_id, by=_who(args), reason=args.reason), out)


def cmd_reenable(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    runner = _runner(getattr(args, "tenant", None))
    if getattr(args, "rule", False):
        return _print_line(runner.reenable_rule(args.connector, by=_who(args)), out)
    return _print_line(runner.reenable(args.connector, by=_who(args), kind=args.kind), out)


def cmd_inventory(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    from grading.wiring import refresh_inventory

    if getattr(args, "tenant", None) is not None:
        from grading.cli.tenants import tenant_inventory

        summary = tenant_inventory(args.tenant)
    else:
        summary = refresh_inventory()
    print(f"connector inventory refreshed: {summary.connectors} connectors, {summary.changed} changed, "
          f"{summary.removed} no longer present", file=out)
    return 0


def cmd_remediate(args: argparse.Namespace, out: Any = None) -> int:
    """Each message's outcome: performed | reportOnly | refused | alreadyDone | held | failed. Exit 1
    if any failed (it stays on the queue for a later try), else 0."""
    out = out or sys.stdout
    from grading.remediation.runner import MESSAGE_FAILED, process_queue
    from grading.wiring import remediation_queues, tenant_incident_unwrapper, tenant_remediation_queues

    tenant = getattr(args, "tenant", None)
    queue, poison = tenant_remediation_queues() if tenant else remediation_queues()
    unwrap = tenant_incident_unwrapper(tenant) if tenant else None
    try:
        results = process_queue(_runner(tenant), queue, poison, unwrap=unwrap)
    finally:
        queue.close()
        poison.close()
    if args.json:
        write_json(args.json, [r.to_dict() for r in results])
    else:
        if not results:
            print("the remediation queue is empty", file=out)
        for r in results:
            print(f"{r.outcome}: message {safe_text(r.message_id, 80)} incident {safe_text(r.incident_key, 130)} "
                  f"connector {safe_text(r.connector, 200)!r}: {safe_text(r.reason, 1000)}", file=out)
    return EXIT_ERROR if any(r.outcome == MESSAGE_FAILED for r in results) else EXIT_OK
