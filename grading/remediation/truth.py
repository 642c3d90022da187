"""What the runner acts on: the incident as the sweep stored it, never the queue message.

Why: anyone who can write to the remediation queue could otherwise disable any connector, revoke
any user's sessions or choose a connector's new addresses. The message is a pointer (docs/architecture.md,
"Remediation message"): :meth:`StoredTruth.check` looks the incident up and returns the message
the sweep itself built and stored in the incident ledger before it enqueued, and only when

1. the incident ledger holds the incident (the sweep claims it before it sends the message);
2. the message agrees with the ledger's copy, field by field (a changed admin, signal, action,
   connector or summary is a forgery or a corruption);
3. the sweep's stored verdict for that connector is ``truePositive`` with the same incident key;
4. the connector's latest state still holds that incident as ``truePositive``: not graded
   otherwise since (a stale message), not suppressed by an analyst;
5. no operator re-enabled the connector (``python -m grading reenable``) after the incident was
   first claimed: after a re-enable only an incident graded by a later sweep disables it again.

Otherwise it raises :class:`MessageRefused`; the runner audits it and completes the message (a
refusal is final: retrying cannot change what is stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from grading.classification import Classification
from grading.errors import InputError
from grading.incident import DISABLE_CONNECTOR, MessageError, RemediationMessage
from grading.remediation.ledger import ActionLedger
from grading.storage.incidents import IncidentLedger, stored_message
from grading.storage.store import GraderStore
from grading.text import safe_text

ROLLED_BACK = "rolledBack"


class MessageRefused(InputError):
    """A well-formed message that what is stored does not back; ``str(exc)`` says why."""


@dataclass
class StoredTruth:
    """The grader's store and incident ledger, and the runner's action ledger (for re-enables)."""

    store: GraderStore
    incidents: IncidentLedger
    actions: ActionLedger

    def check(self, msg: RemediationMessage) -> RemediationMessage:
        """The stored message for *msg*'s incident, to act on; raises :class:`MessageRefused`."""
        key = msg.incident_key
        entity = self.incidents.get(key)
        if entity is None:
            raise MessageRefused(f"no incident {key} in the incident ledger: no sweep graded it truePositive "
                                 "and enqueued it (a forged, foreign or expired message)")
        try:
            stored = stored_message(entity)
        except (MessageError, ValueError, TypeError) as exc:
            raise MessageRefused(f"the incident ledger's copy of {key} is unreadable ({exc})") from None
        ours, theirs = stored.to_dict(), msg.to_dict()
        differ = sorted(name for name in ours if ours[name] != theirs.get(name))
        if differ:
            raise MessageRefused(f"the message disagrees with the incident ledger on {', '.join(differ)}; "
                                 "only what the sweep stored is acted on")
        return self._still_true(stored, entity)

    def check_incident(self, incident_key: str) -> RemediationMessage:
        """The stored message of *incident_key* if what is stored still backs it (an operator's
        approval of a held action is checked again: the connector may have been re-graded since)."""
        entity = self.incidents.get(incident_key)
        if entity is None:
            raise MessageRefused(f"no incident {incident_key} in the incident ledger (removed by retention?)")
        try:
            stored = stored_message(entity)
        except (MessageError, ValueError, TypeError) as exc:
            raise MessageRefused(f"the incident ledger's copy of {incident_key} is unreadable ({exc})") from None
        return self._still_true(stored, entity)

    def _still_true(self, stored: RemediationMessage, entity: Any) -> RemediationMessage:
        key = stored.incident_key
        connector = safe_text(stored.connector, 200)
        row = self.store.verdict_row(stored.sweep_id, stored.connector)
        if row is None:
            raise MessageRefused(f"no stored verdict of {connector!r} in sweep {safe_text(stored.sweep_id, 120)}")
        if row.get("Classification") != Classification.TRUE_POSITIVE or row.get("IncidentKey") != key:
            raise MessageRefused(f"the stored verdict of {connector!r} in sweep {safe_text(stored.sweep_id, 120)} "
                                 f"is {row.get('Classification')} (incident {row.get('IncidentKey')}), not this "
                                 "truePositive incident")
        state = self.store.latest_state_of(stored.connector)
        if state is None:
            raise MessageRefused(f"no stored state for connector {connector!r} (removed by retention?)")
        if state.get("SuppressedIncidentKey") == key:
            raise MessageRefused(f"an analyst suppressed incident {key} ({safe_text(state.get('SuppressedBy'), 100)}"
                                 f": {safe_text(state.get('SuppressedReason'), 300)})")
        if state.get("IncidentKey") != key or state.get("Classification") != Classification.TRUE_POSITIVE:
            raise MessageRefused(f"stale: {connector!r} was graded {state.get('Classification')} since "
                                 f"(sweep {safe_text(state.get('SweepId'), 120)}, incident {state.get('IncidentKey')})")
        reenabled = self.reenabled_at(stored.connector)
        first_seen: datetime | None = entity.get("FirstSeen") or entity.get("ClaimedAt")
        if reenabled is not None and (first_seen is None or first_seen <= reenabled):
            raise MessageRefused(f"an operator re-enabled {connector!r} at {reenabled:%Y-%m-%dT%H:%M:%SZ}, after "
                                 "this incident was graded; only an incident a later sweep grades disables it again")
        return stored

    def reenabled_at(self, connector: str) -> datetime | None:
        """When an operator last re-enabled *connector* (``python -m grading reenable``), if ever."""
        # Any spelling: Exchange resolves connector names case-insensitively, so does an operator's reenable.
        times = [e.finished_at for e in self.actions.find("enforce", action=DISABLE_CONNECTOR)
                 if e.action.connector.casefold() == connector.casefold()
                 and e.state == ROLLED_BACK and e.finished_at is not None]
        return max(times) if times else None
