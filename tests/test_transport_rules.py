"""Transport rules around a connector at the unit level: how a rule is linked, what counts and what does not
(``docs/checks.md``: ``transport_rule_same_actor``, ``transport_rule_linked``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from grading.grader import grade
from grading.grader.transport_rules import BYPASS, HEADERS, REDIRECT, ROUTE, link, rules_of
from grading.policy import policy_from_mapping
from tests.test_grader_rules import NOW, _facts, change


def rule_event(op: str, when, *params: tuple[str, str], who: str = "a1") -> dict[str, Any]:
    name = dict(params).get("Name") or dict(params).get("Identity") or "R"
    return {"Timestamp": when, "Rule": name, "Operation": op, "ActionType": f"{op}-TransportRule",
            "Parameters": [{"Name": k, "Value": v} for k, v in params], "AccountObjectId": who, "AccountId": who,
            "AccountDisplayName": "", "IPAddress": "198.51.100.7", "CountryCode": "FR", "City": "Paris",
            "Isp": "Orange", "ReportId": "r"}


def test_a_rule_is_linked_by_name_by_sender_ranges_or_by_domains_and_says_what_it_does() -> None:
    t = NOW - timedelta(hours=3)
    [named, ranged, scoped] = rules_of([
        rule_event("New", t, ("Name", "A"), ("RouteMessageOutboundConnector", "Out 1"), ("BlindCopyTo", "x@y.z")),
        rule_event("New", t, ("Name", "B"), ("SenderIpRanges", "203.0.113.0/24"), ("SetSCL", "-1"),
                   ("RemoveHeader", "X-Foo")),
        rule_event("New", t, ("Name", "C"), ("SenderDomainIs", "partner.com"), ("ApplyHtmlDisclaimerText", "hi")),
    ])
    assert link(named, ["out 1"], [], set()) == "named" and named.actions() == [ROUTE, REDIRECT]
    assert link(ranged, ["X"], ["203.0.113.40"], set()) == "senderIpRanges"
    assert link(ranged, ["X"], ["192.0.2.0/24"], set()) is None
    assert ranged.actions() == [BYPASS, HEADERS]
    assert link(scoped, ["X"], [], {"partner.com"}) == "domains" and scoped.actions() == []
    assert link(scoped, ["C"], [], set()) is None  # a rule called like a connector is not pointed at it


def _connector_with(rules: list[dict[str, Any]], connector_changed_by: str = "a1"):
    created = change("New", NOW - timedelta(hours=5), ("Name", "C"), ("SenderIPAddresses", "203.0.113.0/28"),
                     kind="Inbound", AccountObjectId=connector_changed_by)
    return _facts([created], connector="C", connector_type="Inbound", transport_rules=rules_of(rules),
                  change_start=NOW - timedelta(days=7))


def test_same_actor_is_an_act_another_actor_is_context_and_disabled_or_old_rules_do_not_count() -> None:
    policy = policy_from_mapping({})
    unfilter = ("Name", "R"), ("SenderIpRanges", "203.0.113.0/28"), ("SetSCL", "-1")
    v = grade(_connector_with([rule_event("New", NOW - timedelta(hours=4), *unfilter)]), policy)
    assert v["decisiveAct"]["rule"] == "transport_rule_same_actor" and v["classification"] == "truePositive"
    assert v["evidence"]["transportRules"][0]["changes"][0]["from"].startswith("198.51.100.7")

    v = grade(_connector_with([rule_event("New", NOW - timedelta(hours=4), *unfilter, who="b2")]), policy)
    assert [f["kind"] for f in v["findings"] if f["rule"].startswith("transport")] == ["context"]
    assert v["classification"] != "truePositive"

    disabled = [rule_event("New", NOW - timedelta(hours=4), *unfilter),
                rule_event("Disable", NOW - timedelta(hours=1), ("Identity", "R"))]
    old = [rule_event("New", NOW - timedelta(days=10), *unfilter)]
    for rules in (disabled, old):
        v = grade(_connector_with(rules), policy)
        assert not any(f["rule"].startswith("transport") for f in v["findings"])
        assert v["evidence"]["transportRules"]  # still listed in the evidence
