"""Checks -> findings -> a verdict per connector.

Each playbook question is a check: a function that looks at one connector's facts and returns
findings (what, why, how strong, evidence). The policy (:mod:`grading.policy`) weighs them into a
0-100 score and the score into a classification. Why not the playbook's fixed thresholds: every
traffic signal is judged against the connector's own history, so a busy partner is not a true
positive for being busy, a bulk mailer whose envelope always differed is judged against itself,
and a slow abuse is caught by what its mail looks like, not by its rate.

Incomplete inputs never produce a true positive or a confident false positive: the verdict is
``unknown`` with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from grading.baselines import AdminProfile, ConnectorBaseline, TrafficSummary, floor_hour
from grading.policy import Policy

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2, "informational": 3}

# Tags a finding may carry; they decide the determination of a true positive.
ADMIN_COMPROMISE = "adminCompromise"
PHISHING = "phishing"
CHANGE = "change"


@dataclass
class Finding:
    check: str
    severity: str
    summary: str
    evidence: dict[str, Any]
    weight: int = 0
    tags: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "summary": self.summary,
            "evidence": self.evidence,
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


def _finding(
    policy: Policy,
    check: str,
    weight_name: str,
    severity: str,
    summary: str,
    evidence: dict[str, Any],
    *tags: str,
) -> Finding:
    return Finding(check, severity, summary, evidence, policy.weight(weight_name), frozenset(tags))


SAMPLE_LIMIT = 25


def _sample(values: Any, limit: int = SAMPLE_LIMIT) -> list[Any]:
    """At most *limit* values, sorted: evidence samples stay small whatever a source returned (the
    queries cap their ``make_set`` samples; duckdb-kql ignores the cap, which the local source
    restores, see ``hunting/sources/caps.py``, but a source may still return more)."""
    # nsmallest is sorted(...)[:limit] without sorting the whole list.
    return heapq.nsmallest(limit, (v for v in values or () if v not in (None, "")))


def _who(facts: ConnectorFacts, change: dict[str, Any]) -> str:
    """The admin behind a change as an analyst knows them: UPN where the logons tell it, else the ids."""
    oid = change.get("AccountObjectId") or ""
    admin = facts.admins.get(oid)
    return (admin.upn if admin and admin.upn else "") or change.get("AccountId") or oid or "an unknown account"


def _where(change: dict[str, Any]) -> str:
    parts = [change.get("City") or "", change.get("CountryCode") or ""]
    place = ", ".join(p for p in parts if p) or "an unknown place"
    isp = change.get("Isp") or "unknown ISP"
    return f"{change.get('IPAddress') or 'unknown IP'} ({place}; {isp})"


# ---------------------------------------------------------------------------------------------
# Checks: one playbook question each.


def check_configuration(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q2: was the connector created or changed recently, by whom, from where?

    Each signal counts once per admin, however many changes that admin made: ten tweaks from a new
    ISP are one fact about the admin, not ten."""
    out: list[Finding] = []
    created = next((c for c in facts.changes if c["Operation"] == "New"), None)
    if created:
        out.append(
            _finding(
                policy,
                "configuration",
                "connector_created",
                "low",
                f"Connector created {created['Timestamp']:%Y-%m-%d %H:%M} UTC by {_who(facts, created)}",
                {"time": created["Timestamp"], "by": _who(facts, created), "from": _where(created)},
                CHANGE,
            )
        )
    modified = [c for c in facts.changes if c["Operation"] == "Set"]
    if modified:
        last = modified[-1]
        out.append(
            _finding(
                policy,
                "configuration",
                "connector_changed",
                "low",
                f"Connector changed {len(modified)} time(s), last {last['Timestamp']:%Y-%m-%d %H:%M} UTC by "
                f"{_who(facts, last)}",
                {
                    "time": last["Timestamp"],
                    "by": _who(facts, last),
                    "from": _where(last),
                    "parameters": sorted({p["Name"] for p in last.get("Parameters") or () if p.get("Name")}),
                },
                CHANGE,
            )
        )
    by_admin: dict[str, list[dict[str, Any]]] = {}
    for change in facts.changes:
        if change["Operation"] != "Remove":
            by_admin.setdefault(change.get("AccountObjectId") or "", []).append(change)
    for oid, changes in by_admin.items():
        admin = facts.admins.get(oid)
        who = _who(facts, changes[0])
        if who.lower() in policy.expected_admins or oid.lower() in policy.expected_admins:
            continue
        first = changes[0]
        if admin is None or not admin.has_history:
            out.append(
                _finding(
                    policy,
                    "configuration",
                    "change_by_admin_without_history",
                    "medium",
                    f"{len(changes)} change(s) by {who}, who has no admin or logon history before the change "
                    f"lookback (first: {first['Operation']} from {_where(first)})",
                    {"by": who, "times": [c["Timestamp"] for c in changes], "from": _where(first)},
                )
            )
            continue
        new_country = [c for c in changes if (c.get("CountryCode") or "").upper() not in admin.usual_countries
                       and c.get("CountryCode")]
        new_isp = [c for c in changes if (c.get("Isp") or "").lower() not in admin.usual_isps and c.get("Isp")]
        if new_country:
            c = new_country[0]
            countries = sorted({(x.get("CountryCode") or "").upper() for x in new_country})
            out.append(
                _finding(
                    policy,
                    "configuration",
                    "change_from_new_country",
                    "high",
                    f"{c['Operation']} by {who} from {_where(c)}, a country this admin never worked from "
                    f"(usual: {', '.join(sorted(admin.usual_countries)) or 'none'})",
                    {
                        "by": who,
                        "times": [x["Timestamp"] for x in new_country],
                        "countries": countries,
                        "usualCountries": sorted(admin.usual_countries),
                        "ip": c.get("IPAddress"),
                    },
                    CHANGE,
                )
            )
        elif new_isp:
            c = new_isp[0]
            out.append(
                _finding(
                    policy,
                    "configuration",
                    "change_from_new_isp",
                    "medium",
                    f"{len(new_isp)} change(s) by {who} through ISP {c.get('Isp')!s}, new for this admin",
                    {
                        "by": who,
                        "times": [x["Timestamp"] for x in new_isp],
                        "isp": c.get("Isp"),
                        "usualIsps": sorted(admin.usual_isps),
                    },
                    CHANGE,
                )
            )
    return out


def check_admin_compromise(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q7: do the admins who changed the connector look compromised (burst then success, new places)?

    One finding per admin and signal: repeated bursts or several new places are evidence, not extra
    weight."""
    out: list[Finding] = []
    for oid, admin in facts.admins.items():
        changes = [c for c in facts.changes if c.get("AccountObjectId") == oid]
        bursts = admin.successful_bursts
        if bursts:
            burst = bursts[0]
            success = burst.get("SuccessTime")
            out.append(
                _finding(
                    policy,
                    "adminCompromise",
                    "admin_burst_then_success",
                    "high",
                    f"{admin.label()}: {burst['Failures']} failed logons within a minute from "
                    f"{burst.get('Location') or 'an unknown place'} ({burst.get('Isp') or 'unknown ISP'}), "
                    f"then a successful logon at {success:%Y-%m-%d %H:%M:%S} UTC"
                    + (f" ({len(bursts)} such bursts)" if len(bursts) > 1 else ""),
                    {
                        "admin": admin.label(),
                        "failures": burst["Failures"],
                        "firstFailure": burst.get("FirstFailure"),
                        "lastFailure": burst.get("LastFailure"),
                        "successTime": success,
                        "successIP": burst.get("SuccessIP"),
                        "location": burst.get("Location"),
                        "isp": burst.get("Isp"),
                        "bursts": len(bursts),
                    },
                    ADMIN_COMPROMISE,
                )
            )
            window = timedelta(hours=policy.compromise_to_change_hours)
            tied = [
                (c, b["SuccessTime"])
                for b in bursts
                for c in changes
                if b.get("SuccessTime") and timedelta(0) <= c["Timestamp"] - b["SuccessTime"] <= window
            ]
            if tied:
                change, logon = tied[0]
                out.append(
                    _finding(
                        policy,
                        "adminCompromise",
                        "change_after_compromise",
                        "high",
                        f"The connector was {change['Operation'].lower()}-configured "
                        f"{(change['Timestamp'] - logon).total_seconds() / 3600:.1f} h after that logon",
                        {"admin": admin.label(), "change": change["Timestamp"], "logon": logon},
                        ADMIN_COMPROMISE,
                    )
                )
        # Without history every place is new: the configuration check already says so once.
        if admin.has_history and admin.new_logon_locations:
            places = [f"{loc.get('Location') or 'an unknown place'} ({loc.get('Isp') or 'unknown ISP'})"
                      for loc in admin.new_logon_locations]
            out.append(
                _finding(
                    policy,
                    "adminCompromise",
                    "admin_logon_new_location",
                    "medium",
                    f"{admin.label()} logged on from {', '.join(places[:3])}, never seen before the lookback",
                    {
                        "admin": admin.label(),
                        "locations": [
                            {"location": loc.get("Location"), "isp": loc.get("Isp"),
                             "firstSuccess": loc.get("FirstSuccessInLookback")}
                            for loc in admin.new_logon_locations
                        ],
                    },
                )
            )
    return out


def check_volume(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q2: is the connector expected to send this volume? Judged against its own band, never a fixed 100."""
    band = facts.baseline.band
    if band is None:
        return []
    above = [r for r in facts.window_rows if (r["Messages"] or 0) > band.upper]
    if len(above) < policy.volume_min_hours_above:
        return []
    peak = max(r["Messages"] for r in above)
    return [
        _finding(
            policy,
            "volume",
            "volume_above_baseline",
            "medium",
            f"{len(above)} hour(s) above the connector's normal band (peak {peak} messages/h; "
            f"normal median {band.median:.0f}, upper {band.upper:.0f})",
            {"hoursAbove": len(above), "peak": peak, "median": band.median, "upper": band.upper},
        )
    ]


def _ratio_rise(facts: ConnectorFacts, policy: Policy, attr: str) -> tuple[int, int, float, float] | None:
    """(count, messages, ratio, baseline ratio) of the graded hours' *attr* total when it rose enough."""
    window = facts.graded_summary()
    if not window.messages:
        return None
    count = getattr(window, attr)
    ratio = count / window.messages
    base_ratio = (
        facts.baseline.summary.ratio(getattr(facts.baseline.summary, attr)) if facts.baseline.exists else 0.0
    )
    if count >= policy.mismatch_min_messages and ratio - base_ratio >= policy.mismatch_ratio_rise:
        return count, window.messages, ratio, base_ratio
    return None


def check_sender_mismatch(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q4: do header-From and envelope domains differ, and is SenderObjectId empty, more than usual?"""
    out: list[Finding] = []
    against = "its history" if facts.baseline.exists else "no history (new connector)"
    mism = _ratio_rise(facts, policy, "mismatched")
    if mism:
        count, total, ratio, base = mism
        out.append(
            _finding(
                policy,
                "senderMismatch",
                "sender_mismatch",
                "high",
                f"{count} of {total} messages ({ratio:.0%}) have an envelope (P1) domain different from the header "
                f"(P2) domain, against {base:.0%} in {against}",
                {"messages": count, "of": total, "ratio": round(ratio, 3), "baselineRatio": round(base, 3)},
                PHISHING,
            )
        )
    noobj = _ratio_rise(facts, policy, "no_sender_object_id")
    if noobj:
        count, total, ratio, base = noobj
        out.append(
            _finding(
                policy,
                "senderMismatch",
                "no_sender_object_id",
                "medium",
                f"{count} of {total} messages ({ratio:.0%}) have no SenderObjectId (no tenant account sent them), "
                f"against {base:.0%} in {against}",
                {"messages": count, "of": total, "ratio": round(ratio, 3), "baselineRatio": round(base, 3)},
                PHISHING,
            )
        )
    return out


def check_recipients(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q3: spray to never-seen domains, or mail to the tenant's customers/vendors (supply chain)?"""
    out: list[Finding] = []
    new = facts.recipients.get(False) or {}
    known = facts.recipients.get(True) or {}
    # The policy's partner domains count as known in the query itself (recipient_profile's partnerDomains).
    new_domains = list(new.get("SampleDomains") or ())
    new_count = new.get("Domains") or 0
    known_count = known.get("Domains") or 0
    total = new_count + known_count
    if new_count >= policy.spray_min_domains and total and new_count / total >= policy.spray_new_ratio:
        out.append(
            _finding(
                policy,
                "recipients",
                "spray_new_domains",
                "high",
                f"Mail to {new_count} external domains the tenant never corresponded with "
                f"({new.get('Messages') or 0} messages), out of {total} external domains",
                {
                    "neverSeenDomains": new_count,
                    "messages": new.get("Messages") or 0,
                    "sample": sorted(new_domains)[:10],
                },
                PHISHING,
            )
        )
    return out


def check_supply_chain(facts: ConnectorFacts, policy: Policy, findings: list[Finding]) -> list[Finding]:
    """Q3 continued: mail that looks forged, sent to the tenant's known correspondents, after a change."""
    known = facts.recipients.get(True) or {}
    forged = any(f.check == "senderMismatch" for f in findings)
    if not (forged and facts.changes and (known.get("Domains") or 0) > 0):
        return []
    return [
        _finding(
            policy,
            "recipients",
            "supply_chain_targeting",
            "high",
            f"Forged-looking mail went to {known['Domains']} domains of the tenant's customers/vendors "
            f"({known.get('Messages') or 0} messages): a supply-chain attack on its correspondents",
            {
                "knownDomains": known["Domains"],
                "messages": known.get("Messages") or 0,
                "sample": _sample(known.get("SampleDomains"), 10),
            },
            PHISHING,
        )
    ]


def check_origins(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q2/Q6: does the traffic come from new IPs, with sender domains the connector never used?"""
    if not facts.baseline.exists:
        return []
    out: list[Finding] = []
    window = facts.graded_summary()
    new_ips = sorted(window.source_ips - facts.baseline.summary.source_ips)
    if new_ips and window.messages >= policy.new_ip_min_messages:
        out.append(
            _finding(
                policy,
                "origins",
                "new_source_ips",
                "medium",
                f"Traffic from {len(new_ips)} source IP(s) never seen on this connector: {', '.join(new_ips[:5])}",
                {
                    "newSourceIPs": new_ips[:20],
                    "knownSourceIPs": sorted(facts.baseline.summary.source_ips)[:20],
                },
            )
        )
    new_env = sorted(window.envelope_domains - facts.baseline.summary.envelope_domains)
    new_hdr = sorted(window.header_domains - facts.baseline.summary.header_domains)
    if (new_env or new_hdr) and window.messages >= policy.new_ip_min_messages:
        out.append(
            _finding(
                policy,
                "origins",
                "new_sender_domains",
                "medium",
                f"Sender domains never used on this connector: {', '.join((new_hdr + new_env)[:5])}",
                {"newHeaderDomains": new_hdr[:20], "newEnvelopeDomains": new_env[:20]},
                PHISHING,
            )
        )
    return out


def check_artifacts(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q5: does the content carry threat verdicts, malicious attachments, URLs?"""
    out: list[Finding] = []
    threats = facts.graded_summary().threat_messages
    if threats:
        out.append(
            _finding(
                policy,
                "artifacts",
                "threat_verdicts",
                "high",
                f"{threats} message(s) carry a Defender threat verdict (ThreatTypes)",
                {"threatMessages": threats, "urls": _sample((facts.urls or {}).get("SampleUrls"), 10)},
                PHISHING,
            )
        )
    if facts.attachments and (facts.attachments.get("MaliciousMessages") or 0) > 0:
        a = facts.attachments
        out.append(
            _finding(
                policy,
                "artifacts",
                "malicious_attachments",
                "high",
                f"{a['MaliciousMessages']} message(s) carry attachments detected as malicious",
                {
                    "fileTypes": a.get("FileTypes") or [],
                    "sha256": a.get("SampleSha256") or [],
                    "threatNames": a.get("ThreatNames") or [],
                },
                PHISHING,
            )
        )
    return out


def check_alerts(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Link the Defender alerts that this verdict grades."""
    if not facts.alerts:
        return []
    ids = [a["AlertId"] for a in facts.alerts]
    return [
        _finding(
            policy,
            "alerts",
            "linked_alert",
            "informational",
            f"Linked Defender alert(s): {', '.join(a.get('Title') or a['AlertId'] for a in facts.alerts[:3])}",
            {"alertIds": ids},
        )
    ]


CHECKS: tuple[Check, ...] = (
    check_configuration,
    check_admin_compromise,
    check_volume,
    check_sender_mismatch,
    check_recipients,
    check_origins,
    check_artifacts,
    check_alerts,
)


# ---------------------------------------------------------------------------------------------
# Verdict


def incident_key(connector: str, changes: list[dict[str, Any]], stored_change: str | None = None) -> str:
    """Stable across sweeps for one connector configuration: the name plus its latest known change."""
    last = changes[-1] if changes else None
    marker = (
        f"{last['Timestamp'].isoformat()}|{last.get('ReportId') or ''}" if last else (stored_change or "")
    )
    digest = hashlib.sha256(f"{connector.casefold()}\x1f{marker}".encode()).hexdigest()
    return digest[:32]


_PLAIN = (str, int, float, bool, type(None))


def _iso(value: Any) -> Any:
    # Plain values (most of the evidence) are answered before any isinstance check, and plain
    # items of a dict or list without a call: a sweep walks every verdict's evidence.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k: v if type(v) in _PLAIN else _iso(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _PLAIN else _iso(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_iso(v) for v in value]
    return value


@functools.lru_cache(maxsize=8)
def _window_hours(start: datetime, end: datetime) -> tuple[tuple[datetime, str], ...]:
    """Each hour from *start* to *end* with its text as _iso writes it: the same for every verdict
    of a sweep, so computed once per window rather than once per connector."""
    hours = []
    h = floor_hour(start)
    while h < end:
        hours.append((h, h.isoformat().replace("+00:00", "Z")))
        h += timedelta(hours=1)
    return tuple(hours)


def _evidence(facts: ConnectorFacts) -> dict[str, Any]:
    window = facts.window_summary()
    created = facts.created
    last = facts.last_change
    known = facts.recipients.get(True) or {}
    new = facts.recipients.get(False) or {}
    band = facts.baseline.band
    header = facts.sender_domains.get("Header") or {}
    envelope = facts.sender_domains.get("Envelope") or {}
    series: dict[datetime, int] = {}
    for r in facts.window_rows:
        hour = r["Hour"]
        if hour.minute or hour.second or hour.microsecond:  # rows come binned by hour; floor any that are not
            hour = floor_hour(hour)
        series[hour] = r["Messages"] or 0
    hours = [{"hour": text, "messages": series.get(h, 0)} for h, text in _window_hours(facts.window_start,
                                                                                      facts.window_end)]
    evidence: dict[str, Any] = _iso(
        {
            "networkMessageIds": {"count": window.messages, "sample": window.sample_message_ids},
            "created": created["Timestamp"] if created else None,
            "createdBy": _who(facts, created) if created else None,
            "lastModified": last["Timestamp"] if last else None,
            "modifiedBy": _who(facts, last) if last else None,
            "modifiedFrom": {
                "ip": last.get("IPAddress"),
                "country": last.get("CountryCode"),
                "city": last.get("City"),
                "isp": last.get("Isp"),
            }
            if last
            else None,
            "changes": [
                {
                    "time": c["Timestamp"],
                    "operation": c["Operation"],
                    "actionType": c["ActionType"],
                    "by": _who(facts, c),
                    "ip": c.get("IPAddress"),
                    "country": c.get("CountryCode"),
                    "isp": c.get("Isp"),
                    "enabled": c.get("Enabled"),
                    "parameters": c.get("Parameters") or [],
                }
                for c in facts.changes
            ],
            "sourceIPs": _sample(window.source_ips, 50),
            "recipientDomains": {
                "knownCorrespondents": {
                    "count": known.get("Domains") or 0,
                    "messages": known.get("Messages") or 0,
                    "sample": _sample(known.get("SampleDomains")),
                },
                "neverSeen": {
                    "count": new.get("Domains") or 0,
                    "messages": new.get("Messages") or 0,
                    "sample": _sample(new.get("SampleDomains")),
                },
            },
            "senderDomainsOutsideTenant": {
                "header": {
                    "count": header.get("Domains") or 0,
                    "sample": _sample(header.get("SampleDomains")),
                },
                "envelope": {
                    "count": envelope.get("Domains") or 0,
                    "sample": _sample(envelope.get("SampleDomains")),
                },
            },
            "alertIds": [a["AlertId"] for a in facts.alerts],
            "admins": [
                {
                    "objectId": a.object_id,
                    "upn": a.upn,
                    "usualCountries": sorted(a.usual_countries),
                    "failureBursts": len(a.bursts),
                    "successfulBursts": len(a.successful_bursts),
                    "hasHistory": a.has_history,
                    # Only where the admin has a history to be new against (as the weighed finding).
                    "newLogonLocations": [loc.get("Location") for loc in a.new_logon_locations]
                    if a.has_history
                    else [],
                }
                for a in facts.admins.values()
            ],
            "hourlyVolume": {
                "series": [],  # added below, already plain: _iso need not walk dozens of hours
                "baseline": None
                if band is None
                else {
                    "median": round(band.median, 2),
                    "upper": round(band.upper, 2),
                    "p99": round(band.p99, 2),
                    "hours": band.hours,
                    "cutoff": facts.baseline.cutoff,
                },
                "baselineReason": facts.baseline.reason_if_none,
            },
            "messageProfile": {
                "messages": window.messages,
                "mismatched": window.mismatched,
                "noSenderObjectId": window.no_sender_object_id,
                "externalMessages": window.external_messages,
                "threatMessages": window.threat_messages,
                "directions": sorted(window.directions),
            },
            "urls": _sample((facts.urls or {}).get("SampleUrls"), 10),
            "otherSenders": facts.other_senders[:20],
            "checksNotRun": [{"check": k, "reason": v} for k, v in sorted(facts.not_checked.items())],
        }
    )
    evidence["hourlyVolume"]["series"] = hours
    return evidence


def grade(facts: ConnectorFacts, policy: Policy) -> dict[str, Any]:
    """The verdict of one connector, as the contract's JSON-ready dict."""
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(facts, policy))
    findings.extend(check_supply_chain(facts, policy, findings))
    findings.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), -f.weight))
    score = min(100, sum(f.weight for f in findings))
    tags = set().union(*(f.tags for f in findings)) if findings else set()

    classification: str
    determination: str | None = None
    reason: str | None = None
    if facts.incomplete:
        classification = "unknown"
        reason = "incomplete data: " + "; ".join(f"{k}: {v}" for k, v in sorted(facts.incomplete.items()))
    elif score >= policy.true_positive_score and not facts.baseline.exists and not facts.history_changes:
        # Nothing dates this connector (no change in the history) and it has no traffic history: a quiet
        # long-standing connector (a monthly newsletter) cannot be told from a new one.
        classification = "unknown"
        reason = (f"score {score}, but the connector has no traffic history and no known creation or change "
                  "to compare with: an analyst should review")
    elif score >= policy.true_positive_score:
        classification = "truePositive"
        if ADMIN_COMPROMISE in tags:
            determination = "compromisedAccount"
        elif PHISHING in tags:
            determination = "phishing"
        else:
            determination = "maliciousUserActivity"
    elif score < policy.false_positive_score:
        # A recent change with nothing suspicious about it is benign activity worth telling; a
        # connector that only carried mail is simply not malicious.
        classification = "informationalExpectedActivity" if facts.changes else "falsePositive"
    else:
        classification = "unknown"
        reason = (
            f"inconclusive: score {score} is between the false-positive ({policy.false_positive_score}) "
            f"and true-positive ({policy.true_positive_score}) thresholds; an analyst should review"
        )
    return {
        "connector": facts.connector,
        "connectorType": facts.connector_type,
        "classification": classification,
        "determination": determination,
        "score": score,
        "findings": [_iso(f.as_dict()) for f in findings],
        "evidence": _evidence(facts),
        "incidentKey": incident_key(facts.connector, facts.history_changes),
        "reasonIfUnknown": reason,
    }
