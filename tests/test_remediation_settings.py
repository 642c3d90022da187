"""RemediationSettings: safe defaults, clear errors, protected names that may hold commas."""

from __future__ import annotations

import pytest

from grading.settings import RemediationSettings, SettingsError, load_section


def test_defaults_are_safe() -> None:
    settings = load_section(RemediationSettings, {})

    assert settings.mode == "report"
    assert not (
        settings.allow_remove
        or settings.allow_revert
        or settings.disable_account
        or settings.require_password_change
        or settings.alert_writeback
    )


def test_enforce_needs_the_exchange_tenant_and_domain() -> None:
    with pytest.raises(SettingsError, match="EXCHANGE_TENANT_ID is required when REMEDIATION_MODE=enforce"):
        load_section(RemediationSettings, {"REMEDIATION_MODE": "enforce"})


def test_protected_names_with_commas_are_given_as_json_and_match_without_case() -> None:
    settings = load_section(
        RemediationSettings, {"REMEDIATION_PROTECTED_CONNECTORS": '["Partner, Inc. relay", "Payroll"]'}
    )

    assert settings.protected_connectors == ("Partner, Inc. relay", "Payroll")
    assert settings.protects("partner, inc. RELAY") and not settings.protects("Partner")
    assert load_section(RemediationSettings, {"REMEDIATION_PROTECTED_CONNECTORS": "A; B"}).protected_connectors == (
        "A",
        "B",
    )


@pytest.mark.parametrize(
    ("env", "value", "hint"),
    [
        ("REMEDIATION_MODE", "yes", "one of: report, enforce"),
        ("REMEDIATION_WEBHOOK_URL", "http://hooks.example/x", "https:// URL"),
        ("REMEDIATION_MAX_DISABLES_PER_HOUR", "-1", "0 or more"),
        ("EXCHANGE_ORGANIZATION_DOMAIN", "contoso", "contoso.onmicrosoft.com"),
        ("REMEDIATION_PROTECTED_CONNECTORS", "[1, 2]", "JSON array of strings"),
    ],
)
def test_a_bad_value_names_the_setting_and_what_to_write(env: str, value: str, hint: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_section(RemediationSettings, {env: value})

    assert env in str(caught.value) and hint in str(caught.value)


def test_a_kind_prefix_protects_only_that_kind_of_connector() -> None:
    """An attacker's Outbound connector named like a protected Inbound one is not shielded."""
    settings = load_section(RemediationSettings, {"REMEDIATION_PROTECTED_CONNECTORS": "Inbound:Payroll Relay, Shared"})

    assert settings.protects("payroll relay", "Inbound")
    assert not settings.protects("Payroll Relay", "Outbound")
    assert settings.protects("shared", "Inbound") and settings.protects("SHARED", "Outbound")
