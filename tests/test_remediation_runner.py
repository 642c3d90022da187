"""The remediation runner end to end: Azurite (queue with the host's base64 encoding, audit, ledger
and pending tables) and the loopback HTTPS fakes of Exchange Online, Graph and the webhook."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient
from fakes.tenant import FakeTenant
from remediation_support import (
    ADMIN_ID,
    ADMIN_UPN,
    OTHER_ID,
    OTHER_UPN,
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

from grading.incident import Admin, MessageError
from grading.remediation.audit import INVALID_MESSAGE
from grading.remediation.pending import DecisionError
from grading.remediation.runner import RemediationRetry


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


@pytest.fixture
def rig(fake: FakeTenant, storage_connection_string: str, unique_name: str) -> Rig:
    fake.exchange.add("Inbound", "Partner relay", addresses=["203.0.113.7"])
    fake.exchange.add("Inbound", "Payroll relay", addresses=["198.51.100.4"])
    fake.graph.add_user(ADMIN_ID, ADMIN_UPN)
    fake.graph.add_user(OTHER_ID, OTHER_UPN)
    return make_rig(fake, storage_connection_string, unique_name)


@pytest.fixture
def queues(storage_connection_string: str, unique_name: str) -> tuple[QueueClient, QueueClient]:
    return (
        queue_for(storage_connection_string, f"{unique_name}-remediation"),
        queue_for(storage_connection_string, f"{unique_name}-remediation-poison"),
    )


def outcomes(rig: Rig, incident: str = "inc-1") -> list[tuple[str, str]]:
    runner = rig.runner()
    return [(r.action, r.outcome) for r in runner.audit.for_incident(incident)]


def enabled(fake: FakeTenant, name: str) -> bool:
    item = fake.exchange.connector("Inbound", name)
    assert item is not None
    return bool(item["Enabled"])


def service_requests(fake: FakeTenant) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.server.received if not r.path.startswith("/webhookb2/")]


def test_report_mode_touches_nothing_but_says_what_it_would_do(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message()))

    delivery = deliver(queue, poison, rig.runner(settings(mode="report")).handle)

    assert delivery.error is None
    assert service_requests(rig.fake) == []  # not even a read
    assert enabled(rig.fake, "Partner relay") and rig.sweeps == []
    assert sorted(outcomes(rig)) == [
        ("disableConnector", "wouldPerform"),
        ("resweep", "wouldPerform"),
        ("revokeAdminSessions", "wouldPerform"),
    ]
    [text] = rig.fake.webhook.texts()
    assert "Mode: report (nothing was changed)" in text and "`Partner relay`" in text


def test_enforce_disables_the_right_connector_and_revokes_the_right_admin(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message()))

    delivery = deliver(queue, poison, rig.runner().handle)

    assert delivery.error is None
    assert not enabled(rig.fake, "Partner relay")
    assert enabled(rig.fake, "Payroll relay")
    assert rig.fake.exchange.mutations() == [("Set-InboundConnector", {"Identity": "Partner relay", "Enabled": False})]
    assert rig.fake.graph.revocations() == [f"/v1.0/users/{ADMIN_ID}/revokeSignInSessions"]  # not the other admin
    assert rig.fake.graph.users[OTHER_ID]["signInSessionsValidFromDateTime"] == "2024-01-01T00:00:00Z"
    assert rig.sweeps == ["inc-1"]
    assert sorted(outcomes(rig)) == [
        ("disableConnector", "performed"),
        ("resweep", "performed"),
        ("revokeAdminSessions", "performed"),
    ]
    [text] = rig.fake.webhook.texts()
    assert "performed: disableConnector" in text and ADMIN_UPN in text


def test_a_redelivered_message_acts_once(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message()))

    first = deliver(queue, poison, rig.runner().handle, delete_on_success=False)  # the host could not delete it
    second = deliver(queue, poison, rig.runner().handle)

    assert first.error is None and second.error is None
    assert second.message.dequeue_count == 2
    assert len(rig.fake.exchange.mutations()) == 1
    assert len(rig.fake.graph.revocations()) == 1
    assert rig.sweeps == ["inc-1"]
    assert ("disableConnector", "alreadyDone") in outcomes(rig)
    assert len(rig.fake.webhook.posts) == 1  # nothing new to say the second time
    assert queue.peek_messages() == []


@pytest.mark.parametrize("crashing", ["disableConnector", "revokeAdminSessions"])
def test_a_crash_between_action_and_audit_is_recovered_without_acting_twice(
    rig: Rig, queues: Any, crashing: str
) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message()))
    crashed = rig.runner()
    real_record = crashed.audit.action

    def die_after_acting(action: Any, outcome: str, *args: Any, **kwargs: Any) -> Any:
        if action.action == crashing and outcome == "performed":
            raise SystemError("the worker died here")
        return real_record(action, outcome, *args, **kwargs)

    crashed.audit.action = die_after_acting  # type: ignore[method-assign]

    first = deliver(queue, poison, crashed.handle)
    second = deliver(queue, poison, rig.runner().handle)

    assert isinstance(first.error, SystemError) and second.error is None
    assert len(rig.fake.exchange.mutations()) == 1
    assert len(rig.fake.graph.revocations()) == 1
    assert not enabled(rig.fake, "Partner relay")
    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert "interrupted attempt" in records[(crashing, "performed")]
    assert queue.peek_messages() == [] and poison.peek_messages() == []


def test_a_retried_revoke_without_user_read_all_is_issued_again_not_poisoned(rig: Rig, queues: Any) -> None:
    """Revoking needs only User.RevokeSessions.All; reading signInSessionsValidFromDateTime back
    needs User.Read.All, which a deployment without the tier-0 options lacks. On a retried message
    that read-back answers 403: the runner cannot tell, and re-issues the (idempotent) revoke."""
    queue, poison = queues
    enqueue(queue, rig.record(message(actions=("revokeAdminSessions",))))
    crashed = rig.runner()
    real_record = crashed.audit.action

    def die_after_revoking(action: Any, outcome: str, *args: Any, **kwargs: Any) -> Any:
        if action.action == "revokeAdminSessions" and outcome == "performed":
            raise SystemError("the worker died here")
        return real_record(action, outcome, *args, **kwargs)

    crashed.audit.action = die_after_revoking  # type: ignore[method-assign]
    first = deliver(queue, poison, crashed.handle)
    denied = {"error": {"code": "Authorization_RequestDenied",
                        "message": "Insufficient privileges to complete the operation."}}
    rig.fake.server.fail("GET", f"/v1.0/users/{ADMIN_ID}", 403, denied, times=10)
    second = deliver(queue, poison, rig.runner().handle)

    assert isinstance(first.error, SystemError) and second.error is None
    reads = [r for r in rig.fake.server.received if r.method == "GET" and r.path == f"/v1.0/users/{ADMIN_ID}"]
    assert reads, "the retry must have tried the read-back"
    assert rig.fake.graph.revocations() == [f"/v1.0/users/{ADMIN_ID}/revokeSignInSessions"] * 2
    records = [(r.action, r.outcome) for r in rig.runner().audit.for_incident("inc-1")]
    assert records.count(("revokeAdminSessions", "performed")) == 1
    assert ("revokeAdminSessions", "failed") not in records
    assert queue.peek_messages() == [] and poison.peek_messages() == []


def test_a_protected_connector_is_never_touched(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message()))

    deliver(queue, poison, rig.runner(settings(protected_connectors=("PARTNER relay",))).handle)

    assert [r for r in service_requests(rig.fake) if "/adminapi/" in r] == []
    assert enabled(rig.fake, "Partner relay")
    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert "REMEDIATION_PROTECTED_CONNECTORS" in records[("disableConnector", "refused")]
    assert ("revokeAdminSessions", "performed") in records  # the admin is still dealt with


def test_the_hourly_cap_holds_the_rest_and_approve_releases(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    capped = settings(max_disables_per_hour=1)
    enqueue(queue, rig.record(message("Partner relay", incident="inc-1", actions=("disableConnector",))))
    enqueue(queue, rig.record(message("Payroll relay", incident="inc-2", actions=("disableConnector",))))

    deliver(queue, poison, rig.runner(capped).handle)
    deliver(queue, poison, rig.runner(capped).handle)

    assert not enabled(rig.fake, "Partner relay")
    assert enabled(rig.fake, "Payroll relay")
    runner = rig.runner(capped)
    [held] = runner.pending.waiting()
    assert held.action.connector == "Payroll relay"
    assert queue.peek_messages() == []  # held in the table, not on the queue
    assert "held: disableConnector" in rig.fake.webhook.texts()[1]
    assert held.action.action_id in rig.fake.webhook.texts()[1]

    line = runner.approve(held.action.action_id, by="alice@contoso.com")

    assert line.outcome == "performed" and "approved by alice@contoso.com" in line.detail
    assert not enabled(rig.fake, "Payroll relay")
    assert runner.pending.get(held.action.action_id).status == "done"  # type: ignore[union-attr]
    assert [o for _, o in outcomes(rig, "inc-2")] == ["held", "approved", "performed"]
    with pytest.raises(DecisionError, match="already"):
        runner.approve(held.action.action_id, by="mallory@contoso.com")
    assert len(rig.fake.exchange.mutations()) == 2


def test_a_denied_action_is_never_performed(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    none_allowed = settings(max_disables_per_hour=0)
    enqueue(queue, rig.record(message(actions=("disableConnector",))))
    deliver(queue, poison, rig.runner(none_allowed).handle, delete_on_success=False)
    runner = rig.runner(none_allowed)
    [held] = runner.pending.waiting()

    runner.deny(held.action.action_id, by="alice@contoso.com", reason="partner confirmed the change")
    deliver(queue, poison, rig.runner(none_allowed).handle)  # the same message again

    assert enabled(rig.fake, "Partner relay") and rig.fake.exchange.mutations() == []
    assert [o for _, o in outcomes(rig)][-2:] == ["denied", "refused"]


def test_429_then_success_is_retried_and_acts_once(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    rig.fake.server.fail(
        "POST",
        "/InvokeCommand",
        429,
        {"error": {"code": "TooManyRequests", "message": "busy"}},
        headers={"Retry-After": "2"},
        body_part="Set-InboundConnector",
    )
    enqueue(queue, rig.record(message(actions=("disableConnector",))))

    delivery = deliver(queue, poison, rig.runner().handle)

    assert delivery.error is None
    assert rig.sleeps.waits == [2.0]
    assert not enabled(rig.fake, "Partner relay")
    assert len(rig.fake.exchange.mutations()) == 1
    assert outcomes(rig) == [("disableConnector", "performed")]


def test_throttling_past_the_retries_fails_the_try_and_the_next_try_finishes(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    rig.fake.server.fail(
        "POST",
        "/InvokeCommand",
        429,
        {"error": {"code": "TooManyRequests", "message": "busy"}},
        headers={"Retry-After": "1"},
        times=4,
        body_part="Set-InboundConnector",
    )
    enqueue(queue, rig.record(message(actions=("disableConnector", "revokeAdminSessions"))))

    first = deliver(queue, poison, rig.runner().handle)
    assert isinstance(first.error, RemediationRetry) and "throttling" in str(first.error)
    assert enabled(rig.fake, "Partner relay")
    assert len(rig.fake.graph.revocations()) == 1  # the other action still ran

    second = deliver(queue, poison, rig.runner().handle)

    assert second.error is None
    assert not enabled(rig.fake, "Partner relay") and len(rig.fake.graph.revocations()) == 1
    assert [o for a, o in outcomes(rig) if a == "disableConnector"].count("failed") == 1
    assert ("revokeAdminSessions", "alreadyDone") in outcomes(rig)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("this is not json", "neither a JSON object nor base64"),
        ('{"schemaVersion": 2}', "unknown schemaVersion 2"),
    ],
)
def test_a_malformed_message_is_recorded_on_each_try_then_poisoned(
    rig: Rig, queues: Any, body: str, reason: str
) -> None:
    queue, poison = queues
    enqueue(queue, body)
    runner = rig.runner()

    deliveries = [deliver(queue, poison, runner.handle) for _ in range(5)]

    assert all(isinstance(d.error, MessageError) for d in deliveries)
    records = runner.audit.invalid_messages()
    assert [r["dequeueCount"] for r in records] == [1, 2, 3, 4, 5]
    assert all(reason in r["detail"] and r["outcome"] == INVALID_MESSAGE for r in records)
    assert records[-1]["next"] == "moved to the poison queue by the host"
    assert queue.peek_messages() == []
    [poisoned] = poison.peek_messages()
    assert poisoned.content == body
    assert service_requests(rig.fake) == []
    texts = rig.fake.webhook.texts()
    assert len(texts) == 2 and "poison queue" in texts[1]


def test_reenable_rolls_a_disable_back_and_the_incident_is_not_disabled_again(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message(actions=("disableConnector",))))
    deliver(queue, poison, rig.runner().handle, delete_on_success=False)
    assert not enabled(rig.fake, "Partner relay")

    line = rig.runner().reenable("Partner relay", by="bob@contoso.com")
    deliver(queue, poison, rig.runner().handle)

    assert line.outcome == "reenabled"
    assert enabled(rig.fake, "Partner relay")
    assert outcomes(rig)[-2:] == [("disableConnector", "reenabled"), ("message", "refused")]
    with pytest.raises(DecisionError, match="no disable"):
        rig.runner().reenable("Payroll relay", by="bob@contoso.com")


def test_opt_in_actions_are_refused_until_opted_in(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message(actions=("disableConnector", "disableAdminAccount", "removeConnector"))))

    deliver(queue, poison, rig.runner().handle)

    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert "REMEDIATION_DISABLE_ACCOUNT=true" in records[("disableAdminAccount", "refused")]
    assert "REMEDIATION_ALLOW_REMOVE=true" in records[("removeConnector", "refused")]
    assert rig.fake.graph.users[ADMIN_ID]["accountEnabled"] is True
    assert rig.fake.exchange.connector("Inbound", "Partner relay") is not None


def test_opted_in_account_actions_and_alert_write_back(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    rig.fake.graph.add_alert("da638000000000000000_1")
    everything = settings(disable_account=True, require_password_change=True, alert_writeback=True)
    enqueue(
        queue,
        rig.record(
            message(
                actions=("disableAdminAccount", "requireAdminPasswordChange", "updateAlerts"),
                alert_ids=("da638000000000000000_1",),
            )
        ),
    )

    deliver(queue, poison, rig.runner(everything).handle, delete_on_success=False)
    deliver(queue, poison, rig.runner(everything).handle)

    admin = rig.fake.graph.users[ADMIN_ID]
    assert admin["accountEnabled"] is False and admin["passwordProfile"]["forceChangePasswordNextSignIn"] is True
    assert rig.fake.graph.users[OTHER_ID]["accountEnabled"] is True
    alert = rig.fake.graph.alerts["da638000000000000000_1"]
    assert (alert["classification"], alert["determination"]) == ("truePositive", "compromisedAccount")
    [comment] = alert["comments"]
    assert "Partner relay" in comment["comment"] and "9,120 messages" in comment["comment"]


def test_revert_restores_the_inventory_s_addresses_never_the_message_s(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    rig.fake.exchange.add("Outbound", "To partner", addresses=["mail.partner.example"])
    exchange = exchange_client(rig.fake)
    rig.runner().inventory.refresh(exchange, now=rig.clock())
    item = rig.fake.exchange.connector("Outbound", "To partner")
    assert item is not None  # the attacker changes the smart host; the daily refresh sees it
    item["SmartHosts"], item["WhenChangedUTC"] = ["evil-relay.example.net"], "2030-01-01T00:00:00Z"
    rig.runner().inventory.refresh(exchange, now=rig.clock())
    sent = rig.record(
        message("To partner", connector_type="Unknown", actions=("revertConnectorChange",),
                summary={"lastModified": "2030-01-01T00:00:05Z"})
    )
    # A forged copy of the same incident chooses the addresses to "restore": refused outright.
    forged = replace(sent, evidence_summary={**sent.evidence_summary,
                                             "previousConfiguration": {"SmartHosts": ["attacker.example"]}})
    enqueue(queue, forged)
    enqueue(queue, sent)

    first = deliver(queue, poison, rig.runner(settings(allow_revert=True)).handle)
    assert first.error is None and item["SmartHosts"] == ["evil-relay.example.net"]
    deliver(queue, poison, rig.runner(settings(allow_revert=True)).handle)

    assert item["SmartHosts"] == ["mail.partner.example"]
    assert outcomes(rig) == [("message", "refused"), ("revertConnectorChange", "performed")]
    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert "disagrees with the incident ledger on evidenceSummary" in records[("message", "refused")]
    assert "inventory snapshot" in records[("revertConnectorChange", "performed")]
    assert queue.peek_messages() == [] and poison.peek_messages() == []


def test_an_unknown_connector_fails_with_a_clear_reason_and_is_not_retried(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message("Renamed since", actions=("disableConnector",))))

    delivery = deliver(queue, poison, rig.runner().handle)

    assert delivery.error is None  # retrying cannot help: recorded and notified instead
    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert (
        "no such connector" in records[("disableConnector", "failed")]
        or "no connector named" in records[("disableConnector", "failed")]
    )
    assert "failed: disableConnector" in rig.fake.webhook.texts()[0]


def test_attacker_controlled_connector_names_stay_data(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    name = "x' or 1 eq 1 #/?\\\n<!channel>"
    rig.fake.exchange.add("Inbound", name)
    enqueue(queue, rig.record(message(name, actions=("disableConnector",), admins=(Admin(ADMIN_ID, ADMIN_UPN, ()),))))

    deliver(queue, poison, rig.runner().handle)

    assert not enabled(rig.fake, name)
    assert enabled(rig.fake, "Partner relay")
    [text] = rig.fake.webhook.texts()
    assert "<!channel>" not in text and "\n<" not in text

    rig.runner().reenable(name, by="bob@contoso.com")  # found again through a parameterised table query

    assert enabled(rig.fake, name)


def test_an_opted_in_removal_disables_first_then_removes_and_keeps_the_settings(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    enqueue(queue, rig.record(message(actions=("disableConnector", "removeConnector", "revertConnectorChange"))))

    deliver(queue, poison, rig.runner(settings(allow_remove=True, allow_revert=True)).handle)

    assert rig.fake.exchange.connector("Inbound", "Partner relay") is None
    assert [c for c, _ in rig.fake.exchange.mutations()] == ["Set-InboundConnector", "Remove-InboundConnector"]
    records = {(r.action, r.outcome): r.detail for r in rig.runner().audit.for_incident("inc-1")}
    assert records[("revertConnectorChange", "refused")] == "the connector is removed instead"
    assert rig.runner().cap.used(rig.clock.moment) == 1  # one connector taken out: one slot of the cap
    ledger = rig.runner().ledger
    [entry] = [e for e in ledger.find("enforce", action="removeConnector", connector="Partner relay")]
    assert entry.facts["removed"]["SenderIPAddresses"] == ["203.0.113.7"]


def test_a_held_action_is_not_approved_once_the_incident_was_graded_benign(rig: Rig, queues: Any) -> None:
    queue, poison = queues
    none_allowed = settings(max_disables_per_hour=0)
    enqueue(queue, rig.record(message(actions=("disableConnector",))))
    deliver(queue, poison, rig.runner(none_allowed).handle)
    runner = rig.runner(none_allowed)
    [held] = runner.pending.waiting()
    rig.record(message(actions=("disableConnector",)), classification="falsePositive")  # a later sweep

    with pytest.raises(DecisionError, match="stale: 'Partner relay' was graded falsePositive since"):
        runner.approve(held.action.action_id, by="alice@contoso.com")

    assert enabled(rig.fake, "Partner relay") and rig.fake.exchange.mutations() == []
    assert [h.action.action_id for h in runner.pending.waiting()] == [held.action.action_id]  # deny it
