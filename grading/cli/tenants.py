"""The operator's tenant verbs: ``tenants add|list|show|remove|summary``, and ``--tenant`` for the
storage and remediation verbs.

Why here: the CLI stays a thin parser; the registry is :mod:`grading.storage.tenants` and every
tenant's services are built by :mod:`grading.wiring` exactly as the Functions triggers build them,
so ``verdicts --tenant ID`` reads what that tenant's queue-triggered sweep wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grading.cli.common import print_table, write_json
from grading.errors import UsageError
from grading.text import safe_text


def add_tenant_option(parser: argparse.ArgumentParser) -> None:
    """``--tenant ID`` on a verb: act on that registered tenant's state; without it, the
    deployment's own tenant, as before."""
    parser.add_argument("--tenant", metavar="ID",
                        help="a registered tenant's id (GUID): act on its state and in its tenant only")


def resolve(tenant_id: str) -> Any:
    """The registered tenant *tenant_id*, or a usage error saying what to do."""
    from grading.settings import SettingsError
    from grading.storage.tenants import TenantError
    from grading.wiring import tenant_registry

    try:
        return tenant_registry().require(tenant_id)
    except (TenantError, SettingsError) as exc:
        raise UsageError(str(exc)) from None


def tenant_services(tenant_id: str) -> Any:
    from grading.wiring import tenant_sweep_services

    return tenant_sweep_services(resolve(tenant_id))


def tenant_runner(tenant_id: str) -> Any:
    """The tenant's runner with the operator's own sign-in, asked for tokens in that tenant (an
    admin there through GDAP or a guest account); the Functions app uses its federated credential."""
    from grading.wiring import build_tenant_runner

    tenant = resolve(tenant_id)
    return build_tenant_runner(tenant, credential=_operator_credential(tenant.tenant_id))


def tenant_inventory(tenant_id: str) -> Any:
    from grading.wiring import refresh_tenant_inventory

    tenant = resolve(tenant_id)
    return refresh_tenant_inventory(tenant, credential=_operator_credential(tenant.tenant_id))


def _operator_credential(tenant_id: str) -> Any:
    from azure.identity import DefaultAzureCredential

    from grading.cloud.tenant_identity import TenantBoundCredential

    return TenantBoundCredential(DefaultAzureCredential(additionally_allowed_tenants=[tenant_id]), tenant_id)


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("tenants", help="register, list, show and remove the tenants this deployment grades")
    verbs = p.add_subparsers(dest="tenants_command", required=True)

    a = verbs.add_parser("add", help="register a tenant (its source, Exchange organisation, policy, mode)")
    a.add_argument("tenant_id", metavar="TENANT_ID", help="the tenant's id (a GUID)")
    a.add_argument("--name", default="", help="display name shown in listings and the summary page")
    a.add_argument("--source", choices=("defender", "loganalytics", "local"), default="defender")
    a.add_argument("--workspace-id", help="loganalytics: the workspace id (a workspace delegated through Lighthouse)")
    a.add_argument("--data", help="local: the export folder")
    a.add_argument("--credential", choices=("federated", "certificate", "home"), default="federated",
                   help="federated: the multi-tenant app (TENANT_APP_CLIENT_ID) with the managed identity as its "
                        "credential (default); certificate: an app certificate in an app setting; home: the app's own "
                        "identity (its own tenant, or a Lighthouse-delegated workspace)")
    a.add_argument("--certificate-setting", help="certificate: the app setting holding the PEM (a Key Vault reference)")
    a.add_argument("--certificate-client-id", help="certificate: the client id of the certificate's app registration")
    a.add_argument("--exchange-organization", help="the tenant's initial domain (contoso.onmicrosoft.com)")
    a.add_argument("--policy", type=Path, help="the tenant's grading policy file (JSON), stored in the registry")
    a.add_argument("--protect", action="append", default=[], metavar="CONNECTOR",
                   help="a protected connector (repeat; an Inbound: or Outbound: prefix protects one kind)")
    a.add_argument("--domain", action="append", default=[], help="one of the tenant's own mail domains (repeat)")
    a.add_argument("--own-object-id", action="append", default=[],
                   help="the grader's service principal object id in the tenant (repeat)")
    a.add_argument("--mode", choices=("report", "enforce"), default="report", help="remediation mode (default report)")
    a.add_argument("--disabled", action="store_true", help="register without sweeping it yet")
    a.add_argument("--replace", action="store_true", help="replace the entry of a tenant registered already")
    a.set_defaults(func=cmd_add)

    lst = verbs.add_parser("list", help="the registered tenants")
    lst.add_argument("--json", type=Path, help="write the list as JSON to this file ('-' for stdout)")
    lst.set_defaults(func=cmd_list)

    s = verbs.add_parser("show", help="one tenant's entry, its tables and its report folder")
    s.add_argument("tenant_id", metavar="TENANT_ID")
    s.add_argument("--json", type=Path, help="write it as JSON to this file ('-' for stdout)")
    s.set_defaults(func=cmd_show)

    r = verbs.add_parser("remove", help="unregister a tenant (with --purge: delete its tables and reports too)")
    r.add_argument("tenant_id", metavar="TENANT_ID")
    r.add_argument("--purge", action="store_true",
                   help="also delete every table of the tenant and every report blob under tenants/<id>/")
    r.set_defaults(func=cmd_remove)

    m = verbs.add_parser("summary", help="per tenant: connectors per classification, last sweep, its report")
    m.add_argument("--html", type=Path, help="write the summary page to this file")
    m.add_argument("--json", type=Path, help="write the rows as JSON to this file ('-' for stdout)")
    m.set_defaults(func=cmd_summary)


def _registry() -> Any:
    from grading.wiring import tenant_registry

    return tenant_registry()


def cmd_add(args: argparse.Namespace, out: Any = None) -> int:
    from grading.storage.tenants import Tenant, TenantError, tenant_table_prefix

    out = out or sys.stdout
    policy = None
    if args.policy:
        try:
            policy = json.dumps(json.loads(args.policy.read_text(encoding="utf-8")))
        except OSError as exc:
            raise UsageError(f"--policy {args.policy}: cannot be read ({exc.strerror})") from None
        except ValueError as exc:
            raise UsageError(f"--policy {args.policy}: not valid JSON ({exc})") from None
    try:
        tenant = Tenant(
            tenant_id=args.tenant_id, display_name=args.name, source=args.source, credential=args.credential,
            workspace_id=args.workspace_id, data_dir=str(Path(args.data).resolve()) if args.data else None,
            certificate_setting=args.certificate_setting, certificate_client_id=args.certificate_client_id,
            exchange_organization=args.exchange_organization, policy=policy,
            protected_connectors=tuple(args.protect), domains=tuple(args.domain),
            own_object_ids=tuple(args.own_object_id), remediation_mode=args.mode, enabled=not args.disabled,
        )
        registry = _registry()
        stored = registry.add(tenant, replace=args.replace)
    except TenantError as exc:
        raise UsageError(str(exc)) from None
    print(f"tenant {stored.tenant_id} ({safe_text(stored.display_name, 80)}) registered: source {stored.source}, "
          f"credential {stored.credential}, mode {stored.remediation_mode}; its tables are "
          f"{tenant_table_prefix(registry.base_prefix, stored.tenant_id)}*", file=out)
    return 0


def cmd_list(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    tenants = _registry().tenants()
    if args.json:
        write_json(args.json, [t.as_dict() for t in tenants])
        if str(args.json) == "-":
            return 0
    if not tenants:
        print("no tenant registered: this deployment grades its own tenant only (`tenants add` to add one)",
              file=out)
        return 0
    rows = [("TENANT", "SOURCE", "CREDENTIAL", "MODE", "EXCHANGE", "ENABLED", "NAME")]
    for t in tenants:
        rows.append((t.tenant_id, t.source, t.credential, t.remediation_mode, t.exchange_organization or "-",
                     "yes" if t.enabled else "no", safe_text(t.display_name, 80)))
    print_table(rows, out)
    return 0


def cmd_show(args: argparse.Namespace, out: Any = None) -> int:
    from grading.storage.tenants import tenant_report_folder, tenant_table_prefix

    out = out or sys.stdout
    registry = _registry()
    tenant = resolve(args.tenant_id)
    doc = tenant.as_dict() | {"tablePrefix": tenant_table_prefix(registry.base_prefix, tenant.tenant_id),
                              "reportFolder": tenant_report_folder(tenant.tenant_id)}
    if args.json:
        write_json(args.json, doc)
        if str(args.json) == "-":
            return 0
    for key, value in doc.items():
        if key == "policy" and value:
            value = "(a policy of its own)"
        print(f"{key}: {safe_text(value if isinstance(value, str) else json.dumps(value), 300)}", file=out)
    return 0


def cmd_remove(args: argparse.Namespace, out: Any = None) -> int:
    from grading.storage.tenants import TenantError, canonical_tenant_id
    from grading.wiring import purge_tenant

    out = out or sys.stdout
    try:
        tenant_id = canonical_tenant_id(args.tenant_id)
    except TenantError as exc:
        raise UsageError(str(exc)) from None
    if _registry().remove(tenant_id):
        print(f"tenant {tenant_id} unregistered: it is swept no more", file=out)
    elif not args.purge:
        raise UsageError(f"tenant {tenant_id} is not registered (pass --purge to delete what it left behind)")
    if args.purge:
        removed = purge_tenant(tenant_id)
        print(f"purged tenant {tenant_id}: {removed['tables']} tables and {removed['blobs']} report blobs deleted",
              file=out)
    else:
        print("its tables and reports are kept: `tenants remove ID --purge` deletes them", file=out)
    return 0


def cmd_summary(args: argparse.Namespace, out: Any = None) -> int:
    from grading.report.summary import render_summary
    from grading.wiring import tenants_summary

    out = out or sys.stdout
    rows = tenants_summary()
    if args.json:
        write_json(args.json, rows)
    if args.html:
        args.html.parent.mkdir(parents=True, exist_ok=True)
        args.html.write_text(render_summary(rows), encoding="utf-8")
    if args.json and str(args.json) == "-":
        return 0
    table = [("TENANT", "TP", "UNKNOWN", "FP", "INFO", "LAST SWEEP", "NAME")]
    for r in rows:
        c, last = r.get("counts") or {}, r.get("lastSweep") or {}
        status = r.get("error") or (f"{last.get('status')} {last.get('windowEnd') or ''}" if last else "never")
        table.append((r["tenantId"], str(c.get("truePositive", 0)), str(c.get("unknown", 0)),
                      str(c.get("falsePositive", 0)), str(c.get("informationalExpectedActivity", 0)),
                      safe_text(status, 60), safe_text(r.get("displayName"), 80)))
    print_table(table, out)
    return 0
