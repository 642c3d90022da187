"""The approved-configuration verbs: ``approve-config`` and ``drift``.

Why here and not in :mod:`grading.cli`: the CLI stays a thin parser; approving and comparing live in
:mod:`grading.remediation.approved_config` (built by :mod:`grading.wiring`), the table in
:mod:`grading.storage.approved`. An approval records the connector as the inventory holds it (run
``python -m grading inventory`` first), with who approved it and why.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from grading.cli.common import EXIT_OK, print_table
from grading.cli.tenants import add_tenant_option
from grading.errors import UsageError
from grading.text import safe_text


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("approve-config",
                       help="record a connector's current configuration (from the inventory) as approved")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("connector", metavar="CONNECTOR", nargs="?", help="the connector's name")
    target.add_argument("--all", action="store_true", help="approve every connector in the inventory")
    p.add_argument("--reason", required=True, help="why this configuration is the intended one (recorded)")
    p.add_argument("--by", help="who approves (default: the signed-in user name)")
    add_tenant_option(p)
    p.set_defaults(func=cmd_approve_config)

    p = sub.add_parser("drift", help="list connectors whose inventory differs from their approved configuration")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_tenant_option(p)
    p.set_defaults(func=cmd_drift)


def _tenant(args: argparse.Namespace) -> Any:
    if getattr(args, "tenant", None) is None:
        return None
    from grading.cli.tenants import resolve

    return resolve(args.tenant)


def cmd_approve_config(args: argparse.Namespace, out: Any = None) -> int:
    from grading.wiring import approve_configurations

    out = out or sys.stdout
    if not args.reason.strip():
        raise UsageError("--reason must say why this configuration is approved")
    done = approve_configurations(None if args.all else [args.connector], by=args.by or getpass.getuser(),
                                  reason=args.reason, tenant=_tenant(args))
    for a in done:
        print(f"approved {a.kind} connector {safe_text(a.name, 200)!r} ({len(a.configuration)} properties) "
              f"by {safe_text(a.approved_by, 120)}", file=out)
    if not done:
        print("the inventory holds no connector to approve", file=out)
    return EXIT_OK


def cmd_drift(args: argparse.Namespace, out: Any = None) -> int:
    from grading.wiring import configuration_drift

    out = out or sys.stdout
    found = configuration_drift(tenant=_tenant(args))
    if args.json:
        print(json.dumps([d.as_json() for d in found], indent=2, default=str), file=out)
        return EXIT_OK
    if not found:
        print("no approved connector has drifted", file=out)
        return EXIT_OK
    rows: list[tuple[str, ...]] = [("connector", "type", "property", "approved", "current", "risk")]
    for d in found:
        risk = ", ".join(r["kind"] for r in d.risks) or "-"
        for r in d.rows or [{"parameter": "(connector)", "before": "present", "after": "absent"}]:
            rows.append((safe_text(d.approval.name, 60), d.approval.kind, r["parameter"],
                         safe_text(r["before"] or "", 60), safe_text(r["after"] or "", 60), risk))
    print_table(rows, out)
    return EXIT_OK
