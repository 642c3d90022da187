"""Transport rules in remediation, against Azurite and the stateful Exchange fake: the inventory reads
Get-TransportRule, a true positive's linked rule is disabled (report mode by default; the protected list, the
hourly cap and the audit apply as to connector actions) and ``reenable --transport-rule`` undoes it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient
from fakes.tenant import FakeTenant
from remediation_support import (
    Rig,
    deliver,
    enqueue,
    exchange_client,
    fake_tenant,
    make_rig,
    message,
    queue_for,
    settings,
)

from grading.incident import DISABLE_TRANSPORT_RULE, default_actions, evidence_summary


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


@pytest.fixture
def rig(fake: FakeTenant, storage_connection_string: str, unique_name: str) -> Rig:
    fake.exchange.add("Inbound", "Partner relay", addresses=["203.0.113.0/28"])
    fake.exchange.add_rule("Allow partner bridge", SenderIpRanges=["203.0.113.0/28"], SetSCL=-1)
    fake.exchange.add_rule("Partner disclaimer", SenderDomainIs=["partner.example"], enabled=False)
    return make_rig(fake, storage_connection_string, unique_name)


@pytest.fixture
def queues(storage_connection_string: str, unique_name: str) -> tuple[QueueClient, QueueClient]:
    return (queue_for(storage_connection_string, f"{unique_name}-remediation"),
            queue_for(storage_connection_string, f"{unique_name}-remediation-poison"))


VERDICT: dict[str, Any] = {
    "evidence": {"changes": [{"operation": "New"}]},
    "findings": [{"rule": "transport_rule_same_actor", "check": "configuration", "severity": "high",
                  "summary": "Transport rule ...", "evidence": {"rule": "Allow partner bridge"}},
                 {"rule": "transport_rule_linked", "evidence": {"rule": "Someone else's rule"}}],
}


def _rule_message() -> Any:
    return message("Partner relay", actions=(DISABLE_TRANSPORT_RULE,), summary=evidence_summary(VERDICT))


def test_a_true_positive_asks_to_disable_only_the_rules_of_its_malicious_act() -> None:
    assert DISABLE_TRANSPORT_RULE in default_actions(VERDICT, ())
    assert evidence_summary(VERDICT)["transportRules"] == ["Allow partner bridge"]
    assert DISABLE_TRANSPORT_RULE not in default_actions({"findings": []}, ())


def test_the_inventory_reads_transport_rules(rig: Rig) -> None:
    runner = rig.runner()
    runner.inventory.refresh(exchange_client(rig.fake), now=rig.clock())
    rules = {r["name"]: r for r in runner.inventory.transport_rules()}
    assert set(rules) == {"Allow partner bridge", "Partner disclaimer"}
    assert rules["Allow partner bridge"]["enabled"] and not rules["Partner disclaimer"]["enabled"]
    assert rules["Allow partner bridge"]["rule"]["SetSCL"] == -1
    assert [r.name for r in runner.inventory.records()] == ["Partner relay"]  # rules are not connectors


def test_report_mode_only_says_what_it_would_do(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(_rule_message()))
    deliver(queue, poison, rig.runner(settings(mode="report")).handle)
    assert rig.fake.exchange.rules["allow partner bridge"]["State"] == "Enabled"
    assert ("disableTransportRule", "wouldPerform") in [(r.action, r.outcome)
                                                        for r in rig.runner().audit.for_incident("inc-1")]


def test_enforce_disables_the_linked_rule_and_reenable_undoes_it(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    # A forged copy naming another rule is refused (the ledger's copy decides).
    sent = rig.record(_rule_message())
    forged = replace(sent, evidence_summary={**sent.evidence_summary, "transportRules": ["Partner disclaimer"]})
    enqueue(queue, forged)
    enqueue(queue, sent)
    deliver(queue, poison, rig.runner(settings(max_disables_per_hour=5)).handle)
    deliver(queue, poison, rig.runner(settings(max_disables_per_hour=5)).handle)

    assert rig.fake.exchange.rules["allow partner bridge"]["State"] == "Disabled"
    outcomes = [(r.action, r.outcome) for r in rig.runner().audit.for_incident("inc-1")]
    assert ("message", "refused") in outcomes and ("disableTransportRule", "performed") in outcomes
    assert ("Disable-TransportRule", {"Identity": "Allow partner bridge", "Confirm": False}) in \
        rig.fake.exchange.mutations()

    line = rig.runner(settings(max_disables_per_hour=5)).reenable_rule("Allow partner bridge", by="soc-lead")
    assert line.outcome == "reenabled"
    assert rig.fake.exchange.rules["allow partner bridge"]["State"] == "Enabled"


def test_the_protected_list_and_the_cap_hold_for_rules_too(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(_rule_message()))
    deliver(queue, poison, rig.runner(settings(protected_connectors=("partner RELAY",))).handle)
    assert rig.fake.exchange.rules["allow partner bridge"]["State"] == "Enabled"
    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert "REMEDIATION_PROTECTED_CONNECTORS" in records[("disableTransportRule", "refused")]

    enqueue(queue, rig.record(replace(_rule_message(), incident_key="inc-2")))
    deliver(queue, poison, rig.runner(settings(max_disables_per_hour=0)).handle)
    assert rig.fake.exchange.rules["allow partner bridge"]["State"] == "Enabled"
    assert ("disableTransportRule", "held") in [(r.action, r.outcome)
                                                for r in rig.runner().audit.for_incident("inc-2")]
