"""The grader's rules on plain data: configuration diffs, registrable domains, look-alike names, renames,
and the decision rule (docs/decision-rule.md), without a simulated tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from grading.grader import ConnectorFacts, grade
from grading.grader.baselines import AdminProfile, ConnectorBaseline, TrafficSummary
from grading.grader.configuration import assess, imitated, registrable_domain, replay
from grading.policy import PolicyError, policy_from_mapping
from grading.sweep import _follow_renames, resolve_identity

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def change(op: str, when: datetime, *params: tuple[str, str], kind: str = "Outbound", **extra: Any) -> dict[str, Any]:
    name = dict(params).get("Name") or dict(params).get("Identity") or "C"
    return {"Timestamp": when, "Connector": name, "ConnectorType": kind, "Operation": op,
            "ActionType": f"{op}-{kind}Connector", "Enabled": "", "AccountObjectId": "a1", "AccountId": "a1",
            "IPAddress": "198.51.100.7", "CountryCode": "FR", "City": "Paris", "Isp": "Orange", "ReportId": "r",
            "Parameters": [{"Name": k, "Value": v} for k, v in params], **extra}


def assessed(changes: list[dict[str, Any]], **kw: Any):
    args = {"known_domains": {"contoso.com"}, "known_ips": set(), "other_connectors": [], "broad_prefix_v4": 24,
            "broad_addresses": 256, **kw}
    return [assess(d, **args) for d in replay(changes)]


def test_registrable_domains_come_from_the_public_suffix_list() -> None:
    assert registrable_domain("mail.partner.co.uk") == "partner.co.uk"
    assert registrable_domain("mx2.bluepeak-logistics.de") == "bluepeak-logistics.de"
    assert registrable_domain("smtp.evil.xyz.") == "evil.xyz"
    assert registrable_domain("203.0.113.9") == "203.0.113.0/24"


def test_a_smart_host_moved_to_an_unrelated_domain_with_tls_dropped_is_two_acts() -> None:
    t = NOW - timedelta(days=3)
    diffs = assessed([
        change("New", t, ("Name", "To Partner"), ("SmartHosts", "mail.partner.co.uk"),
               ("TlsSettings", "DomainValidation")),
        change("Set", t + timedelta(days=1), ("Identity", "To Partner"), ("SmartHosts", "smtp.relay-x.top"),
               ("TlsSettings", "")),
    ])
    last = diffs[-1]
    assert {r["parameter"]: (r["before"], r["after"]) for r in last.as_rows()} == {
        "smarthosts": ("mail.partner.co.uk", "smtp.relay-x.top"), "tlssettings": ("DomainValidation", "")}
    assert {r["kind"] for r in last.risks} == {"smarthost_new_domain", "tls_dropped"}
    assert all(r["act"] for r in last.risks)


def test_a_smart_host_of_the_same_registrable_domain_is_no_risk() -> None:
    t = NOW - timedelta(days=3)
    diffs = assessed([
        change("New", t, ("Name", "To Partner"), ("SmartHosts", "mail.partner.co.uk")),
        change("Set", t + timedelta(days=1), ("Identity", "To Partner"), ("SmartHosts", "mx2.partner.co.uk")),
    ])
    assert diffs[-1].risks == []


def test_sender_addresses_are_judged_by_how_wide_the_addition_is() -> None:
    t = NOW - timedelta(days=1)
    narrow = assessed([change("Set", t, ("Identity", "P"), ("SenderIPAddresses", "192.0.2.0/24;198.51.100.16/28"))],
                      known_ips={"192.0.2.10"})
    assert [(r["kind"], r["addedAddresses"]) for r in narrow[0].risks] == [("sender_ips_widened", 16)]
    wide = assessed([change("Set", t, ("Identity", "P"), ("SenderIPAddresses", "192.0.2.0/24;100.64.0.0/16"),
                            ("RestrictDomainsToIPAddresses", "False"))], known_ips={"192.0.2.10"})
    assert {r["kind"] for r in wide[0].risks} == {"sender_ips_widened_broad", "restrict_domains_off"}


def test_a_rename_or_comment_alone_is_cosmetic() -> None:
    d = assessed([change("Set", NOW, ("Identity", "Old"), ("Name", "New"), ("Comment", "tidy"))])[0]
    assert d.cosmetic and d.risks == []


def test_a_name_that_imitates_another_connector_is_found_with_unicode_confusables() -> None:
    assert imitated("Оakridge Partner Inbound", ["Oakridge Partner Inbound", "Other"]) == "Oakridge Partner Inbound"
    assert imitated("Oakridge Partner Inbound (TLS)", ["Oakridge Partner Inbound"]) is None
    assert imitated("oakridge partner inbound", ["Oakridge Partner Inbound"]) is None  # the same name
    assert imitated("Cоntоsо Relay", ["Contoso Relay"]) == "Contoso Relay"  # Cyrillic o
    assert imitated("Contoso Re1ay", ["Contoso Relay"]) == "Contoso Relay"  # digit one for l
    assert imitated("Contoso Relays", ["Contoso Relay"]) is None


def test_identity_may_be_a_distinguished_name_and_a_rename_carries_the_history() -> None:
    assert resolve_identity("CN=Partner\\, Inc,CN=Transport Settings,DC=x", {}) == "Partner, Inc"
    assert resolve_identity("partner", {"partner": "Partner"}) == "partner"
    t = NOW - timedelta(days=1)
    changes = {"new": [change("Set", t, ("Identity", "Old"), ("Name", "New"))], "old": []}
    traffic = {"old": [{"Connector": "Old", "Hour": t}], "new": [{"Connector": "New", "Hour": NOW}]}
    renamed = _follow_renames(changes, {"old": "Old", "new": "New"}, [changes, traffic])
    assert renamed == {"new": [("Old", "New")]}
    assert "old" not in traffic and len(traffic["new"]) == 2


def _facts(changes: list[dict[str, Any]], **kw: Any) -> ConnectorFacts:
    baseline = ConnectorBaseline("C", NOW - timedelta(days=1), TrafficSummary(), None, "new")
    defaults: dict[str, Any] = {
        "connector": "C", "connector_type": "Outbound", "window_start": NOW - timedelta(days=1), "window_end": NOW,
        "changes": changes, "window_rows": [], "baseline": baseline, "recipients": {}, "sender_domains": {},
        "urls": None, "attachments": None, "alerts": [],
        "admins": {"a1": AdminProfile("a1", "adm@contoso.com", {"DE"}, {"dt"}, has_history=True)},
    }
    defaults.update(kw)
    return ConnectorFacts(**defaults)


def test_context_alone_never_makes_a_true_positive_and_unknown_says_what_would_decide() -> None:
    # A new connector from a new country by an admin compromised at the time: all context, no act.
    c = change("New", NOW - timedelta(hours=5), ("Name", "C"), ("SmartHosts", "mail.partner.com"))
    admin = AdminProfile("a1", "adm@contoso.com", {"DE"}, {"dt"}, has_history=True,
                         bursts=[{"Succeeded": True, "SuccessTime": NOW - timedelta(hours=6), "Failures": 150}])
    v = grade(_facts([c], admins={"a1": admin}), policy_from_mapping({}))
    assert v["scoreParts"]["raised"] >= 50 and v["scoreParts"]["maliciousActs"] == 0
    assert v["classification"] == "unknown" and v["score"] == 45
    assert "context only" in v["reasonIfUnknown"] and "what would decide" in v["reasonIfUnknown"]
    assert v["decisiveAct"] is None


def test_a_dangerous_change_leads_a_true_positive_as_its_decisive_act() -> None:
    t = NOW - timedelta(days=3)
    changes = [
        change("New", t, ("Name", "C"), ("SmartHosts", "mail.partner.co.uk"), ("TlsSettings", "DomainValidation")),
        change("Set", NOW - timedelta(hours=3), ("Identity", "C"), ("SmartHosts", "smtp.relay-x.top"),
               ("TlsSettings", "")),
    ]
    admin = AdminProfile("a1", "adm@contoso.com", {"FR"}, {"orange"}, has_history=True)
    v = grade(_facts(changes[1:], history_changes=changes, admins={"a1": admin}), policy_from_mapping({}))
    assert v["classification"] == "truePositive" and v["determination"] == "maliciousUserActivity"
    assert v["findings"][0]["kind"] == "maliciousAct" and v["findings"][0]["rule"] == "smarthost_new_domain"
    assert v["decisiveAct"] == v["findings"][0]
    assert v["evidence"]["configurationDiff"][0]["changes"]


def test_the_policy_keeps_context_below_the_true_positive_threshold() -> None:
    with pytest.raises(PolicyError, match="context_only_max_score"):
        policy_from_mapping({"context_only_max_score": 60})
    with pytest.raises(PolicyError, match=r"benign_weights\.nope"):
        policy_from_mapping({"benign_weights": {"nope": 1}})
    assert policy_from_mapping({"benign_weights": {"travel_with_strong_authentication": 10}}).weight(
        "travel_with_strong_authentication") == 10


def test_a_change_from_a_hosting_provider_or_without_a_sign_in_is_context_not_an_act() -> None:
    c = change("New", NOW - timedelta(hours=5), ("Name", "C"))
    c.update(CountryCode="NL", Isp="DigitalOcean, LLC")
    admin = AdminProfile("a1", "adm@contoso.com", {"FR"}, {"orange"}, has_history=True)
    v = grade(_facts([c], admins={"a1": admin}), policy_from_mapping({}))
    rules = {f["rule"]: f["kind"] for f in v["findings"]}
    assert rules["change_from_hosting_provider"] == "context" and rules["change_without_sign_in"] == "context"
    assert v["classification"] == "unknown" and v["decisiveAct"] is None
    # A residential ISP is not a datacentre; a sign-in there before the change is not a replayed token.
    c.update(Isp="Vodafone NL")
    admin.new_logon_locations = [{"Location": "NL", "Isp": "Vodafone NL",
                                  "FirstSuccessInLookback": NOW - timedelta(hours=6)}]
    rules = {f["rule"] for f in grade(_facts([c], admins={"a1": admin}), policy_from_mapping({}))["findings"]}
    assert "change_from_hosting_provider" not in rules and "change_without_sign_in" not in rules
