"""The remediation as deployed: the sweep's own producer puts an incident on an Azurite queue, the
Functions queue trigger (called directly, with the host's decoded body and dequeue count) holds it
past the cap, and the operator's CLI verbs list, approve, deny and roll back, with the settings,
identity and TLS stack the app uses (only the credential and the CA are the test's)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from fakes.tenant import FakeTenant
from remediation_support import (
    ADMIN_ID,
    ADMIN_UPN,
    app_environment,
    fake_tenant,
    message,
    queue_for,
    record_incident,
)

from grading.cli import main
from grading.incident import RemediationMessage
from grading.storage.queue import RemediationQueue
from grading.wiring import build_runner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registered() -> dict[str, Any]:
    """The app's functions as the host indexes them (``get_functions`` may run once per app)."""
    spec = importlib.util.spec_from_file_location("function_app_remediation", ROOT / "function_app.py")
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f for f in module.app.get_functions()}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


@pytest.fixture
def app_settings(
    monkeypatch: pytest.MonkeyPatch, fake: FakeTenant, storage_connection_string: str, unique_name: str
) -> str:
    """The app settings of the deployed app, pointed at Azurite and the fakes; returns the queue name."""
    queue = app_environment(monkeypatch, fake, storage_connection_string, unique_name)
    fake.exchange.add("Inbound", "Partner relay", addresses=["203.0.113.7"])
    fake.exchange.add("Outbound", "To partner", addresses=["mail.partner.example"])
    fake.graph.add_user(ADMIN_ID, ADMIN_UPN)
    return queue


def trigger(registered: dict[str, Any], connection_string: str, queue_name: str) -> None:
    """What the host does: receive, decode base64, call the function with the dequeue count."""
    queue = queue_for(connection_string, queue_name)
    received = queue.receive_message()
    assert received is not None
    body = received.content.encode()
    registered["remediation_queue"].get_user_function()(
        QueueMessage(id=received.id, body=body, dequeue_count=received.dequeue_count)
    )
    queue.delete_message(received)


def sent(msg: RemediationMessage) -> RemediationMessage:
    """*msg* as a sweep sends it, its incident and verdict stored first (the app's own store)."""
    return record_incident(build_runner().truth.store, msg)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_the_queue_trigger_binds_the_remediation_queue_setting(registered: dict[str, Any]) -> None:
    [binding] = registered["remediation_queue"].get_bindings_dict()["bindings"]
    assert (binding["type"], binding["queueName"], binding["connection"]) == (
        "queueTrigger",
        "%REMEDIATION_QUEUE%",
        "AzureWebJobsStorage",
    )
    [binding] = registered["sweep_request_queue"].get_bindings_dict()["bindings"]
    assert binding["queueName"] == "%SWEEP_REQUEST_QUEUE%"
    [binding] = registered["connector_inventory_timer"].get_bindings_dict()["bindings"]
    assert binding["type"] == "timerTrigger"


def test_host_json_poisons_after_the_tries_the_runner_counts() -> None:
    import json

    from grading.remediation.runner import MAX_DEQUEUE_COUNT

    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    assert queues["messageEncoding"] == "base64"


def test_held_actions_are_listed_approved_denied_and_rolled_back_from_the_cli(
    registered: dict[str, Any],
    app_settings: str,
    storage_connection_string: str,
    fake: FakeTenant,
    capsys: pytest.CaptureFixture[str],
) -> None:
    producer = RemediationQueue(queue_for(storage_connection_string, app_settings))
    producer.send(sent(message("Partner relay", incident="inc-1", actions=("disableConnector", "revokeAdminSessions"))))
    producer.send(sent(message("To partner", incident="inc-2", connector_type="Outbound",
                               actions=("disableConnector",))))

    trigger(registered, storage_connection_string, app_settings)
    trigger(registered, storage_connection_string, app_settings)

    assert fake.exchange.mutations() == []  # cap 0: every disable waits for a person
    assert len(fake.graph.revocations()) == 1  # revoking the compromised admin is not capped
    code, out = cli(capsys, "pending")
    assert code == 0 and "Partner relay" in out and "To partner" in out
    held = {a.action.connector: a.action.action_id for a in build_runner().pending.waiting()}

    code, out = cli(capsys, "approve", held["Partner relay"], "--by", "alice")
    assert code == 0 and "performed" in out and "approved by alice" in out
    assert fake.exchange.connector("Inbound", "Partner relay")["Enabled"] is False  # type: ignore[index]

    code, out = cli(capsys, "approve", held["Partner relay"], "--by", "mallory")
    assert code == 2 and "already approved by alice" in out

    code, out = cli(capsys, "deny", held["To partner"], "--by", "alice", "--reason", "known partner change")
    assert code == 0 and "denied" in out
    assert fake.exchange.connector("Outbound", "To partner")["Enabled"] is True  # type: ignore[index]

    code, out = cli(capsys, "reenable", "Partner relay", "--by", "bob")
    assert code == 0 and "reenabled" in out
    assert fake.exchange.connector("Inbound", "Partner relay")["Enabled"] is True  # type: ignore[index]

    code, out = cli(capsys, "approve", "disableConnector-0000", "--by", "alice")
    assert code == 2 and "no action disableConnector-0000 is waiting" in out
    texts = fake.webhook.texts()
    assert any("approved by" in t and "performed" in t for t in texts)
    assert any("denied" in t for t in texts) and any("reenabled" in t for t in texts)


def test_the_inventory_refresh_records_connectors_and_feeds_a_revert(
    app_settings: str, fake: FakeTenant, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out = cli(capsys, "inventory")
    assert code == 0 and "2 connectors" in out, out

    # The attacker changes the outbound connector; the next daily refresh sees it.
    item = fake.exchange.connector("Outbound", "To partner")
    assert item is not None
    item["SmartHosts"], item["WhenChangedUTC"] = ["evil-relay.example.net"], "2030-01-01T00:00:00Z"
    code, out = cli(capsys, "inventory")
    assert code == 0 and "1 changed" in out, out
    runner = build_runner()
    [record] = [r for r in runner.inventory.records() if r.name == "To partner"]
    assert record.addresses == ("evil-relay.example.net",)
    assert record.previous_addresses == ("mail.partner.example",)
    assert record.when_created is not None and record.when_created.year == 2024

    monkeypatch.setenv("REMEDIATION_ALLOW_REVERT", "true")
    build_runner().handle(
        sent(
            message(
                "To partner",
                connector_type="Outbound",
                actions=("revertConnectorChange",),
                summary={"lastModified": "2030-01-01T00:00:05Z"},
            )
        ).to_json(),
        message_id="m1",
    )

    assert item["SmartHosts"] == ["mail.partner.example"]
    [line] = [t for t in fake.webhook.texts() if "revertConnectorChange" in t]
    assert "inventory snapshot before the last change" in line
