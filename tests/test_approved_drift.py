"""Approved configurations in the grader: drift weighed by the risk of what drifted, an approved change is a
benign explanation, and no approval grades as before (``docs/checks.md``: ``approved_drift``,
``approved_configuration``)."""

from __future__ import annotations

from datetime import timedelta

from grading.grader import grade
from grading.grader.baselines import AdminProfile
from grading.grader.configuration import configuration_values, current_configuration, drift
from grading.policy import policy_from_mapping
from tests.test_grader_rules import NOW, _facts, change

APPROVED = configuration_values({
    "Name": "Partner relay", "Enabled": True, "ConnectorType": "Partner",
    "SenderIPAddresses": ["203.0.113.0/28"], "RestrictDomainsToIPAddresses": True, "RequireTls": True,
    "TlsSenderCertificateName": "mail.partner.com", "Comment": "set up 2024",
})


def _approval(at, configuration=None, **extra):
    return {"configuration": dict(configuration or APPROVED), "approvedAt": at, "approvedBy": "soc@contoso.com",
            "reason": "reviewed", **extra}


def test_drift_lists_each_property_and_ignores_what_the_approval_did_not_record() -> None:
    current = dict(APPROVED, senderipaddresses="203.0.113.0/28;45.77.0.0/16", comment="x", smarthosts="a.b")
    d = drift(APPROVED, current)
    assert [r["parameter"] for r in d.as_rows()] == ["senderipaddresses"]
    assert d.as_rows()[0]["before"] == "203.0.113.0/28"
    assert current_configuration(APPROVED, NOW, [change("Set", NOW - timedelta(hours=1), ("RequireTls", "False"))]) \
        == APPROVED  # a change before the base time is already in it


def test_an_approved_connector_drifted_to_a_hosting_range_is_a_true_positive() -> None:
    when = NOW - timedelta(hours=4)
    widened = change("Set", when, ("Identity", "Partner relay"), ("SenderIPAddresses", "45.77.0.0/16"),
                     kind="Inbound")
    # The audit record alone (no earlier history) reads the widening as a change of unknown "before";
    # the approval knows it was a /28.
    v = grade(_facts([widened], connector="Partner relay", connector_type="Inbound",
                     approved=_approval(NOW - timedelta(days=30))), policy_from_mapping({}))
    drifted = [f for f in v["findings"] if f["rule"] == "approved_drift"]
    assert drifted and drifted[0]["evidence"]["drift"][0]["before"] == "203.0.113.0/28"
    assert v["classification"] == "truePositive", v


def test_drift_seen_only_in_the_inventory_is_weighed_by_what_drifted() -> None:
    inventory = dict(APPROVED, senderipaddresses="203.0.113.0/28;45.77.0.0/16", restrictdomainstoipaddresses="False")
    v = grade(_facts([], history_changes=[], connector="Partner relay", connector_type="Inbound",
                     approved=_approval(NOW - timedelta(days=30)),
                     inventory={"configuration": inventory, "refreshedAt": NOW - timedelta(hours=2)}),
              policy_from_mapping({}))
    (f,) = [f for f in v["findings"] if f["rule"] == "approved_drift"]
    assert f["kind"] == "maliciousAct" and f["weight"] == 30 + 20
    assert sorted(f["evidence"]["risks"]) == ["restrict_domains_off", "sender_ips_widened_broad"]


def test_a_change_approved_after_a_planned_migration_is_benign() -> None:
    moved = change("Set", NOW - timedelta(hours=6), ("Identity", "Partner relay"),
                   ("SenderIPAddresses", "198.18.0.0/20"), ("RequireTls", "False"), kind="Inbound")
    after = current_configuration(APPROVED, None, [moved])
    admin = AdminProfile("a1", "adm@contoso.com", {"FR"}, {"orange"}, has_history=True)
    v = grade(_facts([moved], connector="Partner relay", connector_type="Inbound", admins={"a1": admin},
                     approved=_approval(NOW - timedelta(hours=2), after, reason="migration to the new DC")),
              policy_from_mapping({}))
    assert v["classification"] in ("informationalExpectedActivity", "falsePositive"), v
    assert not [f for f in v["findings"] if f["kind"] == "maliciousAct"]
    assert any(f["rule"] == "approved_configuration" and f["kind"] == "benign" for f in v["findings"])


def test_without_an_approval_the_same_change_grades_as_before() -> None:
    moved = change("Set", NOW - timedelta(hours=6), ("Identity", "Partner relay"),
                   ("SenderIPAddresses", "198.18.0.0/20"), ("RequireTls", "False"), kind="Inbound")
    admin = AdminProfile("a1", "adm@contoso.com", {"FR"}, {"orange"}, has_history=True)
    v = grade(_facts([moved], connector="Partner relay", connector_type="Inbound", admins={"a1": admin}),
              policy_from_mapping({}))
    assert not [f for f in v["findings"] if f["rule"].startswith("approved")]
    assert v["classification"] == "truePositive"


def test_the_report_shows_approved_to_current_for_a_drifted_connector() -> None:
    from grading.report.evidence import evidence_html

    inventory = dict(APPROVED, senderipaddresses="203.0.113.0/28;45.77.0.0/16")
    v = grade(_facts([], history_changes=[], connector="Partner relay", connector_type="Inbound",
                     approved=_approval(NOW - timedelta(days=30), reason="<b>CAB</b>"),
                     inventory={"configuration": inventory, "refreshedAt": NOW - timedelta(hours=2)}),
              policy_from_mapping({}))
    html = str(evidence_html(v))
    assert "Approved configuration (by soc@contoso.com" in html and "-&gt; current" in html
    assert "203.0.113.0/28;45.77.0.0/16" in html and "&lt;b&gt;CAB&lt;/b&gt;" in html and "<b>CAB" not in html
