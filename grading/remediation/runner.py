"""The remediation runner: one queue message (one TP incident) in, recorded actions out.

For each message: validate it (a bad one is recorded with its reason on every try and re-raised,
so the host retries it and finally moves it to the poison queue: never lost, never half-applied);
check it against what is stored (:mod:`grading.remediation.truth`: the incident ledger, the
stored verdict, the connector's latest state, operators' re-enables): a message what is stored
does not back is refused, audited and completed (not retried); otherwise act on the *stored*
message, never on the one received. Plan the requested actions the settings allow; then for each
action:

1. the ledger says it is done (a redelivered message) -> nothing is done again;
2. a protected connector (checked against the connector(s) the action would really touch: an
   ``Unknown`` type is resolved in Exchange) -> refused; an operator's denial or roll-back -> refused;
3. **report mode** -> recorded as "would perform", nothing is called;
4. the service already shows it in effect (confirm) -> recorded, not repeated: this is also how a
   crash between an action and its record is recovered;
5. a disable/remove past the hourly cap -> held in the pending-approval table;
6. else the key is recorded ``started``, the action performed and read back, the audit written,
   and the key recorded ``done``.

Every outcome is audited and the incident is notified to the webhook. Failures worth retrying
(throttling, an unavailable service, a missing permission someone can grant) make the function
fail at the end, after the other actions ran, so the queue redelivers the message; done actions
are skipped on that retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from grading.cloud.http import ErrorKind, ServiceCallError
from grading.errors import ServiceError
from grading.incident import (
    DISABLE_CONNECTOR,
    DISABLE_TRANSPORT_RULE,
    MessageError,
    RemediationMessage,
    parse_message,
)
from grading.remediation.actions import ActionClients, PlannedAction, confirm, perform, plan_actions
from grading.remediation.approved_config import approved_addresses
from grading.remediation.audit import (
    ALREADY_DONE,
    ALREADY_IN_EFFECT,
    APPROVED,
    DENIED,
    FAILED,
    HELD,
    PERFORMED,
    REENABLED,
    REFUSED,
    STILL_HELD,
    WOULD_PERFORM,
    AuditLog,
    Request,
)
from grading.remediation.exchange import KINDS, rule_enabled
from grading.remediation.inventory import ConnectorInventory
from grading.remediation.ledger import ActionLedger, LedgerEntry
from grading.remediation.notify import (
    Line,
    WebhookNotifier,
    decision_text,
    incident_text,
    invalid_text,
    refused_text,
)
from grading.remediation.pending import DecisionError, HourlyCap, PendingApprovals
from grading.remediation.tables import RemediationTables
from grading.remediation.truth import MessageRefused, StoredTruth
from grading.settings import RemediationSettings
from grading.storage.approved import ApprovedConfigurations
from grading.storage.incidents import IncidentLedger
from grading.storage.store import GraderStore
from grading.text import safe_text

log = logging.getLogger("grading.remediation")

MAX_DEQUEUE_COUNT = 5
"""host.json ``extensions.queues.maxDequeueCount``: after this many tries the host moves a message
to ``<queue>-poison``. The runner uses it to say so in the audit and the notification."""
RETRY_KINDS = frozenset({ErrorKind.THROTTLED, ErrorKind.UNAVAILABLE, ErrorKind.PERMISSION,
                         ErrorKind.AUTHENTICATION})
"""Failures the queue should retry: they pass (throttling) or someone can fix them (a grant)."""
SUCCESS = frozenset({PERFORMED, ALREADY_IN_EFFECT, ALREADY_DONE})
NOTHING_NEW = frozenset({ALREADY_DONE, STILL_HELD})
"""Outcomes of a redelivered message that are not worth a second notification."""


# What became of one message, as ``remediate --once`` reports it.
MESSAGE_PERFORMED = "performed"
MESSAGE_REPORT_ONLY = "reportOnly"
MESSAGE_REFUSED = "refused"
MESSAGE_ALREADY_DONE = "alreadyDone"
MESSAGE_HELD = "held"
MESSAGE_FAILED = "failed"


@dataclass
class RunReport:
    message: RemediationMessage | None
    lines: list[Line] = field(default_factory=list)
    notified: bool = False
    refusal: str | None = None
    """Why the whole message was refused (what is stored does not back it); None if it was acted on."""

    def outcomes(self) -> dict[str, str]:
        """action id -> outcome."""
        return {line.action.action_id: line.outcome for line in self.lines}

    @property
    def outcome(self) -> str:
        """The message's outcome: failed > held > performed > reportOnly > alreadyDone > refused."""
        if self.refusal is not None:
            return MESSAGE_REFUSED
        got = {line.outcome for line in self.lines}
        for outcomes, result in (({FAILED}, MESSAGE_FAILED), ({HELD, STILL_HELD}, MESSAGE_HELD),
                                 ({PERFORMED, ALREADY_IN_EFFECT}, MESSAGE_PERFORMED),
                                 ({WOULD_PERFORM}, MESSAGE_REPORT_ONLY), ({ALREADY_DONE}, MESSAGE_ALREADY_DONE)):
            if got & outcomes:
                return result
        return MESSAGE_REFUSED

    @property
    def reason(self) -> str:
        if self.refusal is not None:
            return self.refusal
        return "; ".join(f"{line.action.action} {line.outcome}: {line.detail}" for line in self.lines)


class RemediationRetry(ServiceError):
    """Raised after all actions ran when one failed in a way a later try can fix."""

    def __init__(self, message: str, report: RunReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class Runner:
    def __init__(
        self,
        settings: RemediationSettings,
        *,
        tables: RemediationTables,
        store: GraderStore,
        services: ActionClients,
        notifier: WebhookNotifier | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_dequeue_count: int = MAX_DEQUEUE_COUNT,
        approvals: ApprovedConfigurations | None = None,
    ) -> None:
        self.settings = settings
        self.approvals = approvals
        self.services = services
        self.notifier = notifier
        self.now = now
        self.max_dequeue_count = max_dequeue_count
        self.audit = AuditLog(tables.audit)
        self.ledger = ActionLedger(tables.actions)
        self.pending = PendingApprovals(tables.pending)
        self.cap = HourlyCap(tables.pending, settings.max_disables_per_hour)
        self.inventory = ConnectorInventory(tables.inventory)
        self.truth = StoredTruth(store, IncidentLedger(store.tables.incidents), self.ledger)

    def previous_configuration(self, msg: RemediationMessage) -> tuple[str, tuple[str, ...], str] | None:
        """What a revert restores: the approved configuration when there is one, else the last inventory
        snapshot before the change; never a value the message carries."""
        if self.approvals is not None:
            found = approved_addresses(self.approvals, msg)
            if found is not None:
                return found
        return self.inventory.previous_addresses(msg)

    # -- the queue message ------------------------------------------------------------------------

    def handle(self, body: str | bytes, *, message_id: str = "", dequeue_count: int = 1) -> RunReport:
        """Process one queue message body (as the host hands it over: base64 already decoded)."""
        request = Request(message_id=message_id, dequeue_count=dequeue_count)
        try:
            msg = parse_message(body)
        except MessageError as exc:
            last = dequeue_count >= self.max_dequeue_count
            self.audit.invalid_message(str(exc), body, request=request, now=self.now(),
                                       max_dequeue_count=self.max_dequeue_count)
            log.error("remediation message %s (try %d of %d) is invalid: %s", safe_text(message_id, 80),
                      dequeue_count, self.max_dequeue_count, safe_text(str(exc), 500))
            if last or dequeue_count <= 1:
                self._notify(invalid_text(str(exc), message_id=message_id, dequeue_count=dequeue_count, last=last))
            raise
        try:
            return self._handle(msg, request)
        except RemediationRetry:
            raise
        except Exception as exc:  # audited before it propagates: no failure goes unrecorded
            reason = f"{type(exc).__name__}: {exc}"
            log.error("remediation message %s for incident %s failed: %s", safe_text(message_id, 80),
                      msg.incident_key, safe_text(reason, 500))
            try:  # best-effort: storage may be what failed, and the original error must surface
                self.audit.message(msg, FAILED, reason, mode=self.settings.mode, request=request, now=self.now())
            except Exception as audit_exc:
                log.error("remediation message %s: the failure could not be audited either: %s",
                          safe_text(message_id, 80), safe_text(f"{type(audit_exc).__name__}: {audit_exc}", 300))
            raise

    def _handle(self, received: RemediationMessage, request: Request) -> RunReport:
        try:
            msg = self.truth.check(received)
        except MessageRefused as exc:
            reason = str(exc)
            self.audit.message(received, REFUSED, reason, mode=self.settings.mode, request=request, now=self.now())
            log.warning("remediation message %s for incident %s refused: %s", safe_text(request.message_id, 80),
                        received.incident_key, safe_text(reason, 500))
            report = RunReport(received, refusal=reason)
            if request.dequeue_count <= 1:
                report.notified = self._notify(refused_text(reason, message_id=request.message_id,
                                                            incident_key=received.incident_key))
            return report
        report = RunReport(msg)
        planned, refusals = plan_actions(msg, self.settings, previous=self.previous_configuration)
        for refusal in refusals:
            report.lines.append(self._record(refusal.action, REFUSED, refusal.reason, request))
        retry: list[ServiceCallError] = []
        for action in planned:
            report.lines.append(self._run(action, request, retry))
        if any(line.outcome not in NOTHING_NEW for line in report.lines):
            report.notified = self._notify(incident_text(msg, report.lines, mode=self.settings.mode))
        if retry:
            raise RemediationRetry(
                f"incident {msg.incident_key}: {len(retry)} action(s) failed and will be retried by the queue "
                f"(try {request.dequeue_count} of {self.max_dequeue_count}): " + "; ".join(str(e) for e in retry),
                report,
            )
        return report

    def _record(self, action: PlannedAction, outcome: str, detail: str, request: Request) -> Line:
        self.audit.action(action, outcome, detail, mode=self.settings.mode, request=request, now=self.now())
        log.info("remediation %s %s: %s %s", outcome, action.action_id, action.describe(), safe_text(detail, 300))
        return Line(action, outcome, detail)

    def _run(self, action: PlannedAction, request: Request, retry: list[ServiceCallError], *,
             approved_by: str | None = None) -> Line:
        mode = self.settings.mode
        entry = self.ledger.get(mode, action.action_id)
        if entry is not None and entry.state == "done":
            return self._record(action, ALREADY_DONE, f"done at {entry.finished_at:%Y-%m-%dT%H:%M:%SZ} "
                                f"({entry.outcome}); not repeated", request)
        if entry is not None and entry.state in ("denied", "rolledBack"):
            return self._record(action, REFUSED, f"an operator {entry.state} it: {entry.detail}", request)
        if entry is not None and entry.state == "held" and approved_by is None:
            return Line(action, STILL_HELD, "still waiting for approval")
        protected = self._protected(action) if action.touches_connector else None
        if protected:
            return self._record(action, REFUSED, f"the connector ({protected}) is on "
                                "REMEDIATION_PROTECTED_CONNECTORS; never touched", request)
        if mode == "report":
            detail = "report mode: nothing was changed; set REMEDIATION_MODE=enforce to act"
            if action.capped:
                detail += f" (at most {self.settings.max_disables_per_hour} disables per hour, the rest held)"
            self.ledger.transition(entry, mode, action, "done", now=self.now(), outcome=WOULD_PERFORM, detail=detail)
            return self._record(action, WOULD_PERFORM, detail, request)
        try:
            return self._enforce(action, entry, request, approved_by)
        except ServiceCallError as err:
            self.ledger.transition(self.ledger.get(mode, action.action_id), mode, action, "failed", now=self.now(),
                                   outcome=FAILED, detail=str(err))
            if err.kind in RETRY_KINDS:
                retry.append(err)
            log.error("remediation %s failed: %s", action.action_id, safe_text(str(err), 500))
            return self._record(action, FAILED, f"{err.kind.value}: {err}", request)

    def _protected(self, action: PlannedAction) -> str | None:
        """Which protected connector *action* would touch (``Kind:Name``), or None.

        A verdict's ``Unknown`` type names no kind, yet the action resolves the name in Exchange
        and touches whichever connector it finds: so protection is checked against what Exchange
        resolves (in report mode, where nothing is read, against both kinds)."""
        kinds: tuple[str, ...] = (action.connector_type,) if action.connector_type in KINDS else KINDS
        if action.connector_type not in KINDS and self.settings.mode != "report" and self.services.exchange:
            try:
                found = tuple(c.kind for c in self.services.exchange.find_connector(action.connector))
            except ServiceCallError:
                found = ()  # cannot tell: both kinds
            kinds = found or KINDS
        for kind in kinds:
            if self.settings.protects(action.connector, kind):
                return f"{kind}:{safe_text(action.connector, 200)}"
        return None

    def _enforce(self, action: PlannedAction, entry: LedgerEntry | None, request: Request,
                 approved_by: str | None) -> Line:
        mode = self.settings.mode
        interrupted = entry is not None and entry.state in ("started", "failed")
        in_effect = confirm(action, self.services, entry.started_at if entry is not None else None)
        if in_effect:
            if interrupted:
                outcome, detail = PERFORMED, "confirmed by read-back after an interrupted attempt; not repeated"
            else:
                outcome, detail = ALREADY_IN_EFFECT, "the service already shows it in effect; nothing to do"
            line = self._record(action, outcome, detail, request)
            self.ledger.transition(entry, mode, action, "done", now=self.now(), outcome=outcome, detail=detail)
            return line
        if action.capped and approved_by is None and not self.cap.claim(action.connector, now=self.now()):
            reason = (f"over the cap of {self.settings.max_disables_per_hour} connectors disabled per hour "
                      f"(REMEDIATION_MAX_DISABLES_PER_HOUR); approve with `python -m grading approve "
                      f"{action.action_id}`")
            self.pending.hold(action, reason, now=self.now())
            self.ledger.transition(entry, mode, action, "held", now=self.now(), outcome=HELD, detail=reason)
            return self._record(action, HELD, reason, request)
        entry = self.ledger.transition(entry, mode, action, "started", now=self.now(), start=True,
                                       detail=f"by {approved_by}" if approved_by else "")
        facts = perform(action, self.services)
        detail = _performed_detail(action, facts, approved_by)
        line = self._record(action, PERFORMED, detail, request)
        self.ledger.transition(entry, mode, action, "done", now=self.now(), outcome=PERFORMED, detail=detail,
                               facts=facts)
        return line

    # -- operators --------------------------------------------------------------------------------

    def approve(self, action_id: str, *, by: str) -> Line:
        """Release a held action and perform it now (past the cap: a person decided)."""
        if self.settings.mode != "enforce":
            raise DecisionError("REMEDIATION_MODE is report: nothing is performed; set REMEDIATION_MODE=enforce "
                                "to approve held actions")
        waiting = self.pending.get(action_id)
        if waiting is not None and waiting.status in ("pending", "failed"):  # still to decide
            try:  # held for a while: the incident must still be what is stored
                self.truth.check_incident(waiting.action.incident_key)
            except MessageRefused as exc:
                raise DecisionError(f"{exc}; nothing was done: deny it with `python -m grading deny "
                                    f"{action_id}`") from None
        held = self.pending.decide(action_id, APPROVED, by=by, now=self.now())
        request = Request(actor=f"operator {by}")
        self._record(held.action, APPROVED, f"approved by {by}", request)
        retry: list[ServiceCallError] = []
        line = self._run(held.action, request, retry, approved_by=by)
        self.pending.settle(held, "done" if line.outcome in SUCCESS else "failed", now=self.now(), note=line.detail)
        self._notify(decision_text(held.action, line.outcome, line.detail, by=by))
        return line

    def deny(self, action_id: str, *, by: str, reason: str = "") -> Line:
        held = self.pending.decide(action_id, DENIED, by=by, now=self.now(), note=reason)
        detail = f"denied by {by}" + (f": {reason}" if reason else "")
        entry = self.ledger.get(self.settings.mode, action_id)
        self.ledger.transition(entry, self.settings.mode, held.action, "denied", now=self.now(), outcome=DENIED,
                               detail=detail)
        line = self._record(held.action, DENIED, detail, Request(actor=f"operator {by}"))
        self._notify(decision_text(held.action, DENIED, detail, by=by))
        return line

    def reenable(self, connector: str, *, by: str, kind: str | None = None) -> Line:
        """Roll back the grader's disable of *connector*: enable it again and read it back."""
        entries = [e for e in self.ledger.find("enforce", action=DISABLE_CONNECTOR, connector=connector)
                   if e.state == "done"]
        ours = [e for e in entries if e.outcome == PERFORMED]
        if entries and not ours and kind is None:
            raise DecisionError(f"connector {safe_text(connector, 200)!r} was already disabled when the grader "
                                "looked; it did not disable it, so it does not re-enable it (pass --type to force)")
        if not ours and kind is None:
            raise DecisionError(f"no disable of connector {safe_text(connector, 200)!r} is recorded; pass --type "
                                "Inbound or Outbound to re-enable it anyway")
        kind = kind or str(ours[0].facts.get("kind") or ours[0].action.connector_type)
        if kind not in KINDS:
            raise DecisionError(f"unknown connector kind {kind!r}; pass --type Inbound or Outbound")
        exchange = self.services.exchange
        if exchange is None:
            raise DecisionError("the Exchange Online client is not configured: set EXCHANGE_TENANT_ID and "
                                "EXCHANGE_ORGANIZATION_DOMAIN")
        action = ours[0].action if ours else PlannedAction(
            DISABLE_CONNECTOR, incident_key="manual", connector=connector, connector_type=kind, target=connector,
            label=connector)
        exchange.set_connector(kind, connector, Enabled=True)
        after = exchange.get_connector(kind, connector)
        if after is None or not after.enabled:
            raise DecisionError(f"Set-{kind}Connector answered, but the connector does not read back enabled")
        detail = f"re-enabled by {by}; read back Enabled=True"
        # Recorded in the ledger even when the grader did not disable it: the runner refuses to
        # disable it again for any incident graded before this moment (truth.StoredTruth).
        for e in ours or [self.ledger.get("enforce", action.action_id)]:
            self.ledger.transition(e, "enforce", e.action if e else action, "rolledBack", now=self.now(),
                                   outcome=REENABLED, detail=detail)
        line = self._record(action, REENABLED, detail, Request(actor=f"operator {by}"))
        self._notify(decision_text(action, REENABLED, detail, by=by))
        return line

    def reenable_rule(self, rule: str, *, by: str) -> Line:
        """Roll back the grader's disable of transport rule *rule*: enable it again and read it back."""
        entries = [e for e in self._rule_entries(rule) if e.state == "done" and e.outcome == PERFORMED]
        if not entries:
            raise DecisionError(f"no disable of transport rule {safe_text(rule, 200)!r} by the grader is recorded")
        exchange = self.services.exchange
        if exchange is None:
            raise DecisionError("the Exchange Online client is not configured: set EXCHANGE_TENANT_ID and "
                                "EXCHANGE_ORGANIZATION_DOMAIN")
        exchange.set_transport_rule_enabled(rule, True)
        after = exchange.get_transport_rule(rule)
        if after is None or not rule_enabled(after):
            raise DecisionError("Enable-TransportRule answered, but the rule does not read back enabled")
        detail = f"re-enabled by {by}; read back State=Enabled"
        for e in entries:
            self.ledger.transition(e, "enforce", e.action, "rolledBack", now=self.now(), outcome=REENABLED,
                                   detail=detail)
        line = self._record(entries[0].action, REENABLED, detail, Request(actor=f"operator {by}"))
        self._notify(decision_text(entries[0].action, REENABLED, detail, by=by))
        return line

    def _rule_entries(self, rule: str) -> list[LedgerEntry]:
        return [e for e in self.ledger.of_action("enforce", DISABLE_TRANSPORT_RULE) if e.action.target == rule]

    # -- notifications ----------------------------------------------------------------------------

    def _notify(self, text: str) -> bool:
        """Post *text*; a failure is logged, never fails the remediation (it would re-run actions)."""
        if self.notifier is None:
            return False
        try:
            self.notifier.send(text)
        except ServiceCallError as err:
            log.error("remediation notification failed: %s", safe_text(str(err), 500))
            return False
        return True


def _performed_detail(action: PlannedAction, facts: dict[str, object], approved_by: str | None) -> str:
    parts = []
    if action.action == DISABLE_CONNECTOR:
        parts.append(f"Set-{facts.get('kind')}Connector -Enabled $false; read back disabled")
    elif facts.get("transportRule"):
        parts.append(f"Disable-TransportRule {safe_text(str(facts.get('rule')), 200)!r}; read back disabled")
    elif "parameter" in facts:
        parts.append(f"{facts['parameter']} restored from {facts.get('source')}; read back")
    elif "removed" in facts:
        parts.append(f"Remove-{facts.get('kind')}Connector; read back gone (its settings are in the ledger)")
    else:
        parts.append({
            "revokeAdminSessions": "revokeSignInSessions: every refresh token and session of the admin is void",
            "disableAdminAccount": "accountEnabled false; read back disabled",
            "requireAdminPasswordChange": "forceChangePasswordNextSignIn set",
            "updateAlerts": "classification, determination and an evidence comment written",
            "resweep": "immediate sweep of all connectors requested",
        }.get(action.action, "done"))
    if approved_by:
        parts.append(f"approved by {approved_by}")
    return "; ".join(parts)


# -- one pass over the queue (``python -m grading remediate --once``) ----------------------------------

ONCE_VISIBILITY = 300
"""Seconds a message received by ``remediate --once`` stays invisible: a retryable failure comes
back after it (to the next pass or the Functions trigger)."""


@dataclass(frozen=True)
class QueueOutcome:
    """What became of one queue message in one pass."""

    message_id: str
    connector: str
    incident_key: str
    outcome: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"messageId": self.message_id, "connector": self.connector, "incidentKey": self.incident_key,
                "outcome": self.outcome, "reason": self.reason}


def process_queue(runner: Runner, queue: Any, poison: Any, *, limit: int = 1000,
                  unwrap: Callable[[str | bytes], str | bytes | None] | None = None) -> list[QueueOutcome]:
    """Hand every message on *queue* now to :meth:`Runner.handle`, as the Functions trigger would:
    a handled or refused message is deleted; a retryable failure stays (visible again after
    :data:`ONCE_VISIBILITY`); an invalid message stays until its last try, then moves to *poison*.
    *queue* and *poison* are azure-storage-queue ``QueueClient``s reading the wire text as sent.
    *unwrap* takes a queue message's body to the remediation message this runner handles, or None for
    a message that is not its own (another tenant's): that one is put back, its dequeue count unspent."""
    results: list[QueueOutcome] = []
    seen: set[str] = set()
    others: list[Any] = []  # not this runner's: put back once the pass is over
    for received in queue.receive_messages(messages_per_page=16, visibility_timeout=ONCE_VISIBILITY):
        if received.id in seen or len(results) >= limit:
            break
        seen.add(received.id)
        body = received.content if isinstance(received.content, str | bytes) else str(received.content)
        if unwrap is not None:
            try:
                inner = unwrap(body)
            except MessageError:
                inner = body  # the runner refuses and audits it below, as the trigger would
            if inner is None:
                others.append(received)
                continue
            body = inner
        try:
            report = runner.handle(body, message_id=received.id, dequeue_count=received.dequeue_count)
        except MessageError as exc:
            if received.dequeue_count >= runner.max_dequeue_count:
                poison.send_message(body)
                queue.delete_message(received)
            results.append(QueueOutcome(received.id, "", "", MESSAGE_REFUSED, f"invalid message: {exc}"))
            continue
        except RemediationRetry as exc:
            report = exc.report or RunReport(None)
            msg = report.message
            results.append(QueueOutcome(received.id, msg.connector if msg else "", msg.incident_key if msg else "",
                                        MESSAGE_FAILED, safe_text(str(exc), 2000)))
            continue
        except Exception as exc:  # audited by handle; left for the next try
            results.append(QueueOutcome(received.id, "", "", MESSAGE_FAILED,
                                        safe_text(f"{type(exc).__name__}: {exc}", 2000)))
            continue
        queue.delete_message(received)
        msg = report.message
        results.append(QueueOutcome(received.id, msg.connector if msg else "", msg.incident_key if msg else "",
                                    report.outcome, safe_text(report.reason, 2000)))
    for received in others:
        # Put back as a new message rather than made visible again: every receive counts towards the
        # host's maxDequeueCount, and another tenant's incident must not reach the poison queue unrun.
        queue.send_message(received.content)
        queue.delete_message(received)
    return results
