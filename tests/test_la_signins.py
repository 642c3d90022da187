"""Entra ID sign-ins in a Log Analytics (Microsoft Sentinel) workspace: SigninLogs and
AADNonInteractiveUserSignInLogs read as EntraIdSignInEvents, so admin_entra_signins is no longer
advanced hunting only.

The sweeps run against the loopback fake of the Log Analytics query API of ``test_schema_drift``
(a workspace answering ``getschema`` from a schema variant); every query the workspace receives is
bound by Kusto.Language against that workspace's schema.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_schema_drift import ADMIN, NOW, Clock, FakeTenant, source_for

from devtools.kql_check import schema_variants, validate_queries
from grading.cli.schema import schema_check
from grading.hunting.live import resolve_schema
from grading.hunting.rendering import Dialect, load_queries, render
from grading.sweep import run_sweep

LA = Dialect.LOG_ANALYTICS
VARIANTS = schema_variants()


def sweep(tenant: FakeTenant) -> Any:
    return run_sweep(source_for(tenant, Clock()), now=NOW)


def signin_query(tenant: FakeTenant) -> str:
    return next(q for q in tenant.queries if q.startswith("// From which countries do the admins"))


@pytest.mark.parametrize("variant", ["la-ISP", "la-interactive-ISP"])
def test_a_log_analytics_sweep_reads_the_admins_entra_sign_ins(variant: str) -> None:
    tenant = FakeTenant("loganalytics", variant)
    result = sweep(tenant)
    signins = next(q for q in result.sweep["queries"] if q["name"] == "admin_entra_signins")
    assert signins["checked"] and signins["complete"] and signins["rows"] == 1
    assert not [n for n in result.sweep["notChecked"] if n.startswith("adminCompromise (Entra")]
    both = variant == "la-ISP"
    expected = ["SigninLogs", "AADNonInteractiveUserSignInLogs"] if both else ["SigninLogs"]
    assert result.sweep["schema"]["EntraIdSignInEvents"] == {"table": " + ".join(expected), "sources": expected}
    assert {"SigninLogs", "AADNonInteractiveUserSignInLogs"} <= set(tenant.probes)
    text = signin_query(tenant)
    assert ("(AADNonInteractiveUserSignInLogs | where TimeGenerated >=" in text) is both
    assert "SigninLogs | where TimeGenerated >=" in text
    [bound] = validate_queries([_item(text, variant)], schemas={variant: VARIANTS[variant][1]})
    assert bound.ok, bound.describe_errors()
    # The sign-ins are evidence: the admin's usual country comes from them (the fake's one row, NL).
    [verdict] = result.verdicts
    [admin] = verdict["evidence"]["admins"]
    assert admin["objectId"] == ADMIN and "NL" in admin["usualCountries"]


def _item(text: str, variant: str) -> Any:
    from devtools.kql_check import QueryItem

    return QueryItem("signins", LA, text, schema=variant)


def test_a_workspace_without_entra_sign_ins_reports_them_not_checked_without_asking() -> None:
    tenant = FakeTenant("loganalytics", "la-ISP")
    tenant.tables = {t: c for t, c in tenant.tables.items()
                     if t not in ("SigninLogs", "AADNonInteractiveUserSignInLogs")}
    result = sweep(tenant)
    signins = next(q for q in result.sweep["queries"] if q["name"] == "admin_entra_signins")
    assert not signins["checked"]
    assert any(n.startswith("adminCompromise (Entra sign-ins)") for n in result.sweep["notChecked"])
    assert not [q for q in tenant.queries if q.startswith("// From which countries do the admins")]
    assert result.sweep["schema"]["EntraIdSignInEvents"] == {"table": None, "missing": True}


def test_schema_check_says_which_sign_in_tables_the_workspace_has() -> None:
    import io

    tenant = FakeTenant("loganalytics", "la-interactive-ISP")
    out = io.StringIO()
    record = schema_check(source_for(tenant, Clock()), out)
    text = out.getvalue()
    assert ("EntraIdSignInEvents: read from SigninLogs; AADNonInteractiveUserSignInLogs missing: those sign-ins "
            "are not read") in text
    assert record["EntraIdSignInEvents"] == {"table": "SigninLogs", "sources": ["SigninLogs"]}

    tenant.tables = {t: c for t, c in tenant.tables.items() if t != "SigninLogs"}
    out = io.StringIO()
    schema_check(source_for(tenant, Clock()), out)
    assert ("EntraIdSignInEvents: missing (optional table; looked for SigninLogs and "
            "AADNonInteractiveUserSignInLogs)") in out.getvalue()


def test_a_sign_in_table_that_lacks_a_column_the_view_reads_is_not_sent() -> None:
    # A workspace whose SigninLogs has no UserPrincipalName (this test removes it): the view cannot make
    # AccountUpn, so the query is answered incomplete with the reason, not sent to fail.
    tenant = FakeTenant("loganalytics", "la-interactive-ISP")
    tenant.tables = {**tenant.tables,
                     "SigninLogs": [c for c in tenant.tables["SigninLogs"] if c["name"] != "UserPrincipalName"]}
    result = sweep(tenant)
    signins = next(q for q in result.sweep["queries"] if q["name"] == "admin_entra_signins")
    assert not signins["complete"]
    assert "SigninLogs: UserPrincipalName" in signins["reason"]
    assert not [q for q in tenant.queries if q.startswith("// From which countries do the admins")]


def test_the_rendering_for_a_known_workspace_names_only_its_tables() -> None:
    live = {t: [(c["name"], c["type"]) for c in cols] for t, cols in VARIANTS["la-interactive-ISP"][1].items()}
    resolution = resolve_schema(LA, live)
    text = render(load_queries()["admin_entra_signins"], dialect=LA, schema=resolution).text
    assert "let EntraIdSignInEvents = SigninLogs | extend DeviceInfo" in text
    assert resolution.view_sources("EntraIdSignInEvents") == ("SigninLogs",)
