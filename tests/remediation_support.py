"""Shared pieces of the remediation tests: the loopback fakes, clients wired to them, Azurite tables,
a message factory and an emulation of the Functions host's queue trigger."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, QueueMessage, TextBase64DecodePolicy
from fakes.server import LoopbackHTTPS, running
from fakes.tenant import ORGANIZATION, TENANT_ID, FakeTenant, StaticCredential, install

from grading.incident import Admin, RemediationMessage
from grading.remediation.actions import ActionClients
from grading.remediation.exchange import ExchangeClient
from grading.remediation.graph import GraphClient
from grading.remediation.notify import WebhookNotifier
from grading.remediation.runner import Runner
from grading.remediation.tables import RemediationTables
from grading.settings import RemediationSettings

ADMIN_ID = "11111111-1111-1111-1111-111111111111"
ADMIN_UPN = "it-admin@contoso.com"
OTHER_ID = "22222222-2222-2222-2222-222222222222"
OTHER_UPN = "helpdesk@contoso.com"


class Clock:
    """A clock that ticks a millisecond per reading, from the middle of the current hour (so one
    test never straddles two hours of the hourly cap) and keeps records in order."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)

    def __call__(self) -> datetime:
        self.moment += timedelta(milliseconds=1)
        return self.moment


@dataclass
class Sleeps:
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def transport_for(server: LoopbackHTTPS) -> RequestsTransport:
    """The real requests transport, trusting only the test CA and ignoring proxy settings."""
    return RequestsTransport(connection_verify=str(server.ca_file), use_env_settings=False)


def fake_tenant(tmp_path: Path) -> Iterator[FakeTenant]:
    """For a fixture: the fakes on one loopback HTTPS server, stopped afterwards."""
    with running(tmp_path) as server:
        yield install(server)


def exchange_client(fake: FakeTenant, sleeps: Sleeps | None = None, credential: Any = None) -> ExchangeClient:
    return ExchangeClient(
        credential or StaticCredential(),
        tenant_id=TENANT_ID,
        organization_domain=ORGANIZATION,
        endpoint=fake.server.origin,
        transport=transport_for(fake.server),
        sleep=sleeps or Sleeps(),
    )


def graph_client(fake: FakeTenant, sleeps: Sleeps | None = None) -> GraphClient:
    return GraphClient(
        StaticCredential(), endpoint=fake.server.origin, transport=transport_for(fake.server), sleep=sleeps or Sleeps()
    )


def settings(**overrides: Any) -> RemediationSettings:
    base: dict[str, Any] = {"mode": "enforce", "exchange_tenant_id": TENANT_ID, "exchange_organization": ORGANIZATION}
    return RemediationSettings(**(base | overrides))


@dataclass
class Rig:
    """A runner on Azurite tables and the loopback fakes, plus what the tests look at."""

    fake: FakeTenant
    tables: RemediationTables
    sleeps: Sleeps
    sweeps: list[str]
    clock: Clock

    def runner(self, config: RemediationSettings | None = None) -> Runner:
        services = ActionClients(
            exchange=exchange_client(self.fake, self.sleeps),
            graph=graph_client(self.fake, self.sleeps),
            request_sweep=lambda action: self.sweeps.append(action.incident_key),
        )
        notifier = WebhookNotifier(self.fake.webhook_url, transport=transport_for(self.fake.server), sleep=self.sleeps)
        return Runner(config or settings(), tables=self.tables, services=services, notifier=notifier, now=self.clock)


def make_rig(fake: FakeTenant, connection_string: str, prefix: str) -> Rig:
    service = TableServiceClient.from_connection_string(connection_string)
    tables = RemediationTables.from_service(service, prefix)
    clock = Clock()
    fake.graph.clock = clock  # the service's clock and the runner's agree, as NTP makes them
    return Rig(fake, tables, Sleeps(), [], clock)


def message(
    connector: str = "Partner relay",
    *,
    incident: str = "inc-1",
    connector_type: str = "Inbound",
    actions: tuple[str, ...] = ("disableConnector", "revokeAdminSessions", "resweep"),
    admins: tuple[Admin, ...] | None = None,
    alert_ids: tuple[str, ...] = (),
    summary: dict[str, Any] | None = None,
) -> RemediationMessage:
    if admins is None:
        admins = (Admin(ADMIN_ID, ADMIN_UPN, ("failedLogonBurstThenSuccess",)), Admin(OTHER_ID, OTHER_UPN, ()))
    return RemediationMessage(
        sweep_id="sweep-2026030209",
        incident_key=incident,
        connector=connector,
        connector_type=connector_type,
        determination="compromisedAccount",
        score=92,
        admins=admins,
        alert_ids=alert_ids,
        requested_actions=actions,
        evidence_summary=summary
        or {"findings": [{"check": "volume", "severity": "high", "summary": "9,120 messages in 2 h, baseline 0-40"}]},
    )


# ---------------------------------------------------------------------------------------------
# The Functions host's queue trigger, emulated over a real Azurite queue


def queue_for(connection_string: str, name: str) -> QueueClient:
    """A queue client that reads messages as the host does: base64-decoded text."""
    client = QueueClient.from_connection_string(connection_string, name, message_decode_policy=TextBase64DecodePolicy())
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    return client


def enqueue(queue: QueueClient, msg: RemediationMessage | str) -> None:
    """Put a message on the queue the way the sweep does: base64 text (host messageEncoding: base64)."""
    wire = msg.to_base64() if isinstance(msg, RemediationMessage) else base64.b64encode(msg.encode()).decode()
    queue.send_message(wire)


@dataclass
class Delivery:
    message: QueueMessage
    error: BaseException | None


def deliver(
    queue: QueueClient,
    poison: QueueClient,
    handler: Callable[..., Any],
    *,
    max_dequeue: int = 5,
    delete_on_success: bool = True,
) -> Delivery:
    """One try of the host's queue trigger: receive, call *handler* with the decoded body and the
    dequeue count; on success delete; on failure make it visible again (host.json visibilityTimeout
    0) or, at maxDequeueCount, move it to ``<queue>-poison``."""
    received = queue.receive_message(visibility_timeout=30)
    assert received is not None, "no message on the queue"
    try:
        handler(received.content, message_id=received.id, dequeue_count=received.dequeue_count)
    except Exception as exc:
        if received.dequeue_count >= max_dequeue:
            poison.send_message(base64.b64encode(received.content.encode()).decode())
            queue.delete_message(received)
        else:
            queue.update_message(received.id, pop_receipt=received.pop_receipt, visibility_timeout=0)
        return Delivery(received, exc)
    if delete_on_success:
        queue.delete_message(received)
    else:  # the host lost its lease and could not delete: the message comes back
        queue.update_message(received.id, pop_receipt=received.pop_receipt, visibility_timeout=0)
    return Delivery(received, None)


def wire_json(text: str) -> dict[str, Any]:
    return json.loads(text)
