"""Shared pieces of the remediation tests: the loopback fakes, clients wired to them, Azurite tables,
a message factory and an emulation of the Functions host's queue trigger."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient, QueueMessage, TextBase64DecodePolicy
from fakes.server import LoopbackHTTPS, running
from fakes.tenant import ORGANIZATION, TENANT_ID, FakeTenant, StaticCredential, install
from store_fakes import make_result, make_verdict

from grading.incident import Admin, RemediationMessage
from grading.remediation.actions import ActionClients
from grading.remediation.exchange import ExchangeClient
from grading.remediation.graph import GraphClient
from grading.remediation.notify import WebhookNotifier
from grading.remediation.runner import Runner
from grading.remediation.tables import RemediationTables
from grading.settings import RemediationSettings
from grading.storage.connection import StorageConnection
from grading.storage.incidents import IncidentLedger
from grading.storage.store import GraderStore

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


def record_incident(store: GraderStore, msg: RemediationMessage, *, classification: str = "truePositive",
                    window_end: datetime | None = None, clock: Callable[[], datetime] | None = None
                    ) -> RemediationMessage:
    """What a sweep stores for *msg* before it enqueues: the verdict (sweep and connector state) and,
    for a true positive, the incident ledger's claim of the message. Returns the message as the sweep
    sends it (with the stored sweep's id). Each call grades a later window than the one before."""
    end = window_end or GRADED_BASE + timedelta(hours=next(_WINDOWS))
    start = end - timedelta(hours=1)
    verdict = make_verdict(msg.connector, classification, window_start=start, window_end=end)
    verdict.update(connectorType=msg.connector_type, incidentKey=msg.incident_key, score=msg.score,
                   determination=msg.determination if classification == "truePositive" else None)
    outcome = store.persist_sweep(make_result([verdict], window_start=start, window_end=end))
    sent = replace(msg, sweep_id=outcome.sweep_id)
    if classification == "truePositive":
        incidents = IncidentLedger(store.tables.incidents, **({"clock": clock} if clock else {}))
        claim = incidents.claim(sent)
        if claim is not None:
            incidents.mark_enqueued(claim, "sent-by-the-sweep")
    return sent


GRADED_BASE = datetime(2026, 3, 2, 9, tzinfo=UTC)
_WINDOWS = itertools.count()


@dataclass
class Rig:
    """A runner on Azurite tables and the loopback fakes, plus what the tests look at."""

    fake: FakeTenant
    tables: RemediationTables
    sleeps: Sleeps
    sweeps: list[str]
    clock: Clock
    store: GraderStore

    def record(self, msg: RemediationMessage, *, classification: str = "truePositive") -> RemediationMessage:
        """Store *msg*'s incident as a sweep would (:func:`record_incident`); the message to enqueue."""
        return record_incident(self.store, msg, classification=classification, clock=self.clock)

    def runner(self, config: RemediationSettings | None = None) -> Runner:
        services = ActionClients(
            exchange=exchange_client(self.fake, self.sleeps),
            graph=graph_client(self.fake, self.sleeps),
            request_sweep=lambda action: self.sweeps.append(action.incident_key),
        )
        notifier = WebhookNotifier(self.fake.webhook_url, transport=transport_for(self.fake.server), sleep=self.sleeps)
        return Runner(config or settings(), tables=self.tables, store=self.store, services=services,
                      notifier=notifier, now=self.clock)


def make_rig(fake: FakeTenant, connection_string: str, prefix: str) -> Rig:
    service = TableServiceClient.from_connection_string(connection_string)
    tables = RemediationTables.from_service(service, prefix)
    clock = Clock()
    fake.graph.clock = clock  # the service's clock and the runner's agree, as NTP makes them
    store = GraderStore.open(StorageConnection(connection_string=connection_string), prefix, clock=clock)
    return Rig(fake, tables, Sleeps(), [], clock, store)


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


def app_environment(monkeypatch: Any, fake: FakeTenant, connection_string: str, prefix: str,
                    **overrides: str) -> str:
    """The app settings of the deployed app (enforce mode, every disable held: cap 0), pointed at
    Azurite and the fakes, with *overrides*; returns the remediation queue's name."""
    queue = f"{prefix}-remediation"
    for name, value in ({
        "AzureWebJobsStorage": connection_string,
        "GRADER_TABLE_PREFIX": prefix,
        "REMEDIATION_QUEUE": queue,
        "SWEEP_REQUEST_QUEUE": f"{prefix}-sweeps",
        "REMEDIATION_MODE": "enforce",
        "REMEDIATION_MAX_DISABLES_PER_HOUR": "0",
        "EXCHANGE_TENANT_ID": TENANT_ID,
        "EXCHANGE_ORGANIZATION_DOMAIN": ORGANIZATION,
        "EXCHANGE_ENDPOINT": fake.server.origin,
        "GRAPH_ENDPOINT": fake.server.origin,
        "REMEDIATION_WEBHOOK_URL": fake.webhook_url,
        "REQUESTS_CA_BUNDLE": str(fake.server.ca_file),
        "NO_PROXY": "127.0.0.1",
    } | overrides).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("grading.wiring.default_credential", StaticCredential)
    return queue
