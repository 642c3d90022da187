"""Actions held for approval past the hourly cap, and the cap itself.

Why the cap is slots and not a count: two queue messages processed at once would both count "two
disables this hour, cap three" and both act. Instead each capped action claims one of the hour's
N slot entities with a conditional insert (``create_entity`` fails if the slot exists), so at
most N actions per clock hour can ever claim one, however many run at the same time. A retry (or
the removal after the disable of the same connector) finds its slot again instead of taking another.

Held actions wait in a table (not on the queue, where they would expire or be retried blindly)
until ``python -m grading approve ACTION_ID`` or ``deny ACTION_ID``; a decision is an
etag-conditional update, so two operators cannot both approve one action.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from grading.errors import UsageError
from grading.remediation.actions import PlannedAction
from grading.remediation.ledger import fit_json

PENDING = "pending"


class DecisionError(UsageError):
    """The action is not waiting for a decision (unknown id, or already decided)."""


@dataclass
class PendingAction:
    action: PlannedAction
    status: str
    """``pending``, ``approved``, ``denied``, ``done`` or ``failed``."""
    reason: str
    held_at: datetime
    decided_by: str = ""
    decided_at: datetime | None = None
    note: str = ""
    etag: str | None = None


class PendingApprovals:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def hold(self, action: PlannedAction, reason: str, *, now: datetime) -> PendingAction:
        """Hold *action* (idempotent: holding it again keeps the first record)."""
        entity = {"PartitionKey": PENDING, "RowKey": action.action_id, "status": PENDING, "reason": reason,
                  "heldAt": now, "action": action.action, "connector": action.connector,
                  "incidentKey": action.incident_key,
                  "plannedJson": fit_json(action.to_dict())}
        with contextlib.suppress(ResourceExistsError):  # held before: keep the first record
            self.table.create_entity(entity)
        held = self.get(action.action_id)
        assert held is not None
        return held

    def get(self, action_id: str) -> PendingAction | None:
        try:
            e = self.table.get_entity(PENDING, action_id)
        except ResourceNotFoundError:
            return None
        return PendingAction(
            action=PlannedAction.from_dict(json.loads(e["plannedJson"])), status=e["status"],
            reason=e.get("reason", ""), held_at=e["heldAt"], decided_by=e.get("decidedBy", ""),
            decided_at=e.get("decidedAt"), note=e.get("note", ""), etag=e.metadata.get("etag"),
        )

    def waiting(self) -> list[PendingAction]:
        rows = self.table.query_entities("PartitionKey eq @p and status eq @s",
                                         parameters={"p": PENDING, "s": PENDING})
        found = [self.get(r["RowKey"]) for r in rows]
        return sorted((p for p in found if p is not None), key=lambda p: p.held_at)

    def decide(self, action_id: str, status: str, *, by: str, now: datetime, note: str = "") -> PendingAction:
        """Move a waiting action to *status* (``approved`` / ``denied``); only one decision wins. An
        approved action whose attempt failed (throttled, say) may be approved again."""
        held = self.get(action_id)
        if held is None:
            raise DecisionError(f"no action {action_id} is waiting for approval (`python -m grading pending` "
                                "lists those that are)")
        retry = status == "approved" and held.status == "failed"
        if held.status != PENDING and not retry:
            when = f"{held.decided_at:%Y-%m-%dT%H:%M:%SZ}" if held.decided_at else "earlier"
            decision = "denied" if held.status == "denied" else "approved"
            raise DecisionError(f"action {action_id} was already {decision} by {held.decided_by or 'someone'} at "
                                f"{when} (now {held.status})")
        return self._update(held, status, by=by, now=now, note=note)

    def settle(self, held: PendingAction, status: str, *, now: datetime, note: str = "") -> PendingAction:
        """Record how an approved action ended (``done`` / ``failed``)."""
        return self._update(held, status, by=held.decided_by, now=now, note=note, keep_decision=True)

    def _update(self, held: PendingAction, status: str, *, by: str, now: datetime, note: str,
                keep_decision: bool = False) -> PendingAction:
        entity: dict[str, Any] = {"PartitionKey": PENDING, "RowKey": held.action.action_id, "status": status,
                                  "decidedBy": by, "note": note[:8000]}
        entity["decidedAt"] = held.decided_at if keep_decision and held.decided_at else now
        if keep_decision:
            entity["settledAt"] = now
        try:
            meta = self.table.update_entity(entity, mode=UpdateMode.MERGE, etag=held.etag,
                                            match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise DecisionError(f"action {held.action.action_id} was decided by someone else just now") from None
        held.status, held.decided_by, held.note, held.etag = status, by, note, meta.get("etag")
        held.decided_at = entity["decidedAt"]
        return held


class HourlyCap:
    """At most *limit* capped actions per clock hour (UTC)."""

    def __init__(self, table: TableClient, limit: int) -> None:
        self.table = table
        self.limit = limit

    @staticmethod
    def partition(now: datetime) -> str:
        return "cap-" + now.strftime("%Y%m%d%H")

    def claim(self, connector: str, *, now: datetime) -> bool:
        """Claim a slot of *now*'s hour for *connector* (disabling then removing one connector takes
        one slot); False when the hour's slots are all taken."""
        partition = self.partition(now)
        subject = connector.strip().casefold()
        taken = self.table.query_entities("PartitionKey eq @p", parameters={"p": partition})
        if any(slot.get("connector") == subject for slot in taken):
            return True
        for slot in range(self.limit):
            try:
                self.table.create_entity({"PartitionKey": partition, "RowKey": f"{slot:04d}",
                                          "connector": subject, "claimedAt": now})
                return True
            except ResourceExistsError:
                continue
        return False

    def used(self, now: datetime) -> int:
        return sum(1 for _ in self.table.query_entities("PartitionKey eq @p",
                                                        parameters={"p": self.partition(now)}))
