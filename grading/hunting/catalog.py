"""What the Python code reads from each hunting query, and the fixed plan of one sweep.

Why this exists: the KQL files and the grader meet only at column names and types. A test binds
every rendered query with Kusto.Language and compares its output columns with
:data:`EXPECTED_COLUMNS`, so a renamed or retyped column fails in CI, not in a tenant.
The plan is fixed: a sweep issues the same queries whatever the number of connectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# query name -> output column -> Kusto type, exactly what grading/ reads.
EXPECTED_COLUMNS: dict[str, dict[str, str]] = {
    "tenant_domains": {"Domain": "string", "Hour": "datetime", "RecipientMessages": "long", "SenderMessages": "long"},
    "correspondents": {"Domain": "string", "Messages": "long", "Hour": "datetime"},
    "mail_coverage": {"Hour": "datetime", "Rows": "long", "Messages": "long", "ViaConnectors": "long"},
    "connector_changes": {
        "Timestamp": "datetime",
        "Connector": "string",
        "ConnectorType": "string",
        "Operation": "string",
        "ActionType": "string",
        "Enabled": "string",
        "Parameters": "dynamic",
        "AccountObjectId": "string",
        "AccountId": "string",
        "AccountDisplayName": "string",
        "IPAddress": "string",
        "CountryCode": "string",
        "City": "string",
        "Isp": "string",
        "ReportId": "string",
    },
    "transport_rules": {
        "Timestamp": "datetime",
        "Rule": "string",
        "Operation": "string",
        "ActionType": "string",
        "Parameters": "dynamic",
        "AccountObjectId": "string",
        "AccountId": "string",
        "AccountDisplayName": "string",
        "IPAddress": "string",
        "CountryCode": "string",
        "City": "string",
        "Isp": "string",
        "ReportId": "string",
    },
    "connector_traffic": {
        "Connector": "string",
        "Hour": "datetime",
        "Messages": "long",
        "Recipients": "long",
        "Mismatched": "long",
        "NoSenderObjectId": "long",
        "ExternalMessages": "long",
        "ExternalRecipientDomains": "long",
        "ThreatMessages": "long",
        "UrlMessages": "long",
        "AttachmentMessages": "long",
        "Senders": "long",
        "Directions": "dynamic",
        "SourceIPs": "dynamic",
        "HeaderDomains": "dynamic",
        "EnvelopeDomains": "dynamic",
        "SampleMessageIds": "dynamic",
    },
    "connector_domains": {
        "Connector": "string",
        "Hour": "datetime",
        "Part": "string",
        "DomainCount": "long",
        "Messages": "long",
        "Mismatched": "long",
        "ThreatMessages": "long",
        "Domains": "dynamic",
    },
    "similar_senders": {
        "SenderFromAddress": "string",
        "SenderObjectId": "string",
        "Hour": "datetime",
        "Messages": "long",
        "Mismatched": "long",
        "RecipientDomains": "long",
    },
    "connector_urls": {
        "Connector": "string",
        "Hour": "datetime",
        "Messages": "long",
        "Urls": "long",
        "UrlDomains": "long",
        "SampleUrls": "dynamic",
        "SampleUrlDomains": "dynamic",
    },
    "connector_attachments": {
        "Connector": "string",
        "Hour": "datetime",
        "Messages": "long",
        "Files": "long",
        "MaliciousMessages": "long",
        "FileTypes": "dynamic",
        "SampleFileNames": "dynamic",
        "SampleSha256": "dynamic",
        "ThreatNames": "dynamic",
    },
    "connector_alerts": {
        "AlertId": "string",
        "Timestamp": "datetime",
        "Title": "string",
        "Severity": "string",
        "ServiceSource": "string",
        "DetectionSource": "string",
        "EntityTypes": "dynamic",
        "AccountObjectIds": "dynamic",
        "AccountUpns": "dynamic",
        "NetworkMessageIds": "dynamic",
        "EvidenceFields": "dynamic",
        "RemoteIPs": "dynamic",
        # EvidenceConnectors (the connectors that relayed its evidence messages) is added to each row by the
        # sweep from alert_messages (grading/alert_links.py), not returned by the query.
    },
    "alert_messages": {"NetworkMessageId": "string", "Connector": "string", "LastSeen": "datetime"},
    "admin_logon_bursts": {
        "AccountObjectId": "string",
        "AccountUpn": "string",
        "Application": "string",
        "Isp": "string",
        "Location": "string",
        "BurstStart": "datetime",
        "Failures": "long",
        "FirstFailure": "datetime",
        "LastFailure": "datetime",
        "FailureIPs": "dynamic",
        "Succeeded": "bool",
        "SuccessTime": "datetime",
        "SuccessIP": "string",
        "SuccessLocation": "string",
    },
    "admin_logon_locations": {
        "AccountObjectId": "string",
        "AccountUpn": "string",
        "Location": "string",
        "Isp": "string",
        "Successes": "long",
        "Failures": "long",
        "FirstSeen": "datetime",
        "LastSeen": "datetime",
        "FirstSuccessInLookback": "datetime",
        "SuccessesBeforeLookback": "long",
        "IPs": "dynamic",
    },
    "admin_activity_locations": {
        "AccountObjectId": "string",
        "AccountId": "string",
        "CountryCode": "string",
        "Isp": "string",
        "Events": "long",
        "FirstSeen": "datetime",
        "LastSeen": "datetime",
        "EventsBeforeLookback": "long",
        "IPs": "dynamic",
    },
    "admin_entra_signins": {
        "AccountObjectId": "string",
        "AccountUpn": "string",
        "Country": "string",
        "City": "string",
        "Successes": "long",
        "Failures": "long",
        "FirstSeen": "datetime",
        "LastSeen": "datetime",
        "SuccessesBeforeLookback": "long",
        "IPs": "dynamic",
        "StrongSuccesses": "long",
        "StrongDays": "long",
        "FirstStrongSuccess": "datetime",
        "RiskySuccesses": "long",
        "WeakSuccesses": "long",
    },
}


@dataclass(frozen=True)
class Windows:
    """The instants one sweep reads, derived from ``now`` and the window settings.

    ``window_start`` .. ``window_end`` is the graded window (what the watermark advances over);
    ``evaluation_start`` .. ``window_end`` is the traffic each verdict weighs (at least the evaluation
    span, so an hourly sweep still judges a day of mail); ``history_start`` .. ``evaluation_start`` is
    the connector baseline, and connector changes are read from ``history_start`` (an older change
    still resets "normal"); ``change_start`` .. ``window_end`` is the change lookback whose changes are
    judged; ``admin_history_start`` .. ``change_start`` is the admin logon baseline.
    """

    window_start: datetime
    window_end: datetime
    evaluation_start: datetime
    change_start: datetime
    history_start: datetime
    admin_history_start: datetime


@dataclass(frozen=True)
class PlannedQuery:
    """One query run of a sweep: the file, a label (a file may run twice) and its values."""

    label: str
    query: str
    values: dict
    start: datetime
    end: datetime


def sweep_plan(w: Windows, tenant_domains: list[str]) -> list[PlannedQuery]:
    """The fixed list of query runs after ``tenant_domains`` (which the plan needs first)."""
    domains = sorted(set(tenant_domains))
    evaluated = {"windowStart": w.evaluation_start, "windowEnd": w.window_end}
    change = {"changeStart": w.change_start, "windowEnd": w.window_end}
    admin = {"historyStart": w.admin_history_start, **change}
    pad = timedelta(hours=1)  # URL and attachment rows may be stamped a little before or after their mail

    def q(label: str, query: str, values: dict, start: datetime, end: datetime | None = None) -> PlannedQuery:
        return PlannedQuery(label, query, values, start, end or w.window_end)

    return [
        q("mail_coverage", "mail_coverage", evaluated, w.evaluation_start),
        q("connector_changes", "connector_changes", {**change, "changeStart": w.history_start}, w.history_start),
        q("connector_traffic", "connector_traffic", {**evaluated, "tenantDomains": domains}, w.evaluation_start),
        q(
            "connector_history",
            "connector_traffic",
            {"windowStart": w.history_start, "windowEnd": w.evaluation_start, "tenantDomains": domains},
            w.history_start,
            w.evaluation_start,
        ),
        q("correspondents", "correspondents", {"windowStart": w.history_start, "windowEnd": w.evaluation_start},
          w.history_start, w.evaluation_start),
        q("connector_domains", "connector_domains", evaluated, w.evaluation_start),
        q("similar_senders", "similar_senders", {**evaluated, "tenantDomains": domains}, w.evaluation_start),
        q("connector_urls", "connector_urls", evaluated, w.evaluation_start - pad, w.window_end + pad),
        q("connector_attachments", "connector_attachments", evaluated, w.evaluation_start - pad, w.window_end + pad),
        q("connector_alerts", "connector_alerts", change, w.change_start),
        q("transport_rules", "transport_rules", {**change, "changeStart": w.history_start}, w.history_start),
        q("admin_logon_bursts", "admin_logon_bursts", change, w.change_start),
        q("admin_logon_locations", "admin_logon_locations", admin, w.admin_history_start),
        q("admin_activity_locations", "admin_activity_locations", admin, w.admin_history_start),
        q("admin_entra_signins", "admin_entra_signins", admin, w.admin_history_start),
    ]


# Queries whose failure makes every verdict of the sweep unknown (the grader cannot judge without them).
REQUIRED_RESULTS: frozenset[str] = frozenset(
    {
        "tenant_domains",
        "mail_coverage",
        "connector_changes",
        "connector_traffic",
        "connector_history",
        "correspondents",
        "connector_domains",
        "recipient_profile",
        "sender_domains",
    }
)
