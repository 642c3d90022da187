"""What a remediation message asks for, turned into concrete actions with stable keys, and how each
action is performed and confirmed.

Why every action has a *confirm* beside its *perform*: the runner records an action's key before
and after performing it. If the process dies in between, the next delivery of the message finds
the key "started" but not "done", and asks the service whether the action took effect (the
connector reads back disabled, the admin's ``signInSessionsValidFromDateTime`` moved past the
start, the alert carries our comment) instead of acting twice. Where the service cannot tell
(``None``), the action is one that is harmless to repeat.

The action id is a hash of (incident, action, target): the same incident always yields the same
ids, so a redelivered message, a retry and an operator's ``approve ACTION_ID`` all name one action.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from grading.classification import Classification
from grading.cloud.http import ErrorKind, ServiceCallError
from grading.incident import (
    DISABLE_ADMIN_ACCOUNT,
    DISABLE_CONNECTOR,
    DISABLE_TRANSPORT_RULE,
    REMOVE_CONNECTOR,
    REQUIRE_ADMIN_PASSWORD_CHANGE,
    RESWEEP,
    REVERT_CONNECTOR_CHANGE,
    REVOKE_ADMIN_SESSIONS,
    UPDATE_ALERTS,
    RemediationMessage,
)
from grading.remediation.exchange import Connector, ExchangeClient, rule_enabled
from grading.remediation.graph import GraphClient
from grading.settings import RemediationSettings
from grading.text import safe_text

CONNECTOR_ACTIONS = frozenset({DISABLE_CONNECTOR, REMOVE_CONNECTOR, REVERT_CONNECTOR_CHANGE, DISABLE_TRANSPORT_RULE})
"""Actions on the connector itself, or on a transport rule linked to it: never for a protected connector."""
CAPPED_ACTIONS = frozenset({DISABLE_CONNECTOR, REMOVE_CONNECTOR, DISABLE_TRANSPORT_RULE})
"""Actions that take a connector out of service: bounded per hour (REMEDIATION_MAX_DISABLES_PER_HOUR)."""
ADMIN_ACTIONS = (REVOKE_ADMIN_SESSIONS, REQUIRE_ADMIN_PASSWORD_CHANGE, DISABLE_ADMIN_ACCOUNT)
MAX_PREVIOUS_CHARS = 20_000
"""A revert's previous values are recorded with the action (one Table property); beyond this, by hand."""
CLOCK_SKEW = timedelta(minutes=5)
"""Tolerance between this host's clock and Entra ID's when reading back a session revocation."""

OPT_IN: dict[str, tuple[str, str]] = {
    REMOVE_CONNECTOR: ("allow_remove", "REMEDIATION_ALLOW_REMOVE"),
    REVERT_CONNECTOR_CHANGE: ("allow_revert", "REMEDIATION_ALLOW_REVERT"),
    REVOKE_ADMIN_SESSIONS: ("revoke_sessions", "REMEDIATION_REVOKE_SESSIONS"),
    REQUIRE_ADMIN_PASSWORD_CHANGE: ("require_password_change", "REMEDIATION_REQUIRE_PASSWORD_CHANGE"),
    DISABLE_ADMIN_ACCOUNT: ("disable_account", "REMEDIATION_DISABLE_ACCOUNT"),
    UPDATE_ALERTS: ("alert_writeback", "REMEDIATION_ALERT_WRITEBACK"),
    RESWEEP: ("resweep", "REMEDIATION_RESWEEP"),
}


@dataclass(frozen=True)
class PlannedAction:
    """One action on one target for one incident."""

    action: str
    incident_key: str
    connector: str
    connector_type: str
    target: str
    """Connector name, admin object id (or UPN), alert id, or ``allConnectors``."""
    sweep_id: str = ""
    label: str = ""
    """How to show the target to people (an admin's UPN)."""
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def action_id(self) -> str:
        digest = hashlib.sha256(
            "\x1f".join((self.incident_key, self.action, self.target)).encode("utf-8", "surrogatepass")
        ).hexdigest()
        return f"{self.action}-{digest[:20]}"

    @property
    def touches_connector(self) -> bool:
        return self.action in CONNECTOR_ACTIONS

    @property
    def capped(self) -> bool:
        return self.action in CAPPED_ACTIONS

    def describe(self) -> str:
        who = self.label or self.target
        return f"{self.action} {safe_text(who, 120)!s}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"params": dict(self.params)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PlannedAction:
        return cls(**{k: doc[k] for k in ("action", "incident_key", "connector", "connector_type", "target",
                                          "sweep_id", "label")}, params=dict(doc.get("params") or {}))


@dataclass(frozen=True)
class Refusal:
    action: PlannedAction
    reason: str


PreviousLookup = Callable[[RemediationMessage], tuple[str, tuple[str, ...], str] | None]
"""(address parameter, previous values, where they came from) for a changed connector, or None."""


def plan_actions(
    msg: RemediationMessage, settings: RemediationSettings, *, previous: PreviousLookup | None = None,
) -> tuple[list[PlannedAction], list[Refusal]]:
    """The actions to run for *msg* under *settings*, in a safe order (disable before remove), and
    the requested ones that settings or missing facts refuse (audited as refused)."""
    base = {"incident_key": msg.incident_key, "connector": msg.connector, "connector_type": msg.connector_type,
            "sweep_id": msg.sweep_id}
    requested = set(msg.requested_actions)
    planned: list[PlannedAction] = []
    refused: list[Refusal] = []

    def opted_in(action: PlannedAction) -> bool:
        if action.action in OPT_IN:
            attr, env = OPT_IN[action.action]
            if not getattr(settings, attr):
                refused.append(Refusal(action, f"not opted in: set {env}=true to allow it"))
                return False
        return True

    connector_target = {**base, "target": msg.connector, "label": msg.connector}
    if DISABLE_CONNECTOR in requested:
        planned.append(PlannedAction(DISABLE_CONNECTOR, **connector_target))
    removing = False
    if REMOVE_CONNECTOR in requested:
        action = PlannedAction(REMOVE_CONNECTOR, **connector_target)
        removing = opted_in(action)
        if removing:
            planned.append(action)
    if REVERT_CONNECTOR_CHANGE in requested:
        action = PlannedAction(REVERT_CONNECTOR_CHANGE, **connector_target)
        if removing:
            refused.append(Refusal(action, "the connector is removed instead"))
        elif opted_in(action):
            # The values to restore come from the inventory, never from the message (a forged one
            # would choose the connector's new addresses).
            found = previous(msg) if previous is not None else None
            if found is None:
                refused.append(Refusal(action, "no configuration from before the change is known (no "
                                       "inventory snapshot older than the change); revert it by hand"))
            elif sum(len(v) + 4 for v in found[1]) > MAX_PREVIOUS_CHARS:
                refused.append(Refusal(action, f"the previous {found[0]} hold {len(found[1])} values, too many "
                                       "to record with the action; revert it by hand"))
            else:
                parameter, values, source = found
                planned.append(PlannedAction(REVERT_CONNECTOR_CHANGE, **connector_target,
                                             params={"parameter": parameter, "values": list(values),
                                                     "source": source}))
    if DISABLE_TRANSPORT_RULE in requested:
        # The rules come from the verdict's findings as the sweep stored them (the runner plans from the
        # incident ledger's copy of the message), never from a message alone.
        for rule in msg.evidence_summary.get("transportRules") or ():
            if isinstance(rule, str) and rule:
                planned.append(PlannedAction(DISABLE_TRANSPORT_RULE, **base, target=rule,
                                             label=f"transport rule {rule}", params={"rule": rule}))
    compromised = [a for a in msg.admins if a.compromised]
    for name in ADMIN_ACTIONS:
        if name not in requested:
            continue
        if not compromised:
            probe = PlannedAction(name, **base, target="(no admin)")
            refused.append(Refusal(probe, "no admin in the message has compromise signals"))
            continue
        for admin in compromised:
            action = PlannedAction(name, **base, target=admin.object_id or admin.upn,
                                   label=admin.upn or admin.object_id,
                                   params={"signals": list(admin.compromise_signals)})
            if opted_in(action):
                planned.append(action)
    if UPDATE_ALERTS in requested:
        for alert_id in msg.alert_ids:
            action = PlannedAction(UPDATE_ALERTS, **base, target=alert_id, label=f"alert {alert_id}",
                                   params={"determination": msg.determination, "score": msg.score,
                                           "findings": _finding_lines(msg)})
            if opted_in(action):
                planned.append(action)
    if RESWEEP in requested:
        action = PlannedAction(RESWEEP, **base, target="allConnectors", label="all connectors")
        if opted_in(action):
            planned.append(action)
    return planned, refused


def _finding_lines(msg: RemediationMessage) -> list[str]:
    findings = msg.evidence_summary.get("findings") or []
    return [safe_text(f.get("summary", ""), 300) for f in findings[:5] if isinstance(f, Mapping)]


# ---------------------------------------------------------------------------------------------
# Performing and confirming


@dataclass
class ActionClients:
    """What the executors act through; each is None where it is not configured."""

    exchange: ExchangeClient | None = None
    graph: GraphClient | None = None
    request_sweep: Callable[[PlannedAction], None] | None = None


def _exchange(services: ActionClients) -> ExchangeClient:
    if services.exchange is None:
        raise ServiceCallError(ErrorKind.BAD_REQUEST, "the Exchange Online client is not configured: set "
                           "EXCHANGE_TENANT_ID and EXCHANGE_ORGANIZATION_DOMAIN", service="Exchange Online")
    return services.exchange


def _graph(services: ActionClients) -> GraphClient:
    if services.graph is None:
        raise ServiceCallError(ErrorKind.BAD_REQUEST, "the Microsoft Graph client is not configured",
                           service="Microsoft Graph")
    return services.graph


def _find(services: ActionClients, action: PlannedAction) -> Connector | None:
    exchange = _exchange(services)
    if action.connector_type in ("Inbound", "Outbound"):
        return exchange.get_connector(action.connector_type, action.connector)
    found = exchange.find_connector(action.connector)
    if len(found) > 1:
        raise ServiceCallError(ErrorKind.BAD_REQUEST, f"an inbound and an outbound connector are both named "
                           f"{safe_text(action.connector, 200)!r} and the verdict does not say which; act by hand",
                           service="Exchange Online")
    return found[0] if found else None


def _existing(services: ActionClients, action: PlannedAction) -> Connector:
    connector = _find(services, action)
    if connector is None:
        raise ServiceCallError(ErrorKind.NOT_FOUND, f"no connector named {safe_text(action.connector, 200)!r} in "
                           "Exchange Online (renamed or removed since the sweep?); check Get-InboundConnector "
                           "and Get-OutboundConnector", service="Exchange Online")
    return connector


def _read_back_failed(what: str) -> ServiceCallError:
    return ServiceCallError(ErrorKind.UNAVAILABLE, f"{what}; the queue retries the message", service="Exchange Online")


def snapshot(connector: Connector) -> dict[str, Any]:
    """What to keep of a connector before changing it, so a person can restore it."""
    keep = ("Name", "Identity", "Enabled", "ConnectorType", "SenderIPAddresses", "SenderDomains", "SmartHosts",
            "RecipientDomains", "TlsSenderCertificateName", "RestrictDomainsToIPAddresses", "RequireTls",
            "UseMXRecord", "TlsSettings", "TlsDomain", "Comment")
    return {k: connector.raw[k] for k in keep if k in connector.raw}


def confirm(action: PlannedAction, services: ActionClients, started_at: datetime | None) -> bool | None:
    """Whether *action* is already in effect (True), not (False), or the service cannot tell (None)."""
    name = action.action
    if name == DISABLE_CONNECTOR:
        return not _existing(services, action).enabled
    if name == REMOVE_CONNECTOR:
        return _find(services, action) is None
    if name == REVERT_CONNECTOR_CHANGE:
        return set(_existing(services, action).addresses) == set(action.params["values"])
    if name == DISABLE_TRANSPORT_RULE:
        rule = _exchange(services).get_transport_rule(action.params["rule"])
        return rule is None or not rule_enabled(rule)
    if name == REVOKE_ADMIN_SESSIONS:
        if started_at is None:
            return None
        try:
            valid_from = _graph(services).sessions_valid_from(action.target)
        except ServiceCallError as err:
            # Reading signInSessionsValidFromDateTime needs User.Read.All, which revoking alone does
            # not grant: without it the service cannot tell, and revoking again is harmless.
            if err.kind is ErrorKind.PERMISSION:
                return None
            raise
        return valid_from is not None and valid_from >= started_at - CLOCK_SKEW
    if name == DISABLE_ADMIN_ACCOUNT:
        return _graph(services).get_user(action.target).get("accountEnabled") is False
    if name == UPDATE_ALERTS:
        alert = _graph(services).get_alert(action.target)
        return alert.get("classification") == Classification.TRUE_POSITIVE and _has_comment(alert, action)
    return None  # password change, re-sweep: harmless to repeat


def perform(action: PlannedAction, services: ActionClients) -> dict[str, Any]:
    """Do *action* and verify it by reading back; the facts to record. Raises :class:`ServiceCallError`."""
    name = action.action
    if name == DISABLE_CONNECTOR:
        connector = _existing(services, action)
        exchange = _exchange(services)
        exchange.set_connector(connector.kind, connector.name, Enabled=False)
        after = exchange.get_connector(connector.kind, connector.name)
        if after is None or after.enabled:
            raise _read_back_failed(f"Set-{connector.kind}Connector answered, but the connector still reads "
                                    "back enabled")
        return {"kind": connector.kind, "wasEnabled": connector.enabled, "before": snapshot(connector)}
    if name == REMOVE_CONNECTOR:
        connector = _existing(services, action)
        exchange = _exchange(services)
        try:
            exchange.remove_connector(connector.kind, connector.name)
        except ServiceCallError as err:
            # A retried Remove- whose first attempt went through finds nothing to remove.
            if err.kind is not ErrorKind.NOT_FOUND:
                raise
        if exchange.get_connector(connector.kind, connector.name) is not None:
            raise _read_back_failed(f"Remove-{connector.kind}Connector answered, but the connector still exists")
        return {"kind": connector.kind, "removed": snapshot(connector)}
    if name == REVERT_CONNECTOR_CHANGE:
        connector = _existing(services, action)
        parameter, values = Connector.address_parameter(connector.kind), list(action.params["values"])
        exchange = _exchange(services)
        exchange.set_connector(connector.kind, connector.name, **{parameter: values})
        after = exchange.get_connector(connector.kind, connector.name)
        if after is None or set(after.addresses) != set(values):
            raise _read_back_failed(f"Set-{connector.kind}Connector answered, but {parameter} does not read back "
                                    "as restored")
        return {"kind": connector.kind, "parameter": parameter, "from": list(connector.addresses), "to": values,
                "source": action.params.get("source")}
    if name == DISABLE_TRANSPORT_RULE:
        exchange, rule_name = _exchange(services), action.params["rule"]
        exchange.set_transport_rule_enabled(rule_name, False)
        after = exchange.get_transport_rule(rule_name)
        if after is not None and rule_enabled(after):
            raise _read_back_failed("Disable-TransportRule answered, but the rule still reads back enabled")
        return {"rule": rule_name, "transportRule": True}
    if name == REVOKE_ADMIN_SESSIONS:
        _graph(services).revoke_sign_in_sessions(action.target)
        return {"user": action.label}
    if name == DISABLE_ADMIN_ACCOUNT:
        graph = _graph(services)
        graph.disable_account(action.target)
        if graph.get_user(action.target).get("accountEnabled") is not False:
            raise ServiceCallError(ErrorKind.UNAVAILABLE, "the account still reads back enabled; the queue retries",
                               service="Microsoft Graph")
        return {"user": action.label}
    if name == REQUIRE_ADMIN_PASSWORD_CHANGE:
        _graph(services).require_password_change(action.target)
        return {"user": action.label}
    if name == UPDATE_ALERTS:
        graph = _graph(services)
        graph.classify_alert(action.target, classification=Classification.TRUE_POSITIVE,
                             determination=action.params.get("determination"))
        if not _has_comment(graph.get_alert(action.target), action):
            graph.comment_alert(action.target, alert_comment(action))
        return {"alert": action.target}
    if name == RESWEEP:
        if services.request_sweep is None:
            raise ServiceCallError(ErrorKind.BAD_REQUEST, "no sweep trigger is configured", service="sweep")
        services.request_sweep(action)
        return {}
    raise ValueError(f"no executor for {name}")


def marker(action: PlannedAction) -> str:
    return f"[connector-grader {action.action_id}]"


def _has_comment(alert: Mapping[str, Any], action: PlannedAction) -> bool:
    comments = alert.get("comments") or []
    return any(isinstance(c, Mapping) and marker(action) in str(c.get("comment") or "") for c in comments)


def alert_comment(action: PlannedAction) -> str:
    """The evidence comment written to a linked alert (plain text; attacker strings made printable)."""
    lines = [
        f"{marker(action)} Graded truePositive ({action.params.get('determination') or 'no determination'}, "
        f"score {action.params.get('score')}) for connector {safe_text(action.connector, 200)!r}; incident "
        f"{action.incident_key}, sweep {safe_text(action.sweep_id, 80)}.",
    ]
    lines += [f"- {line}" for line in action.params.get("findings") or []]
    return "\n".join(lines)[:4000]
