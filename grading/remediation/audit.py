"""The remediation audit log: every action performed, held, refused or failed, and every bad message.

Why row keys are derived, not random: a retry that repeats a write (the process died after the
audit write but before the ledger's "done") must not leave two "performed" rows for one action.
So an action's row key is ``<action id>~<outcome>`` for outcomes that happen once (performed,
held, refused, wouldPerform), and adds the message id and dequeue count for those that happen
once per try (failed, alreadyDone, invalidMessage). Writes are upserts.

Every row holds the incident, the request (message id, sweep id, requested action), the outcome,
a detail in words, the mode, who acted (the queue runner or an operator) and the time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from grading.incident import RemediationMessage
from grading.remediation.actions import PlannedAction
from grading.storage.keys import encode_key
from grading.text import redact, safe_text

INVALID_PARTITION = "~invalid"
"""Partition of bad messages ('~' cannot appear in an incident key, so no incident collides)."""
MAX_DETAIL = 8000

WOULD_PERFORM = "wouldPerform"
PERFORMED = "performed"
ALREADY_IN_EFFECT = "alreadyInEffect"
ALREADY_DONE = "alreadyDone"
HELD = "held"
STILL_HELD = "stillHeld"
REFUSED = "refused"
FAILED = "failed"
INVALID_MESSAGE = "invalidMessage"
APPROVED = "approved"
DENIED = "denied"
REENABLED = "reenabled"
NOTIFY_FAILED = "notifyFailed"
PER_TRY = frozenset({FAILED, ALREADY_DONE, INVALID_MESSAGE, NOTIFY_FAILED})
MESSAGE = "message"
"""The ``action`` of a record about a whole message rather than one of its actions."""


@dataclass(frozen=True)
class Request:
    """Which delivery asked: the queue message id and try, or an operator's command."""

    message_id: str = ""
    dequeue_count: int = 0
    actor: str = "queue"


@dataclass(frozen=True)
class AuditRecord:
    incident_key: str
    action: str
    action_id: str
    target: str
    connector: str
    outcome: str
    detail: str
    mode: str
    time: datetime
    message_id: str = ""
    dequeue_count: int = 0
    actor: str = ""
    sweep_id: str = ""


class AuditLog:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def _upsert(self, entity: dict[str, Any]) -> None:
        self.table.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def action(self, action: PlannedAction, outcome: str, detail: str, *, mode: str, request: Request,
               now: datetime) -> AuditRecord:
        """Record what happened to *action*; returns the record."""
        row = f"{action.action_id}~{outcome}"
        if outcome in PER_TRY or outcome in (APPROVED, DENIED, REENABLED) or action.action == MESSAGE:
            row += f"~{encode_key(request.message_id or request.actor)}~{request.dequeue_count:03d}"
            if outcome == REENABLED:
                row += f"~{now.strftime('%Y%m%dT%H%M%S%f')}"
        detail = redact(detail)
        record = AuditRecord(
            incident_key=action.incident_key, action=action.action, action_id=action.action_id,
            target=action.label or action.target, connector=action.connector, outcome=outcome,
            detail=detail[:MAX_DETAIL], mode=mode, time=now, message_id=request.message_id,
            dequeue_count=request.dequeue_count, actor=request.actor, sweep_id=action.sweep_id,
        )
        self._upsert({
            "PartitionKey": encode_key(action.incident_key), "RowKey": row, "incidentKey": action.incident_key,
            "action": action.action, "actionId": action.action_id, "target": record.target,
            "connector": action.connector, "outcome": outcome, "detail": record.detail, "mode": mode,
            "time": now, "messageId": request.message_id, "dequeueCount": request.dequeue_count,
            "actor": request.actor, "sweepId": action.sweep_id,
        })
        return record

    def message(self, msg: RemediationMessage, outcome: str, reason: str, *, mode: str, request: Request,
                now: datetime) -> AuditRecord:
        """Record what became of a whole message (refused by the stored truth, or failed outside any
        action), in its incident's partition, once per try."""
        probe = PlannedAction(MESSAGE, incident_key=msg.incident_key, connector=msg.connector,
                              connector_type=msg.connector_type, target=msg.connector, sweep_id=msg.sweep_id,
                              label=f"message {request.message_id}".strip())
        return self.action(probe, outcome, reason, mode=mode, request=request, now=now)

    def invalid_message(self, reason: str, body: str | bytes, *, request: Request, now: datetime,
                        max_dequeue_count: int) -> None:
        """Record a message that could not be acted on, once per try, with enough of it to find it
        again (its id, a hash and a printable excerpt), so nothing is lost before the host moves it
        to the poison queue."""
        raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
        text = body if isinstance(body, str) else body.decode("utf-8", "replace")
        last = request.dequeue_count >= max_dequeue_count
        self._upsert({
            "PartitionKey": INVALID_PARTITION,
            "RowKey": f"{encode_key(request.message_id or hashlib.sha256(raw).hexdigest()[:32])}"
                      f"~{request.dequeue_count:03d}",
            "outcome": INVALID_MESSAGE, "detail": redact(reason)[:MAX_DETAIL], "time": now,
            "messageId": request.message_id, "dequeueCount": request.dequeue_count,
            "bodySha256": hashlib.sha256(raw).hexdigest(), "bodyExcerpt": safe_text(text, 2000),
            "bodyLength": len(raw), "actor": request.actor,
            "next": "moved to the poison queue by the host" if last else "retried by the host",
        })

    def invalid_messages(self) -> list[dict[str, Any]]:
        rows = self.table.query_entities("PartitionKey eq @p", parameters={"p": INVALID_PARTITION})
        return sorted((dict(r) for r in rows), key=lambda r: (r["messageId"], r["dequeueCount"]))

    def for_incident(self, incident_key: str) -> list[AuditRecord]:
        rows = self.table.query_entities("PartitionKey eq @p", parameters={"p": encode_key(incident_key)})
        return sorted((_record(r) for r in rows), key=lambda r: r.time)

    def all(self) -> list[AuditRecord]:
        rows: Iterable[Any] = self.table.query_entities("PartitionKey ne @p", parameters={"p": INVALID_PARTITION})
        return sorted((_record(r) for r in rows), key=lambda r: r.time)


def _record(r: Any) -> AuditRecord:
    return AuditRecord(
        incident_key=r["incidentKey"], action=r["action"], action_id=r["actionId"], target=r.get("target", ""),
        connector=r.get("connector", ""), outcome=r["outcome"], detail=r.get("detail", ""), mode=r["mode"],
        time=r["time"], message_id=r.get("messageId", ""), dequeue_count=r.get("dequeueCount", 0),
        actor=r.get("actor", ""), sweep_id=r.get("sweepId", ""),
    )
