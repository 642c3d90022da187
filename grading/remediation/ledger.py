"""The idempotency ledger: each action's key recorded before it is performed and after.

Why a ledger and not the audit log: the audit log is for people (append-only history); the ledger
is the runner's memory of where each action stands, updated in place with etag concurrency so two
runs (a redelivered message and an operator's ``approve``) cannot both start the same action.

States: ``started`` (key recorded, action may or may not have happened: confirm before acting
again), ``done``, ``failed`` (retry), ``held`` (waits for approval), ``denied`` and ``rolledBack``
(an operator decided; never acted on again for this incident). Partition = mode, so a report-mode
run never marks an enforce action done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from grading.errors import ServiceError
from grading.remediation.actions import PlannedAction

MAX_JSON = 30_000


class LedgerConflict(ServiceError):
    """Another run changed the same action at the same time; the queue retries the message."""


@dataclass
class LedgerEntry:
    mode: str
    action: PlannedAction
    state: str
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str
    detail: str
    facts: dict[str, Any]
    etag: str | None = None

    @property
    def action_id(self) -> str:
        return self.action.action_id


def fit_json(value: Any) -> str:
    """ASCII JSON within one Table string property (32 K characters); a value too large is replaced
    by a note saying so rather than cut into invalid JSON."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    if len(text) <= MAX_JSON:
        return text
    return json.dumps({"trimmed": f"{len(text)} characters of JSON did not fit the Table property"})


def _entity(entry: LedgerEntry) -> dict[str, Any]:
    a = entry.action
    entity: dict[str, Any] = {
        "PartitionKey": entry.mode, "RowKey": a.action_id, "state": entry.state, "action": a.action,
        "incidentKey": a.incident_key, "connector": a.connector, "connectorType": a.connector_type,
        "target": a.target, "outcome": entry.outcome, "detail": entry.detail[:8000],
        "plannedJson": fit_json(a.to_dict()),
        "factsJson": fit_json(entry.facts),
    }
    if entry.started_at is not None:
        entity["startedAt"] = entry.started_at
    if entry.finished_at is not None:
        entity["finishedAt"] = entry.finished_at
    return entity


def _from_entity(entity: Any) -> LedgerEntry:
    return LedgerEntry(
        mode=entity["PartitionKey"],
        action=PlannedAction.from_dict(json.loads(entity["plannedJson"])),
        state=entity["state"],
        started_at=entity.get("startedAt"),
        finished_at=entity.get("finishedAt"),
        outcome=entity.get("outcome", ""),
        detail=entity.get("detail", ""),
        facts=json.loads(entity.get("factsJson") or "{}"),
        etag=entity.metadata.get("etag") if hasattr(entity, "metadata") else None,
    )


class ActionLedger:
    def __init__(self, table: TableClient) -> None:
        self.table = table

    def get(self, mode: str, action_id: str) -> LedgerEntry | None:
        try:
            return _from_entity(self.table.get_entity(mode, action_id))
        except ResourceNotFoundError:
            return None

    def put(self, entry: LedgerEntry) -> LedgerEntry:
        """Insert *entry* if new, else replace it only if nobody changed it since it was read."""
        try:
            if entry.etag is None:
                meta = self.table.create_entity(_entity(entry))
            else:
                meta = self.table.update_entity(_entity(entry), mode=UpdateMode.REPLACE, etag=entry.etag,
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            raise LedgerConflict(f"action {entry.action_id} was changed by another run at the same time") from None
        entry.etag = meta.get("etag")
        return entry

    def transition(self, entry: LedgerEntry | None, mode: str, action: PlannedAction, state: str, *,
                   now: datetime, outcome: str = "", detail: str = "", facts: dict[str, Any] | None = None,
                   start: bool = False) -> LedgerEntry:
        """Move *action* to *state* (creating its entry when *entry* is None)."""
        if entry is None:
            entry = LedgerEntry(mode, action, state, None, None, outcome, detail, dict(facts or {}))
        entry.state, entry.outcome, entry.detail = state, outcome, detail
        if facts:
            entry.facts.update(facts)
        if start:
            entry.started_at, entry.finished_at = now, None
        else:
            entry.finished_at = now
        return self.put(entry)

    def of_action(self, mode: str, action: str) -> list[LedgerEntry]:
        """Every entry of *action* (any incident, any connector)."""
        rows = self.table.query_entities("PartitionKey eq @mode and action eq @action",
                                         parameters={"mode": mode, "action": action})
        return [_from_entity(r) for r in rows]

    def find(self, mode: str, *, action: str, connector: str | None = None) -> list[LedgerEntry]:
        """Entries of *action* on *connector* (exactly as spelt; None: any connector), any incident,
        newest first. The name is passed as a query parameter, never spliced into the filter text."""
        if connector is None:
            rows = self.table.query_entities("PartitionKey eq @mode and action eq @action",
                                             parameters={"mode": mode, "action": action})
        else:
            rows = self.table.query_entities(
                "PartitionKey eq @mode and action eq @action and connector eq @connector",
                parameters={"mode": mode, "action": action, "connector": connector},
            )
        entries = [_from_entity(r) for r in rows]

        def when(e: LedgerEntry) -> float:
            moment = e.finished_at or e.started_at
            return moment.timestamp() if moment is not None else 0.0

        return sorted(entries, key=when, reverse=True)
