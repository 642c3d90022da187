"""The incident ledger: which true-positive incidents were put on the remediation queue.

Why a ledger with a conditional insert: an ongoing true positive is graded again every hour, and
two timer runs can race (a late run and the next one). Only the run whose insert of the incident
row succeeds enqueues; the others see the row and do nothing. The row is claimed (``pending``)
before the message is sent and marked ``enqueued`` after, so a run that dies in between leaves a
``pending`` row that a later run (or the daily maintenance) may re-claim, etag-guarded, and send:
at least once, never once per sweep. The runner is idempotent, so a rare double send is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, UpdateMode

from grading.incident import RemediationMessage, parse_message
from grading.storage.entities import dumps, get_json, put_json
from grading.storage.keys import encode_key

INCIDENT_PARTITION = "incident"
PENDING_TIMEOUT = timedelta(minutes=15)


@dataclass
class IncidentClaim:
    incident_key: str
    etag: str
    message: RemediationMessage


def _conflict(exc: HttpResponseError) -> bool:
    return isinstance(exc, (ResourceModifiedError, ResourceExistsError)) or exc.status_code in (409, 412)


def stored_message(entity: TableEntity) -> RemediationMessage:
    """The message the sweep built for the incident of ledger *entity* (raises MessageError if unreadable)."""
    return parse_message(dumps(get_json(entity, "Message")))


class IncidentLedger:
    def __init__(self, table: TableClient, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.table = table
        self.clock = clock

    def get(self, incident_key: str) -> TableEntity | None:
        try:
            return self.table.get_entity(INCIDENT_PARTITION, encode_key(incident_key))
        except ResourceNotFoundError:
            return None

    def all(self) -> list[TableEntity]:
        return list(self.table.query_entities("PartitionKey eq @p", parameters={"p": INCIDENT_PARTITION}))

    def claim(self, message: RemediationMessage) -> IncidentClaim | None:
        """Claim the incident of *message* for sending; None when it is enqueued already or another
        run holds a fresh claim."""
        now = self.clock()
        entity: dict[str, Any] = {
            "PartitionKey": INCIDENT_PARTITION, "RowKey": encode_key(message.incident_key),
            "IncidentKey": message.incident_key, "Connector": message.connector, "SweepId": message.sweep_id,
            "State": "pending", "ClaimedAt": now, "FirstSeen": now,
        }
        put_json(entity, "Message", message.to_dict())
        try:
            meta = self.table.create_entity(entity)
            return IncidentClaim(message.incident_key, meta["etag"], message)
        except ResourceExistsError:
            pass
        existing = self.get(message.incident_key)
        if existing is None or existing.get("State") != "pending" or now - existing["ClaimedAt"] < PENDING_TIMEOUT:
            return None
        # A claim whose sender died: take it over, unless another run does so first.
        return self._reclaim(existing, message)

    def _reclaim(self, existing: TableEntity, message: RemediationMessage | None = None) -> IncidentClaim | None:
        updated = dict(existing)
        updated["ClaimedAt"] = self.clock()
        updated["Attempts"] = int(existing.get("Attempts") or 1) + 1
        if message is None:
            message = stored_message(existing)
        else:  # the runner checks a message against this copy: keep it the one that is sent
            put_json(updated, "Message", message.to_dict())
        try:
            meta = self.table.update_entity(updated, mode=UpdateMode.REPLACE, etag=existing.metadata["etag"],
                                            match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if _conflict(exc):
                return None
            raise
        return IncidentClaim(existing["IncidentKey"], meta["etag"], message)

    def stale_pending(self) -> list[IncidentClaim]:
        """Claim every ``pending`` incident whose sender gave up or died (daily maintenance)."""
        now = self.clock()
        claims = []
        for e in self.table.query_entities("PartitionKey eq @p and State eq 'pending'",
                                           parameters={"p": INCIDENT_PARTITION}):
            if now - e["ClaimedAt"] >= PENDING_TIMEOUT:
                claim = self._reclaim(e)
                if claim:
                    claims.append(claim)
        return claims

    def mark_enqueued(self, claim: IncidentClaim, message_id: str) -> None:
        """Record the send. A conflict means another run re-claimed a claim we held too long; it
        records its own send."""
        try:
            self.table.update_entity(
                {"PartitionKey": INCIDENT_PARTITION, "RowKey": encode_key(claim.incident_key), "State": "enqueued",
                 "EnqueuedAt": self.clock(), "MessageId": message_id},
                mode=UpdateMode.MERGE, etag=claim.etag, match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if not _conflict(exc):
                raise

    def release(self, claim: IncidentClaim) -> None:
        """Give a claim back after a failed send, so the next sweep tries again at once."""
        try:
            self.table.delete_entity(INCIDENT_PARTITION, encode_key(claim.incident_key), etag=claim.etag,
                                     match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if not _conflict(exc) and exc.status_code != 404:
                raise
