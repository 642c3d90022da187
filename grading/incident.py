"""The remediation queue message: one per true-positive incident (docs/architecture.md, "Remediation message").

Why a module of its own: the sweep (producer) and the queue-triggered runner (consumer) run in
different invocations, possibly different versions of the app, and anyone with queue access can
write to the queue. So the schema is built, bounded and validated in one place, and the runner
acts only on a message that :func:`parse_message` accepted: a malformed or unknown-version message
raises :class:`MessageError` with a reason the runner records, never a half-understood action.

Wire format: the JSON object below, base64-encoded, because the Functions host's queue trigger
expects base64 (host.json ``messageEncoding: base64``)::

    {"schemaVersion": 1, "sweepId", "incidentKey", "connector", "connectorType", "classification",
     "determination", "score", "admins": [{"objectId", "upn", "compromiseSignals": [...]}],
     "alertIds", "requestedActions": [...], "evidenceSummary"}

Sizes are bounded on build (lists cut, long strings trimmed, with the cut noted in
``evidenceSummary``) so a message always fits the 64 KiB queue message limit after base64.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grading.classification import Classification
from grading.errors import InputError

SCHEMA_VERSION = 1

# What the runner may be asked to do. The runner still applies its own opt-ins and safety limits
# (report mode, protected connectors, hourly cap): a request is not a permission.
DISABLE_CONNECTOR = "disableConnector"
REMOVE_CONNECTOR = "removeConnector"
REVERT_CONNECTOR_CHANGE = "revertConnectorChange"
REVOKE_ADMIN_SESSIONS = "revokeAdminSessions"
REQUIRE_ADMIN_PASSWORD_CHANGE = "requireAdminPasswordChange"  # noqa: S105 (an action name)
DISABLE_ADMIN_ACCOUNT = "disableAdminAccount"
UPDATE_ALERTS = "updateAlerts"
RESWEEP = "resweep"
DISABLE_TRANSPORT_RULE = "disableTransportRule"
ACTIONS: tuple[str, ...] = (
    DISABLE_CONNECTOR, REMOVE_CONNECTOR, REVERT_CONNECTOR_CHANGE, REVOKE_ADMIN_SESSIONS,
    REQUIRE_ADMIN_PASSWORD_CHANGE, DISABLE_ADMIN_ACCOUNT, UPDATE_ALERTS, RESWEEP, DISABLE_TRANSPORT_RULE,
)
RULE_FINDINGS = ("transport_rule_same_actor",)
"""Findings whose transport rule a true positive disables (``evidenceSummary.transportRules``)."""

CONNECTOR_TYPES = ("Inbound", "Outbound", "Unknown")

# Compromise signals of an admin, derived from the findings the grader weighed in the verdict.
SIGNAL_SUCCESSFUL_BURST = "failedLogonBurstThenSuccess"
SIGNAL_FAILED_BURST = "failedLogonBurst"
SIGNAL_NEW_LOCATION = "logonFromNewLocation"
SIGNAL_HOSTING_PROVIDER = "changeFromHostingProvider"
SIGNAL_SESSION_ELSEWHERE = "changeWithoutInteractiveSignIn"

SIGNAL_OF_FINDING = {
    "admin_burst_then_success": SIGNAL_SUCCESSFUL_BURST,
    "change_after_compromise": SIGNAL_SUCCESSFUL_BURST,
    "admin_logon_new_location": SIGNAL_NEW_LOCATION,
    "change_from_hosting_provider": SIGNAL_HOSTING_PROVIDER,
    "change_without_sign_in": SIGNAL_SESSION_ELSEWHERE,
}
"""The grader's adminCompromise findings (their ``rule``) that make an admin's account a remediation
target. The admin evidence alone does not: it lists every burst and new place, including travel the
grader explained and a compromise after the admin's change, which do not belong to this incident."""

# Azure Queue Storage accepts at most 64 KiB per message (the base64 text counts).
MAX_WIRE_BYTES = 64 * 1024
MAX_ADMINS = 20
MAX_ALERT_IDS = 50
MAX_SIGNALS = 10
MAX_SHORT = 256        # ids, UPNs, signals, determination
MAX_CONNECTOR = 1024   # a Table key holds at most 1 KiB; names come from telemetry an attacker writes
MAX_SUMMARY_TEXT = 500
MAX_SUMMARY_FINDINGS = 10
MAX_SUMMARY_SAMPLE = 20
MAX_BODY_CHARS = MAX_WIRE_BYTES
"""A body longer than the queue allows did not come from the sweep: refused before any parsing."""
MAX_DEPTH = 16
"""Nesting the schema needs is 4 (``evidenceSummary.neverSeenRecipientDomains.sample``); a deeper
body is refused before :func:`json.loads`, whose recursion a few thousand brackets would exhaust."""

_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_FIELDS = (
    "schemaVersion", "sweepId", "incidentKey", "connector", "connectorType", "classification",
    "determination", "score", "admins", "alertIds", "requestedActions", "evidenceSummary",
)
_ADMIN_FIELDS = ("objectId", "upn", "compromiseSignals")


class MessageError(InputError, ValueError):
    """A message that must not be acted on; ``str(exc)`` says why (recorded by the runner)."""


@dataclass(frozen=True)
class Admin:
    """An admin who changed the connector, and why the grader thinks the account is compromised."""

    object_id: str
    upn: str
    compromise_signals: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"objectId": self.object_id, "upn": self.upn,
                "compromiseSignals": list(self.compromise_signals)}

    @property
    def compromised(self) -> bool:
        """A failed burst alone is evidence (anyone can fail logons against an account), not compromise."""
        return bool(set(self.compromise_signals) - {SIGNAL_FAILED_BURST})


@dataclass(frozen=True)
class RemediationMessage:
    """One true-positive incident to remediate. Build with :func:`build_message`, read with
    :func:`parse_message`; both validate, so an instance is always well-formed."""

    sweep_id: str
    incident_key: str
    connector: str
    connector_type: str
    determination: str | None
    score: int
    admins: tuple[Admin, ...]
    alert_ids: tuple[str, ...]
    requested_actions: tuple[str, ...]
    evidence_summary: Mapping[str, Any] = field(default_factory=dict)
    classification: str = Classification.TRUE_POSITIVE
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        _validate(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemaVersion": self.schema_version,
            "sweepId": self.sweep_id,
            "incidentKey": self.incident_key,
            "connector": self.connector,
            "connectorType": self.connector_type,
            "classification": self.classification,
            "determination": self.determination,
            "score": self.score,
            "admins": [a.to_dict() for a in self.admins],
            "alertIds": list(self.alert_ids),
            "requestedActions": list(self.requested_actions),
            "evidenceSummary": dict(self.evidence_summary),
        }

    def to_json(self) -> str:
        """Compact JSON; non-ASCII kept as ``\\u`` escapes so the text is plain ASCII on the wire."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True, ensure_ascii=True)

    def to_base64(self) -> str:
        """The queue message body as the Functions host expects it (``messageEncoding: base64``)."""
        wire = base64.b64encode(self.to_json().encode("ascii")).decode("ascii")
        if len(wire) > MAX_WIRE_BYTES:
            raise MessageError(f"the message is {len(wire)} bytes in base64, over the queue limit of "
                               f"{MAX_WIRE_BYTES}; trim evidenceSummary")
        return wire


# ---------------------------------------------------------------------------------------------
# Build (producer side)


def _cut(text: Any, limit: int) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _strings(values: Iterable[Any], limit: int, each: int = MAX_SHORT) -> list[str]:
    out: list[str] = []
    for v in values:
        if v is None or v == "":
            continue
        s = _cut(v, each)
        if s not in out:
            out.append(s)
        if len(out) >= limit:
            break
    return out


def admin_signals(admin_evidence: Mapping[str, Any], findings: Sequence[Mapping[str, Any]] = ()) -> tuple[str, ...]:
    """Compromise signals of one admin (a verdict's ``evidence.admins`` entry): those of the
    verdict's *findings* that name this admin (:data:`SIGNAL_OF_FINDING`), plus a failed burst from
    the evidence, which is evidence (anyone can fail logons against an account), not compromise."""
    names = {str(admin_evidence.get(k)) for k in ("upn", "objectId") if admin_evidence.get(k)}
    signals: list[str] = []
    for finding in findings:
        signal = SIGNAL_OF_FINDING.get(str(finding.get("rule") or ""))
        evidence = finding.get("evidence") if isinstance(finding.get("evidence"), Mapping) else {}
        named = {str(evidence.get(k)) for k in ("admin", "by") if evidence.get(k)}
        if signal and names & named and signal not in signals:
            signals.append(signal)
    if admin_evidence.get("failureBursts") and SIGNAL_SUCCESSFUL_BURST not in signals:
        signals.append(SIGNAL_FAILED_BURST)
    return tuple(signals)


def default_actions(verdict: Mapping[str, Any], admins: Sequence[Admin]) -> tuple[str, ...]:
    """What the playbook recommends for this true positive: disable the connector; remove it if it
    was created in the lookback, else revert its change; for a compromised admin revoke sessions,
    require a new password or disable the account; write the verdict back to the linked alerts;
    re-sweep the other connectors. The runner's settings (REMEDIATION_* opt-ins) decide which of
    these it may actually do."""
    evidence = verdict.get("evidence") or {}
    operations = {str(c.get("operation")) for c in evidence.get("changes") or () if isinstance(c, Mapping)}
    actions = [DISABLE_CONNECTOR]
    if "New" in operations:
        actions.append(REMOVE_CONNECTOR)
    elif operations & {"Set", "Enable"}:
        actions.append(REVERT_CONNECTOR_CHANGE)
    if any(a.compromised for a in admins):
        actions += [REVOKE_ADMIN_SESSIONS, REQUIRE_ADMIN_PASSWORD_CHANGE, DISABLE_ADMIN_ACCOUNT]
    if _rules_to_disable(verdict):
        actions.append(DISABLE_TRANSPORT_RULE)
    if verdict.get("evidence", {}).get("alertIds"):
        actions.append(UPDATE_ALERTS)
    actions.append(RESWEEP)
    return tuple(actions)


def _rules_to_disable(verdict: Mapping[str, Any]) -> list[str]:
    """The transport rules a true positive's findings name as part of the malicious act."""
    names = []
    for f in verdict.get("findings") or ():
        if isinstance(f, Mapping) and f.get("rule") in RULE_FINDINGS:
            name = (f.get("evidence") or {}).get("rule")
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    return names


def evidence_summary(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """A bounded digest of the verdict for the runner's notifications and audit: the top findings
    and the playbook's telemetry to note. The full verdict stays in Table Storage."""
    ev = verdict.get("evidence") or {}
    findings = [f for f in verdict.get("findings") or () if isinstance(f, Mapping)]
    recipients = (ev.get("recipientDomains") or {}).get("neverSeen") or {}
    nmids = ev.get("networkMessageIds") or {}
    modified_from = ev.get("modifiedFrom") or {}
    return {
        "findings": [
            {"check": _cut(f.get("check"), 64), "severity": _cut(f.get("severity"), 32),
             "summary": _cut(f.get("summary"), MAX_SUMMARY_TEXT)}
            for f in findings[:MAX_SUMMARY_FINDINGS]
        ],
        "findingsOmitted": max(0, len(findings) - MAX_SUMMARY_FINDINGS),
        "messages": nmids.get("count") or 0,
        "networkMessageIdSample": _strings(nmids.get("sample") or (), MAX_SUMMARY_SAMPLE),
        "created": ev.get("created"),
        "lastModified": ev.get("lastModified"),
        "modifiedBy": _cut(ev.get("modifiedBy"), MAX_SHORT) if ev.get("modifiedBy") else None,
        "modifiedFromIp": _cut(modified_from.get("ip"), 64) if modified_from.get("ip") else None,
        "sourceIPs": _strings(ev.get("sourceIPs") or (), MAX_SUMMARY_SAMPLE, 64),
        "neverSeenRecipientDomains": {
            "count": recipients.get("count") or 0,
            "sample": _strings(recipients.get("sample") or (), MAX_SUMMARY_SAMPLE),
        },
        **({"transportRules": _strings(rules, MAX_SUMMARY_SAMPLE)} if (rules := _rules_to_disable(verdict)) else {}),
    }


def build_message(
    verdict: Mapping[str, Any],
    sweep_id: str,
    admins: Sequence[Admin] | None = None,
    requested_actions: Sequence[str] | None = None,
) -> RemediationMessage:
    """The message for a true-positive *verdict* (the contract's verdict dict) of sweep *sweep_id*.

    *admins* default to the admins in the verdict's evidence, with the compromise signals its
    findings weighed (:func:`admin_signals`);
    *requested_actions* default to :func:`default_actions`. Raises :class:`MessageError` for a
    verdict that is not a true positive or lacks what the runner needs."""
    if verdict.get("classification") != Classification.TRUE_POSITIVE:
        raise MessageError("only a true positive is remediated; this verdict is "
                           f"{verdict.get('classification')!r}")
    ev = verdict.get("evidence") or {}
    if admins is None:
        admins = [
            Admin(_cut(a.get("objectId"), MAX_SHORT), _cut(a.get("upn"), MAX_SHORT),
                  admin_signals(a, [f for f in verdict.get("findings") or () if isinstance(f, Mapping)]))
            for a in ev.get("admins") or () if isinstance(a, Mapping) and (a.get("objectId") or a.get("upn"))
        ]
    admins = tuple(admins)[:MAX_ADMINS]
    actions = tuple(requested_actions) if requested_actions is not None else default_actions(verdict, admins)
    return RemediationMessage(
        sweep_id=str(sweep_id),
        incident_key=str(verdict.get("incidentKey") or ""),
        connector=str(verdict.get("connector") or ""),
        connector_type=str(verdict.get("connectorType") or "Unknown"),
        determination=verdict.get("determination"),
        score=verdict.get("score"),  # type: ignore[arg-type]  # validated in __post_init__
        admins=admins,
        alert_ids=tuple(_strings(ev.get("alertIds") or (), MAX_ALERT_IDS)),
        requested_actions=actions,
        evidence_summary=evidence_summary(verdict),
    )


# ---------------------------------------------------------------------------------------------
# Parse (consumer side)


def _decode_text(text: str | bytes) -> str:
    """The JSON text of a message body: JSON as it is (the host decoded base64 already) or the
    base64 wire form (a body read straight from the queue)."""
    if len(text) > MAX_BODY_CHARS:
        raise MessageError(f"the message body is {len(text)} characters long, over the queue's limit of "
                           f"{MAX_BODY_CHARS}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError("the message body is not UTF-8 text") from None
    stripped = text.strip()
    if not stripped:
        raise MessageError("the message body is empty")
    if stripped[0] in "{[":  # JSON text (never base64: its alphabet has no brackets)
        return stripped
    try:
        return base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise MessageError("the message body is neither a JSON object nor base64 of one") from None


def parse_message(text: str | bytes) -> RemediationMessage:
    """Validate a queue message body (JSON, or its base64 wire form) and return the message.

    Raises :class:`MessageError` naming the first problem: not JSON, an unknown ``schemaVersion``,
    a missing, unknown or mistyped field, a classification other than ``truePositive``, an
    unknown requested action."""
    body = _decode_text(text)
    depth = json_depth(body)
    if depth > MAX_DEPTH:
        raise MessageError(f"the message nests {depth} levels deep, more than the {MAX_DEPTH} its schema allows")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            raise MessageError("the message nests too deeply to parse") from None
        raise MessageError(f"the message is not valid JSON ({exc.msg} at position {exc.pos})") from None
    _validate(doc)
    return RemediationMessage(
        schema_version=doc["schemaVersion"],
        sweep_id=doc["sweepId"],
        incident_key=doc["incidentKey"],
        connector=doc["connector"],
        connector_type=doc["connectorType"],
        classification=doc["classification"],
        determination=doc["determination"],
        score=doc["score"],
        admins=tuple(Admin(a["objectId"], a["upn"], tuple(a["compromiseSignals"])) for a in doc["admins"]),
        alert_ids=tuple(doc["alertIds"]),
        requested_actions=tuple(doc["requestedActions"]),
        evidence_summary=doc["evidenceSummary"],
    )


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON *text* (brackets inside strings do not count),
    found without recursion, so a hostile body cannot exhaust the parser's stack."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _string(doc: Mapping[str, Any], name: str, limit: int, *, allow_empty: bool = False) -> str:
    value = doc.get(name)
    if not isinstance(value, str):
        raise MessageError(f"{name} must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise MessageError(f"{name} must not be empty")
    if len(value) > limit:
        raise MessageError(f"{name} is longer than {limit} characters")
    return value


def _string_list(doc: Mapping[str, Any], name: str, limit: int, each: int = MAX_SHORT) -> list[str]:
    value = doc.get(name)
    if not isinstance(value, list):
        raise MessageError(f"{name} must be a list, not {type(value).__name__}")
    if len(value) > limit:
        raise MessageError(f"{name} has {len(value)} items, more than {limit}")
    for item in value:
        if not isinstance(item, str) or not item or len(item) > each:
            raise MessageError(f"{name} must hold non-empty strings of at most {each} characters")
    return value


def _validate(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise MessageError(f"the message must be a JSON object, not {type(doc).__name__}")
    if "schemaVersion" not in doc:
        raise MessageError("schemaVersion is missing")
    version = doc["schemaVersion"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise MessageError(f"schemaVersion must be a whole number, not {version!r}")
    if version != SCHEMA_VERSION:
        raise MessageError(f"unknown schemaVersion {version}: this app reads version {SCHEMA_VERSION}; "
                           "deploy the app version that wrote it")
    missing = [f for f in _FIELDS if f not in doc]
    if missing:
        raise MessageError("missing fields: " + ", ".join(missing))
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise MessageError("unknown fields for schemaVersion 1: " + ", ".join(unknown[:10]))
    _string(doc, "sweepId", 128)
    key = _string(doc, "incidentKey", 128)
    if not _SAFE_ID.fullmatch(key):
        raise MessageError("incidentKey must be letters, digits and . _ : - only")
    _string(doc, "connector", MAX_CONNECTOR)
    if doc["connectorType"] not in CONNECTOR_TYPES:
        raise MessageError(f"connectorType must be one of {', '.join(CONNECTOR_TYPES)}")
    if doc["classification"] != Classification.TRUE_POSITIVE:
        raise MessageError("classification must be truePositive for remediation, not "
                           f"{doc['classification']!r}")
    if doc["determination"] is not None:
        _string(doc, "determination", 64)
    score = doc["score"]
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 100:
        raise MessageError(f"score must be a whole number from 0 to 100, not {score!r}")
    admins = doc["admins"]
    if not isinstance(admins, list) or len(admins) > MAX_ADMINS:
        raise MessageError(f"admins must be a list of at most {MAX_ADMINS} objects")
    for i, admin in enumerate(admins):
        if not isinstance(admin, dict) or set(admin) != set(_ADMIN_FIELDS):
            raise MessageError(f"admins[{i}] must be an object with exactly {', '.join(_ADMIN_FIELDS)}")
        _string(admin, "objectId", MAX_SHORT, allow_empty=True)
        _string(admin, "upn", MAX_SHORT, allow_empty=True)
        if not admin["objectId"] and not admin["upn"]:
            raise MessageError(f"admins[{i}] has neither objectId nor upn")
        _string_list(admin, "compromiseSignals", MAX_SIGNALS)
    _string_list(doc, "alertIds", MAX_ALERT_IDS)
    actions = _string_list(doc, "requestedActions", len(ACTIONS), 64)
    if not actions:
        raise MessageError("requestedActions must not be empty")
    unknown_actions = [a for a in actions if a not in ACTIONS]
    if unknown_actions:
        raise MessageError(f"unknown requestedActions {', '.join(unknown_actions)}; "
                           f"known: {', '.join(ACTIONS)}")
    if len(set(actions)) != len(actions):
        raise MessageError("requestedActions lists an action twice")
    if not isinstance(doc["evidenceSummary"], dict):
        raise MessageError("evidenceSummary must be a JSON object")
