"""The queue message is a pointer, not an authority: messages no sweep produced, stale ones, ones an
operator's re-enable overtook, protected connectors behind an ``Unknown`` type, hostile bodies and
secrets in errors, each through ``python -m grading remediate --once --json`` with the deployed
settings, the real runner, Azurite and the loopback fakes of Exchange Online, Graph and the webhook."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fakes.tenant import FakeTenant
from remediation_support import (
    ADMIN_ID,
    ADMIN_UPN,
    OTHER_ID,
    OTHER_UPN,
    app_environment,
    enqueue,
    fake_tenant,
    message,
    queue_for,
    record_incident,
)

from grading.cli import main
from grading.incident import MAX_DEPTH, Admin, MessageError, RemediationMessage, parse_message
from grading.remediation.audit import INVALID_MESSAGE
from grading.text import install_log_redaction, redact
from grading.wiring import build_runner

SPRAYED = (Admin(ADMIN_ID, ADMIN_UPN, ("failedLogonBurstThenSuccess",)),)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, fake: FakeTenant, storage_connection_string: str, unique_name: str) -> Any:
    """The deployed settings, enforce mode, a cap that holds nothing back; returns the queue client."""
    name = app_environment(monkeypatch, fake, storage_connection_string, unique_name,
                           REMEDIATION_MAX_DISABLES_PER_HOUR="10")
    fake.exchange.add("Inbound", "Partner relay", addresses=["203.0.113.7"])
    fake.graph.add_user(ADMIN_ID, ADMIN_UPN)
    fake.graph.add_user(OTHER_ID, OTHER_UPN)
    return queue_for(storage_connection_string, name)


def sent(msg: RemediationMessage, classification: str = "truePositive") -> RemediationMessage:
    """*msg* as the sweep sends it: its verdict and incident stored first."""
    return record_incident(build_runner().truth.store, msg, classification=classification)


def remediate(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, str]]]:
    code = main(["remediate", "--once", "--json", "-"])
    return code, json.loads(capsys.readouterr().out)


def enabled(fake: FakeTenant, name: str = "Partner relay", kind: str = "Inbound") -> bool:
    item = fake.exchange.connector(kind, name)
    assert item is not None
    return bool(item["Enabled"])


def audit(incident: str) -> dict[tuple[str, str], str]:
    return {(r.action, r.outcome): r.detail for r in build_runner().audit.for_incident(incident)}


def test_a_message_no_sweep_produced_disables_nothing(app: Any, fake: FakeTenant,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    enqueue(app, message(incident="forged-1", actions=("disableConnector", "revokeAdminSessions"), admins=SPRAYED))

    code, [row] = remediate(capsys)

    assert code == 0
    assert (row["outcome"], row["incidentKey"], row["connector"]) == ("refused", "forged-1", "Partner relay")
    assert "no incident forged-1 in the incident ledger" in row["reason"]
    assert enabled(fake) and fake.exchange.mutations() == [] and fake.graph.revocations() == []
    assert "no incident" in audit("forged-1")[("message", "refused")]
    assert app.peek_messages() == []  # completed, not retried
    assert any("refused" in t for t in fake.webhook.texts())


def test_a_made_up_compromise_signal_revokes_nobody(app: Any, fake: FakeTenant,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    genuine = sent(message(actions=("disableConnector", "revokeAdminSessions"),
                           admins=(Admin(ADMIN_ID, ADMIN_UPN, ()),)))
    forged = replace(genuine, admins=(Admin(OTHER_ID, OTHER_UPN, ("failedLogonBurstThenSuccess",)),))
    enqueue(app, forged)

    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "refused")
    assert "disagrees with the incident ledger on admins" in row["reason"]
    assert fake.graph.revocations() == [] and enabled(fake)

    enqueue(app, genuine)  # the sweep's own message: acted on, with the stored admins only
    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "performed")
    assert not enabled(fake) and fake.graph.revocations() == []
    assert "no admin in the message has compromise signals" in audit("inc-1")[("revokeAdminSessions", "refused")]


def test_a_stale_message_is_refused_after_the_connector_was_graded_benign(
    app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = sent(message(actions=("disableConnector",)))
    sent(message(actions=("disableConnector",)), classification="falsePositive")  # a later sweep
    enqueue(app, msg)

    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "refused")
    assert "stale" in row["reason"] and "falsePositive" in row["reason"]
    assert enabled(fake) and fake.exchange.mutations() == []


def test_a_later_benign_verdict_under_another_spelling_makes_the_message_stale(
    app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exchange names are case-insensitive and a connector's state is stored under the spelling its
    latest sweep saw: a later benign verdict of "PARTNER RELAY" supersedes the truePositive of
    "Partner relay", so the older incident is stale."""
    msg = sent(message(actions=("disableConnector",)))
    sent(message("PARTNER RELAY", incident="inc-later", actions=("disableConnector",)), classification="falsePositive")
    enqueue(app, msg)

    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "refused")
    assert "stale" in row["reason"] and "falsePositive" in row["reason"]
    assert enabled(fake) and fake.exchange.mutations() == []


def test_a_suppressed_incident_is_refused(app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str]) -> None:
    msg = sent(message(actions=("disableConnector",)))
    build_runner().truth.store.suppress("Partner relay", reason="partner migration", by="alice")
    enqueue(app, msg)

    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "refused")
    assert "suppressed" in row["reason"] and "partner migration" in row["reason"]
    assert enabled(fake)


def test_after_an_operator_s_reenable_only_a_newer_incident_disables_again(
    app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    enqueue(app, sent(message(incident="inc-1", actions=("disableConnector",))))
    assert remediate(capsys)[1][0]["outcome"] == "performed" and not enabled(fake)
    older = sent(message(incident="inc-2", actions=("disableConnector",)))  # graded before the re-enable
    assert main(["reenable", "Partner relay", "--by", "bob"]) == 0
    capsys.readouterr()
    assert enabled(fake)

    enqueue(app, message(incident="inc-fresh", actions=("disableConnector",)))  # a fresh, forged key
    enqueue(app, older)
    code, rows = remediate(capsys)

    assert code == 0 and [r["outcome"] for r in rows] == ["refused", "refused"]
    assert "no incident inc-fresh" in rows[0]["reason"]
    assert "re-enabled" in rows[1]["reason"] and "later sweep" in rows[1]["reason"]
    assert enabled(fake)

    enqueue(app, sent(message(incident="inc-3", actions=("disableConnector",))))  # graded after it
    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "performed") and not enabled(fake)


def test_a_protected_connector_behind_an_unknown_type_is_not_touched(
    app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMEDIATION_PROTECTED_CONNECTORS", "Inbound:partner RELAY")
    enqueue(app, sent(message(connector_type="Unknown", actions=("disableConnector",))))

    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (0, "refused")
    assert "Inbound:Partner relay" in row["reason"] and "REMEDIATION_PROTECTED_CONNECTORS" in row["reason"]
    assert enabled(fake) and fake.exchange.mutations() == []


def test_report_mode_is_a_dry_run_of_the_queue(app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMEDIATION_MODE", "report")
    enqueue(app, sent(message(actions=("disableConnector",))))

    assert main(["remediate", "--once"]) == 0
    out = capsys.readouterr().out

    assert out.startswith("reportOnly: message ") and "incident inc-1" in out and "'Partner relay'" in out
    assert enabled(fake) and app.peek_messages() == []
    assert main(["remediate", "--once"]) == 0 and "queue is empty" in capsys.readouterr().out


def test_a_deeply_nested_body_is_refused_and_audited_not_a_recursion_error(
    app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "[" * 10_000 + "]" * 10_000  # json.loads alone raises RecursionError on it
    with pytest.raises(MessageError, match="nests 10000 levels"):
        parse_message(body)
    with pytest.raises(MessageError, match="over the queue's limit"):
        parse_message('{"a": "' + "x" * 70_000 + '"}')
    assert parse_message(message().to_json())  # the schema's own nesting is well within MAX_DEPTH
    assert MAX_DEPTH >= 4
    enqueue(app, body)

    code, [row] = remediate(capsys)

    assert code == 0 and row["outcome"] == "refused" and "nests" in row["reason"]
    [record] = build_runner().audit.invalid_messages()
    assert record["outcome"] == INVALID_MESSAGE and "nests 10000 levels" in record["detail"]
    assert fake.exchange.mutations() == []


def test_secrets_are_redacted_from_errors_audit_and_logs(
    app: Any, fake: FakeTenant, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    sas = "https://acct.blob.core.windows.net/c/b?sv=2024-01-01&sig=S3cretSignature%3D"
    fake.server.fail("POST", "/InvokeCommand", 400, {"error": {"code": "Bad", "message": f"see {sas}"}},
                     body_part="Set-InboundConnector")
    enqueue(app, sent(message(actions=("disableConnector",))))
    caplog.set_level(logging.INFO)

    code, [row] = remediate(capsys)

    assert (code, row["outcome"]) == (1, "failed")  # Exchange answered 400: recorded, not retried
    details = " ".join(audit("inc-1").values())
    assert "sig=<redacted>" in details and "S3cretSignature" not in details
    assert "S3cretSignature" not in caplog.text and "S3cretSignature" not in json.dumps(row)
    assert fake.webhook_url.split("/webhookb2/")[1] not in caplog.text + details
    for secret, kept in [
        (f"{fake.webhook_url} failed", "<redacted>"),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.sig", "Bearer <redacted>"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;", "AccountKey=<redacted>"),
        ("https://prod.logic.azure.com/workflows/1/triggers/manual/paths/invoke?api-version=1&sig=zzz", "<redacted>"),
    ]:
        assert kept in redact(secret)
        assert "abc123" not in redact(secret) and "zzz" not in redact(secret)


def test_a_failure_outside_any_action_is_audited_before_it_propagates(
    app: Any, fake: FakeTenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = sent(message(actions=("disableConnector",)))
    runner = build_runner()

    def storage_down(_msg: Any) -> Any:
        raise ConnectionError("table endpoint https://acct.table.core.windows.net/?sig=abc unreachable")

    monkeypatch.setattr(runner.truth, "check", storage_down)
    with pytest.raises(ConnectionError):
        runner.handle(msg.to_json(), message_id="m-1")

    detail = audit("inc-1")[("message", "failed")]
    assert "unreachable" in detail and "sig=<redacted>" in detail


def test_every_log_record_is_redacted_whatever_logger_makes_it(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    sdk = logging.getLogger("azure.storage.queue.probe")
    try:
        raise RuntimeError("GET https://acct.queue.core.windows.net/q/messages?sv=1&sig=Zz9Secret failed")
    except RuntimeError:
        sdk.error("request to %s failed", "https://acct.queue.core.windows.net/q?sig=Zz9Secret", exc_info=True)

    assert "Zz9Secret" not in caplog.text and caplog.text.count("sig=<redacted>") >= 2
