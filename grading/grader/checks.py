"""Checks: one playbook question each, a function from a connector's facts to findings.

Each finding says what was seen, why it counts, how strong it is (a policy weight) and its
evidence. Why not the playbook's fixed thresholds: every traffic signal is judged against the
connector's own history, so a busy partner is not a true positive for being busy, a bulk mailer
whose envelope always differed is judged against itself, and a slow abuse is caught by what its
mail looks like, not by its rate.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from grading.grader.facts import (
    ADMIN_COMPROMISE,
    CHANGE,
    PHISHING,
    Check,
    ConnectorFacts,
    Finding,
    admin_name,
    new_finding,
    place_of,
    sample_values,
)
from grading.policy import Policy

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
            new_finding(
                policy,
                "configuration",
                "connector_created",
                "low",
                f"Connector created {created['Timestamp']:%Y-%m-%d %H:%M} UTC by {admin_name(facts, created)}",
                {"time": created["Timestamp"], "by": admin_name(facts, created), "from": place_of(created)},
                CHANGE,
            )
        )
    modified = [c for c in facts.changes if c["Operation"] == "Set"]
    if modified:
        last = modified[-1]
        out.append(
            new_finding(
                policy,
                "configuration",
                "connector_changed",
                "low",
                f"Connector changed {len(modified)} time(s), last {last['Timestamp']:%Y-%m-%d %H:%M} UTC by "
                f"{admin_name(facts, last)}",
                {
                    "time": last["Timestamp"],
                    "by": admin_name(facts, last),
                    "from": place_of(last),
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
        who = admin_name(facts, changes[0])
        if who.lower() in policy.expected_admins or oid.lower() in policy.expected_admins:
            continue
        first = changes[0]
        if admin is None or not admin.has_history:
            out.append(
                new_finding(
                    policy,
                    "configuration",
                    "change_by_admin_without_history",
                    "medium",
                    f"{len(changes)} change(s) by {who}, who has no admin or logon history before the change "
                    f"lookback (first: {first['Operation']} from {place_of(first)})",
                    {"by": who, "times": [c["Timestamp"] for c in changes], "from": place_of(first)},
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
                new_finding(
                    policy,
                    "configuration",
                    "change_from_new_country",
                    "high",
                    f"{c['Operation']} by {who} from {place_of(c)}, a country this admin never worked from "
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
                new_finding(
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
                new_finding(
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
                    new_finding(
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
                new_finding(
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
        new_finding(
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
            new_finding(
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
            new_finding(
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
            new_finding(
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
        new_finding(
            policy,
            "recipients",
            "supply_chain_targeting",
            "high",
            f"Forged-looking mail went to {known['Domains']} domains of the tenant's customers/vendors "
            f"({known.get('Messages') or 0} messages): a supply-chain attack on its correspondents",
            {
                "knownDomains": known["Domains"],
                "messages": known.get("Messages") or 0,
                "sample": sample_values(known.get("SampleDomains"), 10),
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
            new_finding(
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
            new_finding(
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
            new_finding(
                policy,
                "artifacts",
                "threat_verdicts",
                "high",
                f"{threats} message(s) carry a Defender threat verdict (ThreatTypes)",
                {"threatMessages": threats, "urls": sample_values((facts.urls or {}).get("SampleUrls"), 10)},
                PHISHING,
            )
        )
    if facts.attachments and (facts.attachments.get("MaliciousMessages") or 0) > 0:
        a = facts.attachments
        out.append(
            new_finding(
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
        new_finding(
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
