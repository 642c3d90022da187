"""A sweep graded by the real grader from hand-built facts, with an attacker payload in every
place telemetry lets an attacker write: connector names, admin UPNs, recipient and sender
domains, URLs, connector parameters, logon locations and ISPs, alert titles.

Why hand-built facts: each payload must reach a known rendering context (element text, an
attribute, SVG text, the embedded JSON), and the scenarios must cover each classification and
both a chart with a baseline band and one without. The verdicts themselves come from
:func:`grading.grader.grade`, so their shape is the grader's, not a copy of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from grading.grader import ConnectorFacts, grade
from grading.grader.baselines import AdminProfile, connector_baseline
from grading.policy import Policy

NOW = datetime(2026, 11, 20, tzinfo=UTC)
WINDOW_START = NOW - timedelta(hours=24)
HOUR = timedelta(hours=1)

SENTINEL = "__pwned"
# One payload per context; each would set window.__pwned (or inject an element) if it were not escaped.
SCRIPT_TAG = "<script>window.__pwned=1</script>"
ATTR_BREAK = '"><img src=x onerror="window.__pwned=1">'
SCRIPT_CLOSE = "</script><script>window.__pwned=1</script>"
SVG_ONLOAD = "<svg onload=window.__pwned=1>"
SINGLE_QUOTE_ATTR = "' onmouseover='window.__pwned=1' x='"
COMMENT_OPEN = "<!--"
TITLE_CLOSE = "</title><script>window.__pwned=1</script>"
SVG_TITLE_CLOSE = "</title></svg><img src=x onerror=window.__pwned=1>"

# Connector names as the telemetry spells them (each its own connector).
NAMES = {
    "spray": f"Hybrid Relay {SCRIPT_TAG}",
    "supply": f"Partner Smarthost {SCRIPT_CLOSE}",
    "review": f"Gateway {SVG_ONLOAD} {SVG_TITLE_CLOSE}",
    "expected": f"Migration {ATTR_BREAK}\nline\u2028sep\u2029end \u202eevil",
    "quiet": f"Archive {COMMENT_OPEN} {{{{x}}}} {SINGLE_QUOTE_ATTR} {TITLE_CLOSE}",
    "plain": "Contoso Partner Relay",
}
ATTACKER_UPN = f"admin{ATTR_BREAK}@contoso.example"
USUAL_UPN = "it.admin@contoso.example"
NEVER_SEEN = [f"victim{i}.example" for i in range(12)] + [f"{SCRIPT_CLOSE}.example"]
KNOWN = ["fabrikam.example", f"{SVG_ONLOAD}.example", "northwind.example"]
URLS = ["javascript:window.__pwned=1", f"https://evil.example/login?u={SCRIPT_TAG}", "https://phish.example/a\u2028b"]


def _traffic(
    hour: datetime,
    messages: int,
    *,
    ips: list[str],
    header: list[str],
    envelope: list[str],
    mismatched: int = 0,
    no_oid: int = 0,
    threats: int = 0,
    tag: str = "m",
) -> dict[str, Any]:
    return {
        "Hour": hour,
        "Messages": messages,
        "Mismatched": mismatched,
        "NoSenderObjectId": no_oid,
        "ExternalMessages": messages,
        "ThreatMessages": threats,
        "UrlMessages": threats,
        "AttachmentMessages": 0,
        "SourceIPs": ips,
        "HeaderDomains": header,
        "EnvelopeDomains": envelope,
        "Directions": ["Outbound"],
        "SampleMessageIds": [f"{tag}-{hour:%d%H}-{i}" for i in range(min(messages, 2))],
    }


def _steady(start: datetime, end: datetime, per_hour: int, **kw: Any) -> list[dict[str, Any]]:
    rows, h = [], start
    while h < end:
        rows.append(_traffic(h, per_hour + (h.hour % 5), **kw))
        h += HOUR
    return rows


def _change(
    t: datetime,
    name: str,
    op: str,
    upn: str,
    oid: str,
    *,
    country: str,
    city: str,
    isp: str,
    ip: str,
    params: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "Timestamp": t,
        "Connector": name,
        "ConnectorType": "Inbound",
        "Operation": op,
        "ActionType": f"{op}-InboundConnector",
        "Enabled": True,
        "Parameters": params or [],
        "AccountObjectId": oid,
        "AccountId": upn,
        "IPAddress": ip,
        "CountryCode": country,
        "City": city,
        "Isp": isp,
        "ReportId": f"r-{oid}-{t:%H%M}",
    }


def _facts(
    name: str,
    *,
    changes: list[dict[str, Any]],
    window: list[dict[str, Any]],
    history: list[dict[str, Any]],
    policy: Policy,
    **kw: Any,
) -> ConnectorFacts:
    last = changes[-1]["Timestamp"] if changes else None
    baseline = connector_baseline(
        name,
        history,
        window_start=WINDOW_START,
        last_change=last,
        created_in_lookback=any(c["Operation"] == "New" for c in changes),
        policy=policy,
    )
    defaults: dict[str, Any] = {
        "recipients": {},
        "sender_domains": {},
        "urls": None,
        "attachments": None,
        "alerts": [],
        "admins": {},
    }
    defaults.update(kw)
    return ConnectorFacts(
        connector=name,
        connector_type="Inbound",
        window_start=WINDOW_START,
        window_end=NOW,
        changes=changes,
        window_rows=window,
        baseline=baseline,
        **defaults,
    )


def _usual_admin() -> AdminProfile:
    return AdminProfile("oid-usual", USUAL_UPN, {"NL"}, {"kpn"}, has_history=True)


def hostile_sweep() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(verdicts, sweep)`` shaped as :mod:`grading.sweep` returns them."""
    policy = Policy()
    history_start = WINDOW_START - timedelta(days=7)
    usual_ips = ["198.51.100.10"]
    ordinary = {"ips": usual_ips, "header": ["contoso.example"], "envelope": ["contoso.example"]}

    # A compromised admin creates a connector and sprays phishing to never-seen domains.
    attacker = AdminProfile("oid-attacker", ATTACKER_UPN, set(), set(), has_history=False)
    burst_success = NOW - timedelta(hours=9, minutes=12)
    attacker.bursts.append(
        {
            "Failures": 180,
            "FirstFailure": burst_success - timedelta(seconds=58),
            "LastFailure": burst_success - timedelta(seconds=4),
            "SuccessTime": burst_success,
            "SuccessIP": "203.0.113.66",
            "Location": f"Lagos, NG {SVG_ONLOAD}",
            "Isp": f"Evil ISP {SCRIPT_TAG}",
            "Succeeded": True,
        }
    )
    attacker.new_logon_locations.append(
        {"Location": "Lagos, NG", "Isp": "Evil ISP", "FirstSuccessInLookback": burst_success}
    )
    created = burst_success + timedelta(hours=1, minutes=40)
    spray_changes = [
        _change(
            created,
            NAMES["spray"],
            "New",
            ATTACKER_UPN,
            "oid-attacker",
            country="NG",
            city="Lagos",
            isp=f"Evil ISP {SCRIPT_TAG}",
            ip="203.0.113.66",
            params=[
                {"Name": "SenderIPAddresses", "Value": f"203.0.113.0/24 {ATTR_BREAK}"},
                {"Name": "Name", "Value": NAMES["spray"]},
            ],
        )
    ]
    spray_window = [
        _traffic(
            h,
            900 + 37 * i,
            ips=["203.0.113.7", "203.0.113.8"],
            header=["contoso.example"],
            envelope=[f"bulk{i}.example", f"{SCRIPT_TAG}.example"],
            mismatched=880 + 37 * i,
            no_oid=900 + 37 * i,
            threats=40,
            tag="spray",
        )
        for i, h in enumerate(created.replace(minute=0) + HOUR * k for k in range(1, 8))
    ]
    spray = _facts(
        NAMES["spray"],
        changes=spray_changes,
        window=spray_window,
        history=[],
        policy=policy,
        recipients={
            False: {"Domains": 460, "Messages": 6500, "SampleDomains": NEVER_SEEN},
            True: {"Domains": 1, "Messages": 3, "SampleDomains": KNOWN[:1]},
        },
        sender_domains={
            "Envelope": {"Domains": 7, "SampleDomains": [f"{SCRIPT_TAG}.example", "bulk0.example"]},
            "Header": {"Domains": 0, "SampleDomains": []},
        },
        urls={"SampleUrls": URLS},
        alerts=[{"AlertId": f"da-{SCRIPT_CLOSE}", "Title": f"Suspicious connector {NAMES['spray']}"}],
        admins={"oid-attacker": attacker},
    )

    # A long-standing partner connector, re-pointed from a new country, phishing known correspondents.
    changed = NOW - timedelta(hours=6, minutes=25)
    usual = _usual_admin()
    supply_changes = [
        _change(
            changed,
            NAMES["supply"],
            "Set",
            USUAL_UPN,
            "oid-usual",
            country="RU",
            city="Moscow",
            isp="Unknown Hosting",
            ip="192.0.2.99",
            params=[{"Name": "SmartHosts", "Value": f"mx.{SVG_ONLOAD}.example"}],
        )
    ]
    supply_history = _steady(history_start, WINDOW_START, 60, **ordinary, tag="sup")
    supply_window = _steady(WINDOW_START, changed.replace(minute=0), 60, **ordinary, tag="sup") + [
        _traffic(
            changed.replace(minute=0) + HOUR * k,
            400,
            ips=["192.0.2.10"],
            header=["contoso.example"],
            envelope=["lookalike.example"],
            mismatched=390,
            no_oid=395,
            threats=12,
            tag="sup",
        )
        for k in range(1, 6)
    ]
    supply = _facts(
        NAMES["supply"],
        changes=supply_changes,
        window=supply_window,
        history=supply_history,
        policy=policy,
        recipients={True: {"Domains": 3, "Messages": 1900, "SampleDomains": KNOWN}},
        sender_domains={"Envelope": {"Domains": 1, "SampleDomains": ["lookalike.example"]}},
        urls={"SampleUrls": URLS[1:]},
        admins={"oid-usual": usual},
    )

    # New source IPs and sender domains on an old connector: suspicious, not conclusive.
    review_history = _steady(history_start, WINDOW_START, 30, **ordinary, tag="rev")
    review_window = _steady(
        WINDOW_START,
        NOW,
        30,
        ips=["198.51.100.10", f"10.0.0.1{ATTR_BREAK}"],
        header=["contoso.example", f"{TITLE_CLOSE}.example"],
        envelope=["contoso.example"],
        tag="rev",
    )
    for row in review_window[-4:]:  # a late surge well above its band
        row["Messages"] = 240
    review = _facts(NAMES["review"], changes=[], window=review_window, history=review_history, policy=policy)

    # The usual admin changes a connector from the usual place: expected activity.
    expected_change = NOW - timedelta(hours=30)
    expected = _facts(
        NAMES["expected"],
        changes=[
            _change(
                expected_change,
                NAMES["expected"],
                "Set",
                USUAL_UPN,
                "oid-usual",
                country="NL",
                city="Amsterdam",
                isp="KPN",
                ip="198.51.100.20",
            )
        ],
        window=_steady(WINDOW_START, NOW, 20, **ordinary, tag="exp"),
        history=_steady(history_start, expected_change, 20, **ordinary, tag="exp"),
        policy=policy,
        admins={"oid-usual": _usual_admin()},
    )

    quiet = _facts(
        NAMES["quiet"],
        changes=[],
        window=_steady(WINDOW_START, NOW, 5, **ordinary, tag="q"),
        history=_steady(history_start, WINDOW_START, 5, **ordinary, tag="q"),
        policy=policy,
    )
    plain = _facts(
        NAMES["plain"],
        changes=[],
        window=_steady(WINDOW_START, NOW, 80, **ordinary, tag="p"),
        history=_steady(history_start, WINDOW_START, 80, **ordinary, tag="p"),
        policy=policy,
    )
    for facts in (spray, supply, review, expected, quiet, plain):
        facts.other_senders = [
            {
                "sender": f"ceo{ATTR_BREAK}@contoso.example",
                "senderObjectId": "u-1",
                "messages": 340,
                "peakMessagesPerHour": 210,
                "mismatched": 0,
            }
        ]

    verdicts = [grade(f, policy) for f in (spray, supply, review, expected, quiet, plain)]
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v["classification"]] = counts.get(v["classification"], 0) + 1
    sweep = {
        "sweepId": "20261120T000000Z-test",
        "source": "local",
        "dialect": "ah",
        "windowStart": "2026-11-19T00:00:00Z",
        "windowEnd": "2026-11-20T00:00:00Z",
        "changeStart": "2026-11-13T00:00:00Z",
        "historyStart": "2026-11-12T00:00:00Z",
        "tenantDomains": ["contoso.example"],
        "queries": [
            {
                "name": "connector_traffic",
                "rows": 120,
                "complete": True,
                "truncated": False,
                "checked": True,
                "reason": None,
                "elapsedSeconds": 0.2,
            }
        ],
        "queryCount": 1,
        "rowsReturned": 120,
        "connectors": len(verdicts),
        "counts": counts,
        "complete": True,
        "errors": [],
        "notChecked": [f"alerts: AlertInfo absent {SCRIPT_TAG}"],
        "durationSeconds": 1.5,
    }
    return verdicts, sweep
