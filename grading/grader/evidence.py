"""The evidence an analyst would note for one connector, and the stable incident key.

Why JSON-ready here: the verdict is stored, enqueued and rendered as is, so datetimes become ISO
8601 text once, in :func:`json_ready`, rather than in every consumer.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime, timedelta
from typing import Any

from grading.grader.baselines import floor_hour
from grading.grader.facts import ConnectorFacts, admin_name, sample_values


def incident_key(connector: str, changes: list[dict[str, Any]], stored_change: str | None = None) -> str:
    """Stable across sweeps for one connector configuration: the name plus its latest known change."""
    last = changes[-1] if changes else None
    marker = (
        f"{last['Timestamp'].isoformat()}|{last.get('ReportId') or ''}" if last else (stored_change or "")
    )
    digest = hashlib.sha256(f"{connector.casefold()}\x1f{marker}".encode()).hexdigest()
    return digest[:32]


_PLAIN = (str, int, float, bool, type(None))


def json_ready(value: Any) -> Any:
    # Plain values (most of the evidence) are answered before any isinstance check, and plain
    # items of a dict or list without a call: a sweep walks every verdict's evidence.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        return {k: v if type(v) in _PLAIN else json_ready(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _PLAIN else json_ready(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_ready(v) for v in value]
    return value


@functools.lru_cache(maxsize=8)
def _window_hours(start: datetime, end: datetime) -> tuple[tuple[datetime, str], ...]:
    """Each hour from *start* to *end* with its text as json_ready writes it: the same for every verdict
    of a sweep, so computed once per window rather than once per connector."""
    hours = []
    h = floor_hour(start)
    while h < end:
        hours.append((h, h.isoformat().replace("+00:00", "Z")))
        h += timedelta(hours=1)
    return tuple(hours)


def connector_evidence(facts: ConnectorFacts) -> dict[str, Any]:
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
    evidence: dict[str, Any] = json_ready(
        {
            "networkMessageIds": {"count": window.messages, "sample": window.sample_message_ids},
            "created": created["Timestamp"] if created else None,
            "createdBy": admin_name(facts, created) if created else None,
            "lastModified": last["Timestamp"] if last else None,
            "modifiedBy": admin_name(facts, last) if last else None,
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
                    "by": admin_name(facts, c),
                    "ip": c.get("IPAddress"),
                    "country": c.get("CountryCode"),
                    "isp": c.get("Isp"),
                    "enabled": c.get("Enabled"),
                    "parameters": c.get("Parameters") or [],
                }
                for c in facts.changes
            ],
            "sourceIPs": sample_values(window.source_ips, 50),
            "recipientDomains": {
                "knownCorrespondents": {
                    "count": known.get("Domains") or 0,
                    "messages": known.get("Messages") or 0,
                    "sample": sample_values(known.get("SampleDomains")),
                },
                "neverSeen": {
                    "count": new.get("Domains") or 0,
                    "messages": new.get("Messages") or 0,
                    "sample": sample_values(new.get("SampleDomains")),
                },
            },
            "senderDomainsOutsideTenant": {
                "header": {
                    "count": header.get("Domains") or 0,
                    "sample": sample_values(header.get("SampleDomains")),
                },
                "envelope": {
                    "count": envelope.get("Domains") or 0,
                    "sample": sample_values(envelope.get("SampleDomains")),
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
                "series": [],  # added below, already plain: json_ready need not walk dozens of hours
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
            "urls": sample_values((facts.urls or {}).get("SampleUrls"), 10),
            "otherSenders": facts.other_senders[:20],
            "checksNotRun": [{"check": k, "reason": v} for k, v in sorted(facts.not_checked.items())],
        }
    )
    evidence["hourlyVolume"]["series"] = hours
    return evidence
