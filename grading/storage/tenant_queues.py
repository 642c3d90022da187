"""The two queues of many tenants: tenant sweeps (the fan-out) and the tenants' incidents.

Why envelopes naming the tenant rather than a queue per tenant: a Functions queue trigger listens
on one queue named in its binding, so hundreds of per-tenant queues would need hundreds of
functions. One queue each, with the tenant id in every message, lets the host scale one function
out over the tenants; the tenant id is a GUID checked on both sides
(:func:`~grading.storage.tenants.canonical_tenant_id`), and the consumer builds that tenant's
services from the registry, so a message can only ever reach the tables, blob folder, Exchange
organisation and Graph tenant of the tenant it names. Messages are base64 JSON, as the host's
queue trigger expects (host.json ``messageEncoding: base64``):

* tenant sweep: ``{"schemaVersion": 1, "tenantId", "kind": "scheduled" | "requested",
  "requestedAt", "incidentKey"?}``
* tenant incident: ``{"schemaVersion": 1, "tenantId", "message": <the remediation message>}``
  (the remediation message exactly as :mod:`grading.incident` shapes it).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient

from grading.incident import MAX_WIRE_BYTES, MessageError, RemediationMessage
from grading.storage.tenants import TenantError, canonical_tenant_id

SCHEMA_VERSION = 1
KINDS = ("scheduled", "requested")
SWEEP_MESSAGE_TTL = timedelta(hours=2)
"""A fan-out message not picked up within two runs expires rather than piling up: the next run
sends a fresh one, and the tenant's watermark makes it grade every hour it missed."""


def _encode(doc: dict[str, Any]) -> str:
    wire = base64.b64encode(json.dumps(doc, separators=(",", ":"), sort_keys=True,
                                       ensure_ascii=True).encode("ascii")).decode("ascii")
    if len(wire) > MAX_WIRE_BYTES:
        raise MessageError(f"the tenant message is {len(wire)} bytes in base64, over the queue limit of "
                           f"{MAX_WIRE_BYTES}")
    return wire


def _decode(body: str | bytes) -> dict[str, Any]:
    """The JSON of a body handed over by the host (base64 decoded already) or read raw (base64)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = text.strip()
    if not text.startswith("{"):
        with contextlib.suppress(binascii.Error, ValueError):
            text = base64.b64decode(text, validate=True).decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        raise MessageError("the tenant message is not JSON") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != SCHEMA_VERSION:
        raise MessageError(f"the tenant message has no schemaVersion {SCHEMA_VERSION}")
    try:
        doc["tenantId"] = canonical_tenant_id(str(doc.get("tenantId", "")))
    except TenantError as exc:
        raise MessageError(str(exc)) from None
    return doc


@dataclass(frozen=True)
class TenantSweepRequest:
    tenant_id: str
    kind: str = "scheduled"
    requested_at: str = ""
    incident_key: str | None = None

    def to_base64(self) -> str:
        doc: dict[str, Any] = {"schemaVersion": SCHEMA_VERSION, "tenantId": canonical_tenant_id(self.tenant_id),
                               "kind": self.kind, "requestedAt": self.requested_at}
        if self.incident_key:
            doc["incidentKey"] = self.incident_key[:256]
        return _encode(doc)


def parse_sweep_request(body: str | bytes) -> TenantSweepRequest:
    doc = _decode(body)
    kind = doc.get("kind", "scheduled")
    if kind not in KINDS:
        raise MessageError(f"the tenant sweep message's kind {str(kind)[:40]!r} is not one of {', '.join(KINDS)}")
    key = doc.get("incidentKey")
    return TenantSweepRequest(doc["tenantId"], kind, str(doc.get("requestedAt", ""))[:40],
                              str(key)[:256] if key else None)


def parse_tenant_incident(body: str | bytes) -> tuple[str, str]:
    """(tenant id, the remediation message's JSON) of a tenant incident message."""
    doc = _decode(body)
    inner = doc.get("message")
    if not isinstance(inner, dict):
        raise MessageError("the tenant incident message holds no remediation message")
    return doc["tenantId"], json.dumps(inner, separators=(",", ":"), sort_keys=True, ensure_ascii=True)


def _ensure(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


class TenantSweepQueue:
    """Where the fan-out puts one message per due tenant."""

    def __init__(self, client: QueueClient, *, create: bool = True) -> None:
        self.client = client
        if create:
            _ensure(client)

    @property
    def name(self) -> str:
        return str(self.client.queue_name)

    def send(self, request: TenantSweepRequest, *, delay: timedelta = timedelta(0)) -> str:
        sent = self.client.send_message(request.to_base64(), visibility_timeout=int(delay.total_seconds()) or None,
                                        time_to_live=int(SWEEP_MESSAGE_TTL.total_seconds()))
        return str(sent.id)


class TenantRemediationQueue:
    """A tenant's remediation queue as :class:`~grading.storage.queue.RemediationQueue` is the
    deployment's: :func:`grading.scheduler.publish_incidents` sends through it unchanged, and every
    message it sends names the tenant."""

    def __init__(self, client: QueueClient, tenant_id: str, *, create: bool = True) -> None:
        self.client = client
        self.tenant_id = canonical_tenant_id(tenant_id)
        if create:
            _ensure(client)

    @property
    def name(self) -> str:
        return str(self.client.queue_name)

    def send(self, message: RemediationMessage) -> str:
        wire = _encode({"schemaVersion": SCHEMA_VERSION, "tenantId": self.tenant_id,
                        "message": json.loads(message.to_json())})
        return str(self.client.send_message(wire).id)


class TenantSweepRequester:
    """The tenant runner's ``request_sweep``: an immediate sweep of that tenant only, through the
    tenant-sweep queue (the deployment's own sweep-request queue would sweep the home tenant)."""

    def __init__(self, queue: TenantSweepQueue, tenant_id: str) -> None:
        self.queue = queue
        self.tenant_id = canonical_tenant_id(tenant_id)

    def __call__(self, action: Any) -> None:
        self.queue.send(TenantSweepRequest(self.tenant_id, "requested", datetime.now(UTC).isoformat(),
                                           getattr(action, "incident_key", None)))
