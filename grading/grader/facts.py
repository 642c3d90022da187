"""What the grader knows about one connector, and the findings its checks produce.

Why a module of its own: the sweep assembles :class:`ConnectorFacts` from query results, the checks
read them, the evidence is drawn from them; none of these needs to know how the others work.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from grading.grader.baselines import AdminProfile, ConnectorBaseline, TrafficSummary, floor_hour
from grading.grader.transport_rules import TransportRule
from grading.policy import Policy

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "informational": 3}

# Tags a finding may carry; they decide the determination of a true positive.
ADMIN_COMPROMISE = "adminCompromise"
PHISHING = "phishing"
CHANGE = "change"
# The decision rule (docs/decision-rule.md): only a finding tagged ACT (abusive traffic, or a dangerous
# configuration change) can make a truePositive; a BENIGN finding is an explanation found in the data and
# lowers the score by its weight.
ACT = "maliciousAct"
BENIGN = "benign"


@dataclass
class Finding:
    check: str
    severity: str
    summary: str
    evidence: dict[str, Any]
    weight: int = 0
    tags: frozenset[str] = frozenset()
    name: str = ""
    """The policy weight it is weighed by (``docs/checks.md`` lists them all)."""

    @property
    def act(self) -> bool:
        return ACT in self.tags

    @property
    def benign(self) -> bool:
        return BENIGN in self.tags

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
            # Added fields (the contract adds, never renames): what the finding is to the decision rule,
            # and how much it moved the score (negative for a benign explanation).
            "kind": "maliciousAct" if self.act else "benign" if self.benign else "context",
            "weight": -self.weight if self.benign else self.weight,
            "rule": self.name,
        }


@dataclass
class ConnectorFacts:
    """Everything the sweep learned about one connector (assembled by :mod:`grading.sweep`)."""

    connector: str
    connector_type: str
    window_start: datetime
    window_end: datetime
    changes: list[dict[str, Any]]
    """connector_changes rows for this connector, oldest first."""
    window_rows: list[dict[str, Any]]
    """connector_traffic rows (hourly) in the graded window."""
    baseline: ConnectorBaseline
    recipients: dict[bool, dict[str, Any]]
    """recipient_profile rows by Known."""
    sender_domains: dict[str, dict[str, Any]]
    """sender_domains rows by Part (Header / Envelope)."""
    urls: dict[str, Any] | None
    attachments: dict[str, Any] | None
    alerts: list[dict[str, Any]]
    admins: dict[str, AdminProfile]
    """Profiles of the admins who changed this connector, by object id."""
    not_checked: dict[str, str] = field(default_factory=dict)
    """check -> why it could not run (a table absent from the source)."""
    incomplete: dict[str, str] = field(default_factory=dict)
    """input -> why it is incomplete."""
    other_senders: list[dict[str, Any]] = field(default_factory=list)
    history_changes: list[dict[str, Any]] = field(default_factory=list)
    """Every change the history holds (``changes`` are those of the change lookback, which are judged);
    the older ones still date the connector and reset its baseline."""
    internal_recipients: dict[str, Any] | None = None
    """The recipient_profile row of mail to the tenant's own domains (Internal), if any."""
    other_connectors: list[str] = field(default_factory=list)
    """Names of the tenant's connectors, this one's possibly among them (a new name that imitates another is a
    finding); the sweep hands every connector the same list."""
    previous_names: list[str] = field(default_factory=list)
    """Names this connector had before a rename (``Set-...Connector -Name``), oldest first."""
    tenant_domains: list[str] = field(default_factory=list)
    config_snapshot: dict[str, str] | None = None
    """The connector's configuration from an inventory, lower-case parameter names, if the sweep has one."""
    approved: dict[str, Any] | None = None
    """The connector's approved configuration, if one is recorded: ``configuration`` (lower-case parameter
    names), ``approvedAt``, ``approvedBy``, ``reason`` (``python -m grading approve-config``)."""
    inventory: dict[str, Any] | None = None
    """The latest inventory snapshot of the connector: ``configuration`` and ``refreshedAt``."""
    transport_rules: list[TransportRule] = field(default_factory=list)
    """The tenant's mail-flow rules (one shared list); the check links those that concern this connector."""
    change_start: datetime | None = None
    """Start of the change lookback: a rule changed before it is long-standing."""
    _graded_summary: TrafficSummary | None = field(default=None, init=False, repr=False, compare=False)
    _window_summary: TrafficSummary | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.history_changes:
            self.history_changes = list(self.changes)

    @property
    def last_change(self) -> dict[str, Any] | None:
        return self.history_changes[-1] if self.history_changes else None

    @property
    def created(self) -> dict[str, Any] | None:
        return next((c for c in self.history_changes if c["Operation"] == "New"), None)

    def graded_summary(self) -> TrafficSummary:
        """The totals of :meth:`graded_rows`, computed once: several checks weigh them."""
        if self._graded_summary is None:
            self._graded_summary = TrafficSummary.of(self.graded_rows())
        return self._graded_summary

    def window_summary(self) -> TrafficSummary:
        """The totals of every window hour (the evidence), computed once (the graded summary
        when the graded hours are the whole window)."""
        if self.graded_rows() is self.window_rows:
            return self.graded_summary()
        if self._window_summary is None:
            self._window_summary = TrafficSummary.of(self.window_rows)
        return self._window_summary

    def graded_rows(self) -> list[dict[str, Any]]:
        """Window hours the anomaly checks judge: those since the latest change inside the window, so
        normal traffic before a malicious change does not dilute what came after it."""
        last = self.last_change
        if last and last["Timestamp"] >= self.window_start:
            since = floor_hour(last["Timestamp"])
            after = [r for r in self.window_rows if r["Hour"] >= since]
            if after:
                return after
        return self.window_rows


Check = Callable[[ConnectorFacts, Policy], list[Finding]]


def new_finding(
    policy: Policy,
    check: str,
    weight_name: str,
    severity: str,
    summary: str,
    evidence: dict[str, Any],
    *tags: str,
) -> Finding:
    return Finding(check, severity, summary, evidence, policy.weight(weight_name), frozenset(tags), weight_name)


SAMPLE_LIMIT = 25


def sample_values(values: Any, limit: int = SAMPLE_LIMIT) -> list[Any]:
    """At most *limit* values, sorted: evidence samples stay small whatever a source returned (the
    queries cap their ``make_set`` samples; duckdb-kql ignores the cap, which the local source
    restores, see ``sources/local/caps.py``, but a source may still return more)."""
    # nsmallest is sorted(...)[:limit] without sorting the whole list.
    return heapq.nsmallest(limit, (v for v in values or () if v not in (None, "")))


def admin_name(facts: ConnectorFacts, change: dict[str, Any]) -> str:
    """The admin behind a change as an analyst knows them: UPN where the logons tell it, else the ids."""
    oid = change.get("AccountObjectId") or ""
    admin = facts.admins.get(oid)
    return (admin.upn if admin and admin.upn else "") or change.get("AccountId") or oid or "an unknown account"


def place_of(change: dict[str, Any]) -> str:
    parts = [change.get("City") or "", change.get("CountryCode") or ""]
    place = ", ".join(p for p in parts if p) or "an unknown place"
    isp = change.get("Isp") or "unknown ISP"
    return f"{change.get('IPAddress') or 'unknown IP'} ({place}; {isp})"


