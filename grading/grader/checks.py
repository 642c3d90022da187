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

from grading.grader.configuration import (
    ConfigDiff,
    assess,
    current_configuration,
    drift,
    in_ranges,
    parameters_of,
    replay,
    split_list,
)
from grading.grader.facts import (
    ACT,
    ADMIN_COMPROMISE,
    BENIGN,
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
from grading.grader.transport_rules import BYPASS, HEADERS, REDIRECT, ROUTE, link
from grading.policy import Policy

# ---------------------------------------------------------------------------------------------
# Checks: one playbook question each.


def _known_domains(facts: ConnectorFacts) -> set[str]:
    known = facts.recipients.get(True) or {}
    return {d.lower() for d in [*facts.tenant_domains, *(known.get("SampleDomains") or ())] if d}


def config_diffs(facts: ConnectorFacts, policy: Policy) -> list[ConfigDiff]:
    """The lookback's changes as diffs against what came before them, each with its risks assessed."""
    cached = facts.__dict__.get("_config_diffs")
    if cached is not None:
        return cached
    recent = {id(c) for c in facts.changes}
    known_ips = set(facts.baseline.summary.source_ips)
    # Only a change that names the connector needs the other names (read lazily: the list is the tenant's).
    others = facts.other_connectors
    diffs = [
        assess(d, known_domains=_known_domains(facts), known_ips=known_ips, other_connectors=others,
               broad_prefix_v4=policy.broad_sender_prefix, broad_addresses=policy.broad_sender_addresses)
        for d in replay(facts.history_changes, facts.config_snapshot)
        if id(d.change) in recent
    ]
    _mark_approved(facts, diffs, policy)
    facts.__dict__["_config_diffs"] = diffs  # several checks and the evidence read them: computed once
    return diffs


def approved_drift(facts: ConnectorFacts, policy: Policy) -> ConfigDiff | None:
    """The connector's current configuration as a diff from its approved one (None without an approval):
    the current configuration is the latest of the approval and the inventory snapshot, with every later
    change applied over it. Its risks are assessed like a change's (one reading of what a setting does)."""
    if facts.approved is None:
        return None
    cached = facts.__dict__.get("_approved_drift")
    if cached is not None:
        return cached
    approved = facts.approved.get("configuration") or {}
    base, base_time = approved, facts.approved.get("approvedAt")
    inventory = facts.inventory or {}
    refreshed = inventory.get("refreshedAt")
    if inventory.get("configuration") and refreshed is not None and (base_time is None or refreshed > base_time):
        base, base_time = inventory["configuration"], refreshed
    d = drift(approved, current_configuration(base, base_time, facts.history_changes))
    assess(d, known_domains=_known_domains(facts), known_ips=set(facts.baseline.summary.source_ips),
           other_connectors=[], broad_prefix_v4=policy.broad_sender_prefix,
           broad_addresses=policy.broad_sender_addresses)
    facts.__dict__["_approved_drift"] = d
    return d


def _mark_approved(facts: ConnectorFacts, diffs: list[ConfigDiff], policy: Policy) -> None:
    """A change approved afterwards (the approval is later, and what the change set has not drifted since)
    is what the organisation wants: its risks are told, marked ``approved``, and are no malicious act."""
    if facts.approved is None or facts.approved.get("approvedAt") is None:
        return
    d = approved_drift(facts, policy)
    drifted = set(d.changed) if d is not None else set()
    for diff in diffs:
        if diff.change["Timestamp"] <= facts.approved["approvedAt"] and not (set(diff.changed) & drifted):
            for risk in diff.risks:
                risk["approved"] = True
                risk["act"] = False


def connector_kind(facts: ConnectorFacts) -> str:
    """``partner`` (inbound mail from another organisation's servers: no SenderObjectId by nature),
    ``relay`` (the organisation's own servers or apps: its senders are tenant accounts) or ``outbound``.
    From the declared ConnectorType where a change says it, else from the direction of its mail."""
    declared = ""
    for c in facts.history_changes:
        value = parameters_of(c).get("connectortype")
        if value:
            declared = value.lower()
    if facts.connector_type == "Outbound":
        return "outbound"
    if declared == "partner":
        return "partner"
    if declared == "onpremises":
        return "relay"
    directions = facts.graded_summary().directions
    return "partner" if directions == {"Inbound"} else "relay" if directions else "unknown"


def explained_travel(facts: ConnectorFacts, policy: Policy) -> dict[tuple[str, str], dict[str, Any]]:
    """(admin object id, country) -> the sign-in evidence that the admin was travelling there."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for c in facts.changes:
        oid = c.get("AccountObjectId") or ""
        admin = facts.admins.get(oid)
        country = (c.get("CountryCode") or "").upper()
        if admin and country and country not in admin.usual_countries and (oid, country) not in out:
            ev = admin.travel(country, c["Timestamp"], policy)
            if ev:
                out[(oid, country)] = ev
    return out


def check_configuration(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q2: was the connector created or changed recently, by whom, from where, and what did the change do?

    Each change is read as before -> after against the connector's previous configuration; what it did
    (smart hosts moved, TLS dropped, sender addresses widened, a look-alike name...) is weighed on its
    own. Each admin signal counts once per admin, however many changes that admin made: ten tweaks from a
    new ISP are one fact about the admin, not ten."""
    out: list[Finding] = []
    diffs = config_diffs(facts, policy)
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
    sets = [d for d in diffs if d.change["Operation"] == "Set"]
    material = [d for d in sets if not d.cosmetic]
    if material:
        last = material[-1].change
        out.append(
            new_finding(
                policy,
                "configuration",
                "connector_changed",
                "low",
                f"Connector changed {len(material)} time(s), last {last['Timestamp']:%Y-%m-%d %H:%M} UTC by "
                f"{admin_name(facts, last)}",
                {
                    "time": last["Timestamp"],
                    "by": admin_name(facts, last),
                    "from": place_of(last),
                    "parameters": sorted({p["Name"] for p in last.get("Parameters") or () if p.get("Name")}),
                    "diff": material[-1].as_rows(),
                },
                CHANGE,
            )
        )
    elif sets:
        last = sets[-1]
        out.append(
            Finding(
                "configuration",
                "informational",
                f"Only the name or comment changed ({', '.join(r['parameter'] for r in last.as_rows()) or 'nothing'})"
                f", by {admin_name(facts, last.change)}: benign by itself",
                {"time": last.change["Timestamp"], "by": admin_name(facts, last.change), "diff": last.as_rows()},
                0,
                frozenset({CHANGE}),
                "cosmetic_change",
            )
        )
    for d in diffs:
        for risk in d.risks:
            act = bool(risk["act"])
            if risk.get("approved"):
                out.append(_approved_risk(facts, d, risk))
                continue
            out.append(
                new_finding(
                    policy,
                    "configuration",
                    risk["kind"],
                    "high" if act else "low",
                    f"{d.change['Operation']}-{facts.connector_type if facts.connector_type != 'Unknown' else ''}"
                    f"Connector at {d.change['Timestamp']:%Y-%m-%d %H:%M} UTC by {admin_name(facts, d.change)}: "
                    f"{risk['detail']}",
                    {
                        "time": d.change["Timestamp"],
                        "by": admin_name(facts, d.change),
                        "diff": d.as_rows(),
                        **{k: v for k, v in risk.items() if k not in ("kind", "act", "detail")},
                    },
                    *((ACT, CHANGE) if act else (CHANGE,)),
                )
            )
    travel = explained_travel(facts, policy)
    out.extend(_actor_session(facts, policy, travel))
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
            explained = [travel[(oid, k)] for k in countries if (oid, k) in travel]
            if explained and len(explained) == len(countries):
                ev = explained[0]
                out.append(
                    new_finding(
                        policy,
                        "configuration",
                        "travel_with_strong_authentication",
                        "informational",
                        f"{who} was travelling in {', '.join(countries)}: {ev['strongSignIns']} Entra sign-in(s) "
                        f"there with MFA satisfied from a managed device and no risk, on {ev['strongDays']} days "
                        f"since {ev['firstStrongSignIn']:%Y-%m-%d %H:%M} UTC, before the change",
                        {"by": who, "travel": explained},
                        BENIGN,
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


def _approved_risk(facts: ConnectorFacts, d: ConfigDiff, risk: dict[str, Any]) -> Finding:
    approval = facts.approved or {}
    return Finding(
        "configuration",
        "informational",
        f"{d.change['Operation']}-Connector at {d.change['Timestamp']:%Y-%m-%d %H:%M} UTC by "
        f"{admin_name(facts, d.change)}: {risk['detail']}; approved afterwards by "
        f"{approval.get('approvedBy') or 'unknown'} ({approval.get('reason') or 'no reason given'})",
        {"time": d.change["Timestamp"], "by": admin_name(facts, d.change), "diff": d.as_rows(),
         "approvedBy": approval.get("approvedBy"), "approvedAt": approval.get("approvedAt"),
         "reason": approval.get("reason")},
        0,
        frozenset({CHANGE}),
        risk["kind"],
    )


def check_approved_configuration(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Does the connector still look like its approved configuration? Drift is weighed by the risk of what
    drifted (the same reading as a change: :func:`grading.grader.configuration.assess`), less what the
    lookback's changes already weigh; a connector whose changes were approved afterwards has a benign
    explanation. A connector with no approved configuration is graded without this check."""
    d = approved_drift(facts, policy)
    if d is None:
        return []
    approval = facts.approved or {}
    who = {"approvedBy": approval.get("approvedBy"), "approvedAt": approval.get("approvedAt"),
           "reason": approval.get("reason")}
    if not d.changed:
        approved_at = approval.get("approvedAt")
        covered = [c for c in facts.changes if approved_at is not None and c["Timestamp"] <= approved_at
                   and c["Operation"] != "Remove"]
        if not covered:
            return []
        return [new_finding(
            policy, "configuration", "approved_configuration", "informational",
            f"The connector's changes were approved afterwards by {who['approvedBy'] or 'unknown'} "
            f"({who['reason'] or 'no reason given'}) and it has not drifted since",
            {**who, "changes": len(covered)}, BENIGN,
        )]
    already = {r["kind"] for c in config_diffs(facts, policy) for r in c.risks if not r.get("approved")}
    fresh = [r for r in d.risks if r["kind"] not in already]
    act = any(r["act"] for r in fresh)
    weight = max(policy.weight("approved_drift"), sum(policy.weight(r["kind"]) for r in fresh))
    details = "; ".join(r["detail"] for r in d.risks) or "no risky setting by itself"
    return [Finding(
        "configuration",
        "high" if act else "medium",
        f"Drifted from the configuration approved by {who['approvedBy'] or 'unknown'}: "
        f"{', '.join(r['parameter'] for r in d.as_rows())} ({details})",
        {**who, "drift": d.as_rows(), "risks": [r["kind"] for r in d.risks]},
        weight,
        frozenset({ACT, CHANGE} if act else {CHANGE}),
        "approved_drift",
    )]


ACTION_WORDS = {ROUTE: "routes mail through the connector", BYPASS: "bypasses spam filtering (SCL -1 or a bypass "
                "header)", HEADERS: "removes or rewrites headers", REDIRECT: "redirects or copies mail"}


DONE = {"New": "created", "Set": "changed", "Enable": "enabled"}


def linked_rules(facts: ConnectorFacts) -> list[dict[str, Any]]:
    """The tenant's transport rules that concern this connector, with how, what they do and who changed them."""
    if not facts.transport_rules:
        return []
    cached = facts.__dict__.get("_linked_rules")
    if cached is not None:
        return cached
    ips: list[str] = []
    domains: set[str] = set()
    configs = [parameters_of(c) for c in facts.history_changes]
    configs += [x.get("configuration") or {} for x in (facts.approved, facts.inventory) if x]
    for cfg in configs:
        ips += split_list(cfg.get("senderipaddresses", ""))
        domains |= {d.lower() for p in ("senderdomains", "recipientdomains") for d in split_list(cfg.get(p, ""))}
    ips += [ip for r in facts.window_rows for ip in r.get("SourceIPs") or ()]
    header = facts.sender_domains.get("Header") or {}
    domains |= {str(d).lower() for d in header.get("SampleDomains") or ()}
    out = []
    for rule in facts.transport_rules:
        how = link(rule, [facts.connector, *facts.previous_names], ips, domains)
        if how is None:
            continue
        out.append({"rule": rule, "link": how})
    facts.__dict__["_linked_rules"] = out
    return out


def rule_evidence(facts: ConnectorFacts, rule: Any, how: str) -> dict[str, Any]:
    return {
        "rule": rule.name, "linkedBy": how, "actions": rule.actions(), "enabled": rule.enabled,
        "removed": rule.removed,
        "changes": [{"time": c["Timestamp"], "operation": c["Operation"], "by": admin_name(facts, c),
                     "from": place_of(c)} for c in rule.changes[-5:]],
    }


def check_transport_rules(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Mail-flow rules that concern the connector: a rule that routes through it, bypasses filtering, rewrites
    headers or redirects mail, created or changed in the lookback by the admin who also changed the connector, is
    a malicious act (one configuration change spread over two objects); by someone else, context. Long-standing
    rules, disabled or removed ones, and rules that only add disclaimers or encrypt do not count."""
    out: list[Finding] = []
    since = facts.change_start or facts.window_start
    connector_actors = {c.get("AccountObjectId") for c in facts.changes if c.get("AccountObjectId")}
    for item in linked_rules(facts):
        rule, how = item["rule"], item["link"]
        actions = rule.actions()
        recent = rule.recent_changes(since)
        if not actions or not recent or rule.removed or not rule.enabled:
            continue
        same = connector_actors & {c.get("AccountObjectId") for c in recent}
        last = recent[-1]
        what = "; ".join(ACTION_WORDS[a] for a in actions)
        evidence = rule_evidence(facts, rule, how)
        if same:
            out.append(new_finding(
                policy, "configuration", "transport_rule_same_actor", "high",
                f"Transport rule {rule.name!r} ({what}), linked to this connector by {how}, was "
                f"{DONE[last['Operation']]} {last['Timestamp']:%Y-%m-%d %H:%M} UTC by {admin_name(facts, last)}, "
                "who also changed the connector",
                evidence, ACT, CHANGE,
            ))
        else:
            out.append(new_finding(
                policy, "configuration", "transport_rule_linked", "medium",
                f"Transport rule {rule.name!r} ({what}), linked to this connector by {how}, changed "
                f"{last['Timestamp']:%Y-%m-%d %H:%M} UTC by {admin_name(facts, last)}",
                evidence, CHANGE,
            ))
    return out


def _hosting(isp: str, policy: Policy) -> bool:
    text = isp.lower()
    return any(word in text for word in policy.hosting_isp_words)


def _actor_session(facts: ConnectorFacts, policy: Policy,
                   travel: dict[tuple[str, str], dict[str, Any]]) -> list[Finding]:
    """Where the session behind a change came from: a hosting provider's address (not a residential or mobile
    ISP) new to the admin, and a change from a country where the admin never signed in interactively (a
    token used elsewhere than where it was issued). Context: both raise confidence, neither is an act."""
    out: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for c in facts.changes:
        oid = c.get("AccountObjectId") or ""
        admin = facts.admins.get(oid)
        if admin is None or not admin.has_history or c["Operation"] == "Remove":
            continue
        who = admin_name(facts, c)
        isp = c.get("Isp") or ""
        country = (c.get("CountryCode") or "").upper()
        # Days of strong sign-ins in that country (travel) explain its network too (a hotel's or a VPN's).
        if (isp and isp.lower() not in admin.usual_isps and _hosting(isp, policy) and (oid, "isp") not in seen
                and (oid, country) not in travel):
            seen.add((oid, "isp"))
            out.append(new_finding(
                policy, "adminCompromise", "change_from_hosting_provider", "medium",
                f"{c['Operation']} by {who} from {place_of(c)}: a hosting provider's address, new for this admin",
                {"by": who, "time": c["Timestamp"], "isp": isp, "ip": c.get("IPAddress")},
            ))
        if not country or country in admin.usual_countries or (oid, country) in travel or (oid, "token") in seen:
            continue
        signed_in = any(
            _country_of(loc.get("Location") or "") == country and loc.get("FirstSuccessInLookback") is not None
            and loc["FirstSuccessInLookback"] <= c["Timestamp"]
            for loc in admin.new_logon_locations
        ) or any(
            (r.get("Country") or "").upper() == country and (r.get("Successes") or 0) > 0
            and r.get("FirstSeen") is not None and r["FirstSeen"] <= c["Timestamp"]
            for r in admin.signins
        )
        if not signed_in:
            seen.add((oid, "token"))
            out.append(new_finding(
                policy, "adminCompromise", "change_without_sign_in", "medium",
                f"{c['Operation']} by {who} from {country}, where this admin never signed in interactively before "
                "the change: a session token used from elsewhere",
                {"by": who, "time": c["Timestamp"], "country": country, "ip": c.get("IPAddress")},
            ))
    return out


def check_admin_compromise(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q7: do the admins who changed the connector look compromised (burst then success, new places)?

    A compromise counts against this connector only when it came before the admin's change to it (within
    ``compromise_to_change_hours``); a compromise at another time (after a legitimate change, say) is
    weak context. One finding per admin and signal: repeated bursts or several new places are evidence,
    not extra weight."""
    out: list[Finding] = []
    travel = explained_travel(facts, policy)
    for oid, admin in facts.admins.items():
        changes = [c for c in facts.changes if c.get("AccountObjectId") == oid]
        bursts = admin.successful_bursts
        if bursts:
            window = timedelta(hours=policy.compromise_to_change_hours)
            tied = [
                (c, b["SuccessTime"])
                for b in bursts
                for c in changes
                if b.get("SuccessTime") and timedelta(0) <= c["Timestamp"] - b["SuccessTime"] <= window
            ]
            burst = bursts[0]
            success = burst.get("SuccessTime")
            evidence = {
                "admin": admin.label(),
                "failures": burst["Failures"],
                "firstFailure": burst.get("FirstFailure"),
                "lastFailure": burst.get("LastFailure"),
                "successTime": success,
                "successIP": burst.get("SuccessIP"),
                "location": burst.get("Location"),
                "isp": burst.get("Isp"),
                "bursts": len(bursts),
            }
            text = (
                f"{admin.label()}: {burst['Failures']} failed logons within a minute from "
                f"{burst.get('Location') or 'an unknown place'} ({burst.get('Isp') or 'unknown ISP'}), "
                f"then a successful logon at {success:%Y-%m-%d %H:%M:%S} UTC"
                + (f" ({len(bursts)} such bursts)" if len(bursts) > 1 else "")
            )
            if tied:
                out.append(new_finding(policy, "adminCompromise", "admin_burst_then_success", "high", text,
                                       evidence, ADMIN_COMPROMISE))
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
            else:
                out.append(
                    new_finding(
                        policy,
                        "adminCompromise",
                        "admin_compromised_at_another_time",
                        "low",
                        text + "; not before this admin's change to the connector (within "
                        f"{policy.compromise_to_change_hours:.0f} h), so it does not explain the change",
                        evidence,
                    )
                )
        # Without history every place is new: the configuration check already says so once.
        explained = {country for (o, country) in travel if o == oid}
        # A place first seen after the admin's last change to this connector does not explain the change.
        last_change = max((c["Timestamp"] for c in changes), default=None)
        places_new = [loc for loc in admin.new_logon_locations
                      if _country_of(loc.get("Location") or "") not in explained
                      and not (last_change and loc.get("FirstSuccessInLookback")
                               and loc["FirstSuccessInLookback"] > last_change)]
        if admin.has_history and places_new:
            places = [f"{loc.get('Location') or 'an unknown place'} ({loc.get('Isp') or 'unknown ISP'})"
                      for loc in places_new]
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
                            for loc in places_new
                        ],
                    },
                )
            )
    return out


def _country_of(location: str) -> str:
    return location.rsplit(",", 1)[-1].strip().upper() if location else ""


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
                ACT,
            )
        )
    kind = connector_kind(facts)
    # Inbound partner mail has no SenderObjectId by nature (no tenant account sent it); outbound and
    # on-premises relays carry the tenant's own senders, where an empty SenderObjectId is a signal.
    noobj = None if kind == "partner" else _ratio_rise(facts, policy, "no_sender_object_id")
    if noobj:
        count, total, ratio, base = noobj
        out.append(
            new_finding(
                policy,
                "senderMismatch",
                "no_sender_object_id",
                "medium",
                f"{count} of {total} messages ({ratio:.0%}) have no SenderObjectId (no tenant account sent them), "
                f"against {base:.0%} in {against}; a {kind} connector's senders should be tenant accounts",
                {"messages": count, "of": total, "ratio": round(ratio, 3), "baselineRatio": round(base, 3),
                 "connectorKind": kind},
                PHISHING,
            )
        )
    return out


def check_sender_history(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q6, across connectors: a changed or new connector whose every outside sender domain, in the header and
    the envelope, wrote to the tenant before the window (through any path) carries expected mail: a benign
    explanation. Forged mail brings an envelope domain nobody knew, so it never qualifies."""
    header = facts.sender_domains.get("Header") or {}
    envelope = facts.sender_domains.get("Envelope") or {}
    domains = header.get("Domains") or 0
    if not (facts.changes and domains and header.get("KnownDomains") == domains):
        return []
    if (envelope.get("Domains") or 0) != (envelope.get("KnownDomains") or 0):
        return []
    # Who wrote before explains the mail, not a dangerous setting: no discount beside one.
    if any(r["act"] for d in config_diffs(facts, policy) for r in d.risks):
        return []
    sample = sample_values(header.get("SampleDomains"), 5)
    return [
        new_finding(
            policy,
            "origins",
            "senders_known_before",
            "informational",
            f"Every outside sender domain of its mail ({', '.join(sample)}) corresponded with the tenant before "
            "the window: expected senders",
            {"headerDomains": domains, "sample": sample},
            BENIGN,
        )
    ]


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
                ACT,
            )
        )
    return out


def _suspect_mail(facts: ConnectorFacts, policy: Policy, row: dict[str, Any]) -> dict[str, Any] | None:
    """Whether the mail of a recipient_profile *row* looks forged or carries threats, judged against the
    connector's history: forged = enough mismatched messages, a share above the connector's historical
    mismatch share, and envelope domains it never used (forged mail brings its own; a billing service
    whose envelope always differed brings none); threat-laden = enough messages with a threat verdict."""
    messages = row.get("Messages") or 0
    if not messages:
        return None
    mismatched = row.get("Mismatched") or 0
    threats = row.get("ThreatMessages") or 0
    base = facts.baseline.summary.ratio(facts.baseline.summary.mismatched) if facts.baseline.exists else 0.0
    tenant = {d.lower() for d in facts.tenant_domains}
    new_envelopes = sorted(
        d for d in facts.graded_summary().envelope_domains - facts.baseline.summary.envelope_domains
        if d.lower() not in tenant
    ) if facts.baseline.exists else []
    forged = (mismatched >= policy.supply_chain_min_messages
              and mismatched / messages > base + policy.supply_chain_ratio_margin
              and (not facts.baseline.exists or bool(new_envelopes)))
    laden = threats >= policy.supply_chain_min_messages
    if not (forged or laden):
        return None
    what = []
    if forged:
        what.append(f"{mismatched} with an envelope domain different from the header ({mismatched / messages:.0%}, "
                    f"against {base:.0%} in its history"
                    + (f"; new envelope domains {', '.join(new_envelopes[:3])}" if new_envelopes else "") + ")")
    if laden:
        what.append(f"{threats} with a Defender threat verdict")
    return {"messages": messages, "mismatched": mismatched, "threatMessages": threats, "forged": forged,
            "baselineMismatchRatio": round(base, 3), "newEnvelopeDomains": new_envelopes[:10],
            "what": "; ".join(what)}


def check_supply_chain(facts: ConnectorFacts, policy: Policy, findings: list[Finding] | None = None) -> list[Finding]:
    """Q3 continued: forged-looking or threat-laden mail to the tenant's known correspondents, from a connector
    changed in the lookback. Judged on the mail to known correspondents itself, whatever the connector's
    overall mismatch share: a few phishing messages among much clean mail are still a supply-chain attack.
    A connector whose mail always mismatched (a partner's billing service) is judged against its history."""
    known = facts.recipients.get(True) or {}
    if not (facts.changes and (known.get("Domains") or 0) > 0):
        return []
    suspect = _suspect_mail(facts, policy, known)
    if not suspect:
        return []
    return [
        new_finding(
            policy,
            "recipients",
            "supply_chain_targeting",
            "high",
            f"Forged-looking or malicious mail went to {known['Domains']} domains of the tenant's customers/vendors "
            f"({suspect['messages']} messages: {suspect['what']}) after the connector changed: a supply-chain attack "
            "on its correspondents",
            {
                "knownDomains": known["Domains"],
                **{k: v for k, v in suspect.items() if k not in ("what", "forged")},
                "sample": sample_values(known.get("SampleDomains"), 10),
            },
            PHISHING,
            ACT,
        )
    ]


def check_internal_targeting(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q3 continued: forged-looking or threat-laden mail to the tenant's own users from a connector changed in
    the lookback. An inbound partner connector's mail to users is its purpose: there only threats count."""
    internal = facts.internal_recipients or {}
    if not (facts.changes and internal.get("Messages")):
        return []
    suspect = _suspect_mail(facts, policy, internal)
    if not suspect or (connector_kind(facts) == "partner" and not suspect["threatMessages"] >=
                       policy.supply_chain_min_messages):
        return []
    return [
        new_finding(
            policy,
            "recipients",
            "internal_targeting",
            "high",
            f"Forged-looking or malicious mail went to the tenant's own users ({suspect['messages']} messages: "
            f"{suspect['what']}) after the connector changed",
            {k: v for k, v in suspect.items() if k not in ("what", "forged")},
            PHISHING,
            ACT,
        )
    ]


def check_origins(facts: ConnectorFacts, policy: Policy) -> list[Finding]:
    """Q2/Q6: does the traffic come from new IPs, with sender domains the connector never used?"""
    if not facts.baseline.exists:
        return []
    out: list[Finding] = []
    window = facts.graded_summary()
    # Addresses a narrow, deliberate widening of SenderIPAddresses just allowed (a partner's new
    # datacentre) are expected by that change; the change itself is judged by the configuration check.
    allowed = [r for d in config_diffs(facts, policy) for risk in d.risks if risk["kind"] == "sender_ips_widened"
               for r in risk.get("added") or ()]
    new_ips = sorted(ip for ip in window.source_ips - facts.baseline.summary.source_ips if not in_ranges(ip, allowed))
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
                ACT,
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
                ACT,
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
    check_approved_configuration,
    check_transport_rules,
    check_admin_compromise,
    check_volume,
    check_sender_mismatch,
    check_sender_history,
    check_recipients,
    check_supply_chain,
    check_internal_targeting,
    check_origins,
    check_artifacts,
    check_alerts,
)
