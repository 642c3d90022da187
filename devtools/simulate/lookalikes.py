"""Labelled scenario pairs: each attack beside its benign look-alike (``simulate --look-alikes``).

Why pairs: a grader that decides from context (a new country, a change happened) gets one side of each
pair wrong; only one that reads what happened (what the change did, what the mail is, who signed in and
how) gets both right. Each pair differs in the evidence a careful analyst would weigh and shares the
context that would mislead a naive rule:

- travel_partner_connector / takeover_partner_connector: an admin in a new country creates a partner-like
  connector; the traveller signed in there for days with MFA from a managed device and the partner's mail
  is clean, the takeover signed in an hour before without MFA and relays forged mail.
- benign_rename / impersonating_name: a connector's name changes; one is a renamed connector with its
  history, the other a new connector whose name imitates an existing one with confusable letters.
- smarthost_partner_new_host / smarthost_hijack: an outbound connector's SmartHosts change; to a host of
  the partner's own domain with TLS kept, or to an unrelated domain with TLS dropped.
- widened_ips_partner_dc / widened_ips_hosting: SenderIPAddresses widened; by a /28 for the partner's new
  datacentre, or by a /16 with RestrictDomainsToIPAddresses turned off.
- partner_mail_no_object_id / relay_mail_no_object_id: a new connector's mail has no SenderObjectId;
  by nature for a partner's inbound mail, a signal for a relay claiming the tenant's users.
- supply_chain_low_share / partner_invoices: mismatched mail to known correspondents from a changed
  connector; a little phishing among much clean mail (under the mismatch-rise threshold), or a billing
  service whose envelope always differed. The attack's alert names no connector, only messages and an IP.
- internal_phishing / internal_notifications: mismatched mail to the tenant's own users from a changed
  relay; phishing from a new envelope domain with threat verdicts, or an application's notifications
  whose envelope always was its service's domain.
- change_before_compromise: an admin's legitimate change, then days later a password spray that works
  (its look-alike is compromised_admin_spray, where the compromise comes first).

Everything is drawn from its own seeded generator, after the base plan, so the base scenarios are the
same with or without the pairs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devtools.simulate.activity import (
    Identity,
    admin_routine,
    alert,
    burst,
    cmdlet,
    logon,
)
from devtools.simulate.arrays import DAY_US, HOUR_US, MINUTE_US, guid_list, hex_ids, iso, random_words
from devtools.simulate.scenarios import (
    Connector,
    Plan,
    Stream,
    _attacker_domains,
    _hosts,
    _label,
    flat_rate,
    office_rate,
)
from devtools.simulate.tenant import (
    FIRST_NAMES,
    FOREIGN_LOCATIONS,
    LAST_NAMES,
    SPAM_TLDS,
    Admin,
    Location,
    new_prefix,
)

HOSTING_ISPS = ("DigitalOcean, LLC", "OVH SAS", "Hetzner Online GmbH", "Choopa, LLC")
# Latin letters and the Cyrillic letters that look the same.
CONFUSABLE = {"a": "а", "e": "е", "o": "о", "c": "с", "p": "р", "i": "і", "x": "х", "y": "у"}

LOOK_ALIKE_IDS = (
    "travel_partner_connector",
    "takeover_partner_connector",
    "benign_rename",
    "impersonating_name",
    "smarthost_partner_new_host",
    "smarthost_hijack",
    "widened_ips_partner_dc",
    "widened_ips_hosting",
    "partner_mail_no_object_id",
    "relay_mail_no_object_id",
    "supply_chain_low_share",
    "partner_invoices",
    "change_before_compromise",
    "internal_phishing",
    "internal_notifications",
    "rule_unfilters_new_connector",
    "rule_routes_through_connector",
    "long_standing_rules_busy_partner",
    "approved_drift_hosting",
    "approved_migration",
)


def entra_signin(rng: np.random.Generator, ts: int, who: Identity, loc: Location, ip: str, *, strong: bool,
                 ok: bool = True) -> dict[str, Any]:
    """One AADSignInEventsBeta row: a strong sign-in satisfied MFA from a managed, compliant device."""
    return {
        "Timestamp": ts,
        "Application": "Office 365 Exchange Online",
        "ApplicationId": "00000002-0000-0ff1-ce00-000000000000",
        "LogonType": '["interactiveUser"]',
        "ErrorCode": 0 if ok else 50126,
        "CorrelationId": guid_list(rng, 1)[0],
        "SessionId": guid_list(rng, 1)[0],
        "AccountDisplayName": who.display_name,
        "AccountObjectId": who.object_id,
        "AccountUpn": who.upn,
        "IsExternalUser": 0,
        "IsGuestUser": False,
        "DeviceName": "LT-" + who.upn.split("@")[0][:8].upper() if strong else "",
        "OSPlatform": "Windows" if strong else "Linux",
        "DeviceTrustType": "Azure AD joined" if strong else "",
        "IsManaged": 1 if strong else 0,
        "IsCompliant": 1 if strong else 0,
        "AuthenticationRequirement": "multiFactorAuthentication" if strong else "singleFactorAuthentication",
        "RiskLevelAggregated": 0 if strong else 50,
        "RiskState": 0 if strong else 4,
        "ClientAppUsed": "Browser",
        "IPAddress": ip,
        "Country": loc.country,
        "City": loc.city,
        "ReportId": hex_ids(rng, 1, 12)[0].as_py(),
    }


def _admin(rng: np.random.Generator, plan: Plan, role: str) -> Admin:
    t = plan.tenant
    first, last = str(rng.choice(FIRST_NAMES)), str(rng.choice(LAST_NAMES))
    home = Location(t.office.country, t.office.city, t.office.isp, new_prefix(rng, t.prefixes_used))
    return Admin(role, f"adm-{first}.{last}.{role[:3]}@{t.primary_domain}", guid_list(rng, 1)[0],
                 f"{first.title()} {last.title()} (Admin)", home)


def _homoglyph(name: str) -> str:
    """*name* with its first replaceable Latin letter swapped for the Cyrillic one that looks the same."""
    for i, ch in enumerate(name):
        if ch.lower() in CONFUSABLE and ch.islower():
            return name[:i] + CONFUSABLE[ch] + name[i + 1:]
    return name + "\u200b"


def plan_look_alikes(rng: np.random.Generator, plan: Plan) -> None:
    """Add the pairs to *plan* (connectors, streams, admin activity, sign-ins, alerts, labels)."""
    t, start, end = plan.tenant, plan.start, plan.end
    usual = t.admins["usual"]
    u_who, u_ip = Identity.of(usual), usual.home.ip(50)
    used = {loc.country for loc in t.foreign} | {t.office.country}
    spare = [FOREIGN_LOCATIONS[int(i)] for i in rng.permutation(len(FOREIGN_LOCATIONS))
             if FOREIGN_LOCATIONS[int(i)][0] not in used]
    places = [Location(*spare[i % len(spare)], new_prefix(rng, t.prefixes_used)) for i in range(4)]
    hosting = [Location(spare[(4 + i) % len(spare)][0], spare[(4 + i) % len(spare)][1], HOSTING_ISPS[i],
                        new_prefix(rng, t.prefixes_used)) for i in range(2)]
    admins = {role: _admin(rng, plan, role) for role in ("traveller", "takeover", "impostor", "later")}
    for role, admin in admins.items():
        cloud, logons = admin_routine(rng, t, admin, start, end, busy=True)
        if role == "traveller":
            cloud = [r for r in cloud if r["Timestamp"] < end - 6 * DAY_US]
            logons = [r for r in logons if r["Timestamp"] < end - 6 * DAY_US]
        plan.cloud += cloud
        plan.logons += logons
        if role in ("traveller", "takeover"):
            who = Identity.of(admin)
            plan.signins += [entra_signin(rng, r["Timestamp"] + 20 * 1_000_000, who, admin.home, r["IPAddress"],
                                          strong=True) for r in logons if r["ActionType"] == "LogonSuccess"]
    names = {c.name.casefold() for c in plan.connectors}
    partners = list(zip(t.correspondents, t.partner_names, strict=True))[::-1]

    def unique(name: str) -> str:
        base, k = name, 2
        while name.casefold() in names:
            name, k = f"{base} {k}", k + 1
        names.add(name.casefold())
        return name

    def add(name: str, kind: str, scenario: str, cls: str, det: str | None = None, **times: int) -> Connector:
        conn = Connector(name, kind, "scenario", scenario, cls, det, created=times.get("created"),
                         changed=times.get("changed"))
        plan.connectors.append(conn)
        return conn

    def stream(key: str, kind: str, a: int, b: int, rate: Any, **params: Any) -> None:
        plan.streams.append(Stream(key, kind, a, b, rate, params))

    def rate(lo: float, hi: float) -> Any:
        return office_rate(t, lo, float(rng.uniform(lo * 4, hi)))

    def at(hours_lo: float, hours_hi: float) -> int:
        return end - int(rng.uniform(hours_lo, hours_hi) * HOUR_US)

    # 1. Travel vs takeover -------------------------------------------------------------------------
    dom, pname = partners[0]
    trav = admins["traveller"]
    who = Identity.of(trav)
    abroad = places[0]
    trip = end - int(rng.uniform(4.2, 5.5) * DAY_US)
    day = trip
    while day < end:
        ip = abroad.ip(int(rng.integers(2, 250)))
        plan.logons.append(logon(rng, day, who, abroad, ip, "LogonSuccess"))
        plan.signins.append(entra_signin(rng, day + 30 * 1_000_000, who, abroad, ip, strong=True))
        day += DAY_US
    created = at(20, 30)
    ip = abroad.ip(77)
    plan.logons.append(logon(rng, created - 15 * MINUTE_US, who, abroad, ip, "LogonSuccess"))
    plan.signins.append(entra_signin(rng, created - 14 * MINUTE_US, who, abroad, ip, strong=True))
    name = unique(f"{pname} Secure Gateway")
    conn = add(name, "Inbound", "travel_partner_connector", "informationalExpectedActivity", created=created)
    prefix = new_prefix(rng, t.prefixes_used)
    cidr = f"{prefix[0]}.{prefix[1]}.{prefix[2]}.0/27"
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "Partner"), ("SenderDomains", dom),
              ("SenderIPAddresses", cidr), ("RequireTls", "True")]
    plan.cloud.append(cmdlet(rng, created, t, who, abroad, ip, "New-InboundConnector", params, name))
    stream("travel", "partner_inbound", created + 20 * MINUTE_US, end, rate(1, 25), connector=name, domain=dom,
           prefix=prefix, hosts=[5, 6])
    plan.scenarios.append(_label(
        "travel_partner_connector", conn,
        "An admin on a business trip (Entra sign-ins in the new country for days, MFA satisfied, managed device, "
        "no risk) creates a partner inbound connector; the partner's clean mail (no SenderObjectId, by nature) "
        "flows to users.", admin=trav.label(), location=abroad.label(),
        times={"tripStart": iso(trip), "created": iso(created)}))

    _, pname_b = partners[1]
    vic = admins["takeover"]
    who = Identity.of(vic)
    hq = hosting[0]
    ip = hq.ip(int(rng.integers(2, 250)))
    t_logon = at(14, 22)
    plan.logons.append(logon(rng, t_logon, who, hq, ip, "LogonSuccess"))
    plan.signins.append(entra_signin(rng, t_logon, who, hq, ip, strong=False))
    created = t_logon + int(rng.uniform(20, 60) * MINUTE_US)
    name = unique(f"{pname_b} Secure Gateway")
    conn = add(name, "Inbound", "takeover_partner_connector", "truePositive", "phishing", created=created)
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "OnPremises"), ("SenderIPAddresses", hq.cidr),
              ("RequireTls", "False")]
    plan.cloud.append(cmdlet(rng, created, t, who, hq, ip, "New-InboundConnector", params, name, unusual=True))
    targets = [str(d) for d in rng.choice(t.correspondents, size=6, replace=False)]
    brand = t.brand
    stream("takeover", "phish_known", created + 30 * MINUTE_US, end, flat_rate(float(rng.uniform(6, 15)), 0.2),
           connector=name, prefix=hq.prefix, hosts=_hosts(rng, 3), targets=targets,
           lookalikes=[f"{brand}-payments.com", f"{brand}-billing.net"],
           phish_hosts=[f"secure.{d}" for d in _attacker_domains(rng, 2, SPAM_TLDS)])
    plan.scenarios.append(_label(
        "takeover_partner_connector", conn,
        "An admin's token is used from a hosting provider in a new country (a sign-in an hour before, no MFA, "
        "unmanaged device, medium risk); a partner-like inbound connector is created that relays forged mail "
        "to the tenant's correspondents.", admin=vic.label(), location=hq.label(), attackerIp=ip,
        times={"logon": iso(t_logon), "created": iso(created)}))

    # 2. Rename vs impersonating name --------------------------------------------------------------
    dom_c, pname_c = partners[2]
    old = unique(f"{pname_c} Mail Gateway")
    new = unique(f"{pname_c} Mail Gateway (TLS)")
    renamed = at(20, 40)
    prefix = new_prefix(rng, t.prefixes_used)
    hosts = _hosts(rng, 2)
    stream("rename:before", "partner_inbound", start, renamed, rate(1, 20), connector=old, domain=dom_c,
           prefix=prefix, hosts=hosts)
    stream("rename:after", "partner_inbound", renamed, end, rate(1, 20), connector=new, domain=dom_c,
           prefix=prefix, hosts=hosts)
    conn = add(new, "Inbound", "benign_rename", "informationalExpectedActivity", changed=renamed)
    params = [("Identity", old), ("Name", new), ("Comment", "renamed to the naming standard")]
    plan.cloud.append(cmdlet(rng, renamed, t, u_who, usual.home, u_ip, "Set-InboundConnector", params, old))
    plan.scenarios.append(_label(
        "benign_rename", conn,
        "The usual admin, from the usual place, renames a long-standing partner connector (Set- -Identity OLD "
        "-Name NEW, a comment); its mail goes on as before under the new name.",
        previousName=old, admin=usual.label(), times={"renamed": iso(renamed)}))

    imp = admins["impostor"]
    who = Identity.of(imp)
    loc = places[1]
    ip = loc.ip(int(rng.integers(2, 250)))
    created = at(2, 6)
    target = plan.connector("busy_partner").name
    name = unique(_homoglyph(target))
    conn = add(name, "Inbound", "impersonating_name", "truePositive", "maliciousUserActivity", created=created)
    plan.logons.append(logon(rng, created - 10 * MINUTE_US, who, loc, ip, "LogonSuccess"))
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "OnPremises"), ("SenderIPAddresses", loc.cidr)]
    plan.cloud.append(cmdlet(rng, created, t, who, loc, ip, "New-InboundConnector", params, name, unusual=True))
    plan.scenarios.append(_label(
        "impersonating_name", conn,
        "From a new country, an admin account creates a connector whose name imitates an existing partner "
        "connector with a Cyrillic letter; it carries no mail yet.", imitates=target, admin=imp.label(),
        location=loc.label(), times={"created": iso(created)}))

    # 3. Smart host moved: partner's new host vs unrelated domain ---------------------------------
    for scenario, (dom_s, pname_s) in (("smarthost_partner_new_host", partners[3]), ("smarthost_hijack", partners[4])):
        name = unique(f"To {pname_s} Secure Route")
        changed = at(6, 18)
        stream(scenario, "tenant_relay", start, end, rate(1, 15), connector=name, prefix=t.office.prefix,
               hosts=[int(rng.integers(150, 200))], internal_share=0.0, targets=[dom_s])
        if scenario == "smarthost_partner_new_host":
            params = [("Identity", name), ("SmartHosts", f"mx2.{dom_s}"), ("TlsSettings", "DomainValidation"),
                      ("TlsDomain", dom_s)]
            conn = add(name, "Outbound", scenario, "informationalExpectedActivity", changed=changed)
            text = "to a new host of the partner's own domain, TLS validation kept"
        else:
            word = random_words(rng, 1, 6, 10)[0].as_py()
            params = [("Identity", name), ("SmartHosts", f"smtp.{word}-relay{SPAM_TLDS[0]}"), ("TlsSettings", ""),
                      ("RequireTls", "False")]
            conn = add(name, "Outbound", scenario, "truePositive", "maliciousUserActivity", changed=changed)
            text = "to an unrelated registrable domain with TLS requirements dropped (the admin's usual place)"
        plan.cloud.append(cmdlet(rng, changed, t, u_who, usual.home, u_ip, "Set-OutboundConnector", params, name))
        plan.scenarios.append(_label(scenario, conn, f"A long-standing outbound partner connector's SmartHosts "
                                     f"are moved {text}.", partnerDomain=dom_s, parameters=dict(params),
                                     times={"changed": iso(changed)}))

    # 4. Widened sender IPs: partner's new datacentre vs a hosting range -------------------------
    for scenario, (dom_w, pname_w) in (("widened_ips_partner_dc", partners[5]), ("widened_ips_hosting", partners[6])):
        name = unique(f"{pname_w} Partner Link")
        prefix = new_prefix(rng, t.prefixes_used)
        old_cidr = f"{prefix[0]}.{prefix[1]}.{prefix[2]}.0/24"
        changed = at(8, 20)
        stream(scenario, "partner_inbound", start, end, rate(1, 15), connector=name, domain=dom_w, prefix=prefix,
               hosts=_hosts(rng, 2))
        if scenario == "widened_ips_partner_dc":
            dc = new_prefix(rng, t.prefixes_used)
            added = f"{dc[0]}.{dc[1]}.{dc[2]}.16/28"
            params = [("Identity", name), ("SenderIPAddresses", f"{old_cidr};{added}")]
            stream(scenario + ":dc", "partner_inbound", changed + HOUR_US, end, rate(1, 10), connector=name,
                   domain=dom_w, prefix=dc, hosts=[17, 18])
            conn = add(name, "Inbound", scenario, "informationalExpectedActivity", changed=changed)
            text = "by a /28 for the partner's new datacentre, whose clean mail then arrives from it"
        else:
            wide = new_prefix(rng, t.prefixes_used)
            added = f"{wide[0]}.{wide[1]}.0.0/16"
            params = [("Identity", name), ("SenderIPAddresses", f"{old_cidr};{added}"),
                      ("RestrictDomainsToIPAddresses", "False")]
            conn = add(name, "Inbound", scenario, "truePositive", "maliciousUserActivity", changed=changed)
            text = "by a /16 of a hosting range, with RestrictDomainsToIPAddresses turned off"
        plan.cloud.append(cmdlet(rng, changed, t, u_who, usual.home, u_ip, "Set-InboundConnector", params, name))
        plan.scenarios.append(_label(scenario, conn, f"A long-standing partner inbound connector's SenderIPAddresses "
                                     f"are widened {text}.", added=added, times={"changed": iso(changed)}))

    # 5. No SenderObjectId: partner mail vs relay mail --------------------------------------------
    dom_p, pname_p = partners[7]
    created = at(20, 40)
    name = unique(f"{pname_p} Direct Inbound")
    prefix = new_prefix(rng, t.prefixes_used)
    conn = add(name, "Inbound", "partner_mail_no_object_id", "informationalExpectedActivity", created=created)
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "Partner"), ("SenderDomains", dom_p),
              ("SenderIPAddresses", f"{prefix[0]}.{prefix[1]}.{prefix[2]}.0/28"), ("RequireTls", "True")]
    plan.cloud.append(cmdlet(rng, created, t, u_who, usual.home, u_ip, "New-InboundConnector", params, name))
    stream("partner_noobj", "partner_inbound", created + 10 * MINUTE_US, end, rate(2, 25), connector=name,
           domain=dom_p, prefix=prefix, hosts=[3, 4])
    plan.scenarios.append(_label(
        "partner_mail_no_object_id", conn,
        "The usual admin creates a partner inbound connector for a correspondent who mailed the tenant for "
        "weeks; its mail has no SenderObjectId, as inbound partner mail never has.", partnerDomain=dom_p,
        times={"created": iso(created)}))

    created = at(20, 40)
    name = unique(f"Scan Relay {int(rng.integers(5, 9))}")
    loc = hosting[1]
    conn = add(name, "Inbound", "relay_mail_no_object_id", "truePositive", "phishing", created=created)
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "OnPremises"), ("SenderIPAddresses", loc.cidr)]
    plan.cloud.append(cmdlet(rng, created, t, u_who, usual.home, u_ip, "New-InboundConnector", params, name))
    stream("relay_noobj", "spray", created + 30 * MINUTE_US, end, flat_rate(float(rng.uniform(8, 20)), 0.2),
           connector=name, prefix=loc.prefix, hosts=_hosts(rng, 3),
           attacker_domains=_attacker_domains(rng, 3, SPAM_TLDS), same_envelope=True,
           phish_hosts=[f"login.{d}" for d in _attacker_domains(rng, 2, SPAM_TLDS)], rcpt_tlds=SPAM_TLDS,
           detect_rate=0.05)
    plan.scenarios.append(_label(
        "relay_mail_no_object_id", conn,
        "An on-premises relay connector is created (usual admin, usual place); its mail claims the tenant's "
        "users in both headers but has no SenderObjectId, and goes to never-seen domains.",
        sourceRange=loc.cidr, times={"created": iso(created)}))

    # 6. Supply chain at a low mismatch share vs a partner's normal invoices ------------------------
    name = unique(f"Hybrid Relay {int(rng.integers(5, 9))}")
    stream("supply_low", "tenant_relay", start, end, office_rate(t, 4, float(rng.uniform(50, 80))), connector=name,
           prefix=t.datacenter.prefix, hosts=[70, 71], internal_share=0.3)
    changed = at(14, 20)
    loc = places[2]
    attacker_ip = loc.ip(int(rng.integers(2, 250)))
    params = [("Identity", name), ("SenderIPAddresses", f"{t.datacenter.ip(70)};{t.datacenter.ip(71)};{attacker_ip}")]
    plan.cloud.append(cmdlet(rng, changed, t, u_who, usual.home, u_ip, "Set-InboundConnector", params, name))
    conn = add(name, "Inbound", "supply_chain_low_share", "truePositive", "phishing", changed=changed)
    targets = [str(d) for d in rng.choice(t.correspondents, size=5, replace=False)]
    phish_start = changed + int(rng.uniform(20, 60) * MINUTE_US)
    stream("supply_low:phish", "phish_known", phish_start, end, flat_rate(float(rng.uniform(2, 3.5)), 0.2),
           connector=name, prefix=loc.prefix, hosts=[int(attacker_ip.rsplit(".", 1)[1])], targets=targets,
           lookalikes=[f"{t.brand}-remit.com", f"{t.brand}-accounts.net"],
           phish_hosts=[f"docs.{d}" for d in _attacker_domains(rng, 2, SPAM_TLDS)], detect_rate=0.0)
    alert_time = phish_start + int(rng.uniform(2, 4) * HOUR_US)
    alert_id, info, evidence = alert(
        rng, alert_time, title="Suspicious connector activity", category="SuspiciousActivity", severity="Medium",
        service="Microsoft Defender for Office 365", detection="Microsoft Defender for Office 365",
        evidence=[{"EntityType": "Ip", "EvidenceRole": "Related", "EvidenceDirection": "Source",
                   "RemoteIP": attacker_ip}])
    plan.alert_info.append(info)
    plan.alert_evidence += evidence
    plan.message_evidence.append({"alert": info, "connector": name, "before": alert_time, "samples": 3,
                                  "ip": attacker_ip})
    plan.scenarios.append(_label(
        "supply_chain_low_share", conn,
        "A long-standing hybrid relay gains one sender address; from it, a few forged messages an hour go to "
        "the tenant's correspondents among much clean relay mail (a mismatch share under the rise threshold). "
        "Defender's alert names no connector: only the messages and the IP.", attackerIp=attacker_ip,
        targetDomains=sorted(targets), alertIds=[alert_id], times={"changed": iso(changed),
                                                                  "phishingStart": iso(phish_start)}))

    dom_l, pname_l = partners[8]
    name = unique(f"{pname_l} Billing Route")
    billing = random_words(rng, 1, 5, 8)[0].as_py()
    stream("invoices", "tenant_relay", start, end, rate(2, 20), connector=name, prefix=t.office.prefix,
           hosts=[int(rng.integers(200, 250))], internal_share=0.0, targets=[dom_l, *partners_domains(partners, 9, 3)],
           bounce_share=0.35, bounce_domain=f"bounces.{billing}pay.com")
    changed = at(10, 30)
    params = [("Identity", name), ("TlsSettings", "DomainValidation"), ("Comment", "TLS validation per audit")]
    plan.cloud.append(cmdlet(rng, changed, t, u_who, usual.home, u_ip, "Set-OutboundConnector", params, name))
    conn = add(name, "Outbound", "partner_invoices", "informationalExpectedActivity", changed=changed)
    plan.scenarios.append(_label(
        "partner_invoices", conn,
        "A long-standing outbound route whose invoices go through a billing service (its envelope domain "
        "differs on about a third of the mail, as always) to known correspondents; its TLS validation is "
        "tightened by the usual admin.", times={"changed": iso(changed)}))

    # 7. A legitimate change, then a compromise of the same admin -----------------------------------
    later = admins["later"]
    who = Identity.of(later)
    name = unique(f"Print Relay {int(rng.integers(5, 9))}")
    stream("later", "tenant_relay", start, end, rate(1, 12), connector=name, prefix=t.datacenter.prefix,
           hosts=[80], internal_share=0.7)
    changed = end - int(rng.uniform(3.5, 4.5) * DAY_US)
    params = [("Identity", name), ("RequireTls", "True"), ("Comment", "enforce TLS")]
    plan.cloud.append(cmdlet(rng, changed, t, who, later.home, later.home.ip(60), "Set-InboundConnector", params, name))
    loc = places[3]
    ip = loc.ip(int(rng.integers(2, 250)))
    t_burst = end - int(rng.uniform(1, 2) * DAY_US)
    rows, _, success = burst(rng, t_burst, int(rng.integers(120, 200)), who, loc, ip, success_after_s=4.0)
    plan.logons += rows
    conn = add(name, "Inbound", "change_before_compromise", "informationalExpectedActivity", changed=changed)
    plan.scenarios.append(_label(
        "change_before_compromise", conn,
        "An admin makes a legitimate change from the usual place; days later the same admin's password is "
        "sprayed from abroad and a logon succeeds (the compromise does not explain the earlier change).",
        admin=later.label(), location=loc.label(),
        times={"changed": iso(changed), "burst": iso(t_burst), "success": iso(success or 0)}))


    # 8. Mail to the tenant's own users: internal phishing vs an application's notifications --------------
    name = unique(f"Copier Relay {int(rng.integers(5, 9))}")
    stream("internal_phish", "tenant_relay", start, end, rate(1, 15), connector=name, prefix=t.datacenter.prefix,
           hosts=[90], internal_share=0.9)
    changed = at(12, 20)
    loc = places[3]
    attacker_ip = loc.ip(int(rng.integers(2, 250)))
    params = [("Identity", name), ("SenderIPAddresses", f"{t.datacenter.ip(90)};{attacker_ip}")]
    plan.cloud.append(cmdlet(rng, changed, t, u_who, usual.home, u_ip, "Set-InboundConnector", params, name))
    conn = add(name, "Inbound", "internal_phishing", "truePositive", "phishing", changed=changed)
    stream("internal_phish:mail", "phish_known", changed + HOUR_US, end, flat_rate(float(rng.uniform(2, 4)), 0.2),
           connector=name, prefix=loc.prefix, hosts=[int(attacker_ip.rsplit(".", 1)[1])], targets=list(t.domains),
           lookalikes=[f"{t.brand}-helpdesk.com"], detect_rate=0.3,
           phish_hosts=[f"sso.{d}" for d in _attacker_domains(rng, 2, SPAM_TLDS)])
    plan.scenarios.append(_label(
        "internal_phishing", conn,
        "A long-standing copier relay gains one sender address; from it, phishing with a look-alike envelope "
        "domain and threat verdicts goes to the tenant's own users.", attackerIp=attacker_ip,
        times={"changed": iso(changed)}))

    name = unique(f"Ticketing Relay {int(rng.integers(5, 9))}")
    service = random_words(rng, 1, 5, 8)[0].as_py()
    stream("notifications", "tenant_relay", start, end, rate(1, 15), connector=name, prefix=t.datacenter.prefix,
           hosts=[91], internal_share=0.9, bounce_share=0.6, bounce_domain=f"notify.{service}desk.com")
    changed = at(10, 30)
    params = [("Identity", name), ("RequireTls", "True"), ("Comment", "TLS required")]
    plan.cloud.append(cmdlet(rng, changed, t, u_who, usual.home, u_ip, "Set-InboundConnector", params, name))
    conn = add(name, "Inbound", "internal_notifications", "informationalExpectedActivity", changed=changed)
    plan.scenarios.append(_label(
        "internal_notifications", conn,
        "A long-standing ticketing relay sends notifications to users with its service's envelope domain (as "
        "always); the usual admin requires TLS on it.", times={"changed": iso(changed)}))


    # 8. Transport rules around a connector --------------------------------------------------------
    _transport_rule_scenarios(rng, plan, partners, unique, add, stream, rate, at)

    # 9. Approved configurations ----------------------------------------------------------------------
    _approved_configuration_scenarios(rng, plan, partners, unique, add, stream, rate)


def _transport_rule_scenarios(rng: np.random.Generator, plan: Plan, partners: list[tuple[str, str]], unique: Any,
                              add: Any, stream: Any, rate: Any, at: Any) -> None:
    """A connector plus a rule that sets SCL -1 and strips headers for its addresses, by the same admin (TP); a
    new outbound connector that a routing rule sends a partner's mail through (TP); and a busy partner connector
    beside a disclaimer rule and a journaling copy set up long ago (benign)."""
    t, start, end = plan.tenant, plan.start, plan.end
    usual = t.admins["usual"]
    who, ip = Identity.of(usual), usual.home.ip(50)

    dom, pname = partners[9]
    created = at(10, 20)
    name = unique(f"{pname} Mail Bridge")
    prefix = new_prefix(rng, t.prefixes_used)
    cidr = f"{prefix[0]}.{prefix[1]}.{prefix[2]}.32/28"
    conn = add(name, "Inbound", "rule_unfilters_new_connector", "truePositive", "maliciousUserActivity",
               created=created)
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "Partner"), ("SenderDomains", dom),
              ("SenderIPAddresses", cidr), ("RequireTls", "True")]
    plan.cloud.append(cmdlet(rng, created, t, who, usual.home, ip, "New-InboundConnector", params, name))
    rule = f"Allow {pname} bridge"
    rule_params = [("Name", rule), ("SenderIpRanges", cidr), ("SetSCL", "-1"),
                   ("RemoveHeader", "X-MS-Exchange-Organization-AuthAs"), ("Priority", "0")]
    plan.cloud.append(cmdlet(rng, created + 6 * MINUTE_US, t, who, usual.home, ip, "New-TransportRule", rule_params,
                             rule))
    plan.scenarios.append(_label(
        "rule_unfilters_new_connector", conn,
        "The same admin creates an inbound connector and, minutes later, a transport rule scoped to its sender "
        "addresses that sets the spam confidence level to -1 and removes a header.", rule=rule,
        times={"created": iso(created)}))

    dom_r, pname_r = partners[10]
    created = at(8, 16)
    name = unique(f"{pname_r} Archive Route")
    word = random_words(rng, 1, 6, 10)[0].as_py()
    conn = add(name, "Outbound", "rule_routes_through_connector", "truePositive", "maliciousUserActivity",
               created=created)
    params = [("Name", name), ("Enabled", "True"), ("ConnectorType", "Partner"), ("UseMXRecord", "False"),
              ("SmartHosts", f"smtp.{word}-archive{SPAM_TLDS[1 % len(SPAM_TLDS)]}"), ("IsTransportRuleScoped", "True")]
    plan.cloud.append(cmdlet(rng, created, t, who, usual.home, ip, "New-OutboundConnector", params, name))
    rule = f"Route {pname_r} correspondence"
    rule_params = [("Name", rule), ("RecipientDomainIs", dom_r), ("RouteMessageOutboundConnector", name),
                   ("BlindCopyTo", f"archive@{word}-archive{SPAM_TLDS[1 % len(SPAM_TLDS)]}")]
    plan.cloud.append(cmdlet(rng, created + 4 * MINUTE_US, t, who, usual.home, ip, "New-TransportRule", rule_params,
                             rule))
    plan.scenarios.append(_label(
        "rule_routes_through_connector", conn,
        "The same admin creates an outbound connector to an unrelated smart host and a transport rule that "
        "re-points mail to a correspondent through it (with a blind copy).", rule=rule,
        times={"created": iso(created)}))

    dom_b, pname_b = partners[11]
    name = unique(f"{pname_b} Partner Feed")
    prefix = new_prefix(rng, t.prefixes_used)
    conn = add(name, "Inbound", "long_standing_rules_busy_partner", "falsePositive")
    stream("rules_partner", "partner_inbound", start, end, rate(20, 120), connector=name, domain=dom_b,
           prefix=prefix, hosts=_hosts(rng, 3))
    set_up = end - int(rng.uniform(10, 12) * DAY_US)
    for rule, extra in ((f"{pname_b} disclaimer", [("ApplyHtmlDisclaimerText", "<p>External sender</p>")]),
                        (f"{pname_b} journaling copy", [("BlindCopyTo", f"compliance@{t.primary_domain}")])):
        rule_params = [("Name", rule), ("SenderDomainIs", dom_b), *extra]
        plan.cloud.append(cmdlet(rng, set_up, t, who, usual.home, ip, "New-TransportRule", rule_params, rule))
        set_up += int(rng.uniform(1, 3) * HOUR_US)
    edited = at(20, 40)
    plan.cloud.append(cmdlet(rng, edited, t, who, usual.home, ip, "Set-TransportRule",
                             [("Identity", f"{pname_b} disclaimer"),
                              ("ApplyHtmlDisclaimerText", "<p>External sender: be careful</p>")],
                             f"{pname_b} disclaimer"))
    plan.scenarios.append(_label(
        "long_standing_rules_busy_partner", conn,
        "A busy long-standing partner connector beside a disclaimer rule (its text edited this week) and a "
        "journaling blind copy to the tenant's compliance mailbox, both set up long before the lookback.",
        partnerDomain=dom_b))


def _approved_configuration_scenarios(rng: np.random.Generator, plan: Plan, partners: list[tuple[str, str]],
                                      unique: Any, add: Any, stream: Any, rate: Any) -> None:
    """An approved partner connector widened to a hosting /16 before the change lookback (only the approval
    tells it drifted: TP), and a partner connector whose planned migration (a broad new range, TLS no longer
    required) was approved two hours after the change (benign)."""
    t, start, end = plan.tenant, plan.start, plan.end
    usual = t.admins["usual"]
    who, ip = Identity.of(usual), usual.home.ip(50)
    soc = f"soc-lead@{t.primary_domain}"

    dom, pname = partners[12 % len(partners)]
    name = unique(f"{pname} Partner Gateway")
    prefix = new_prefix(rng, t.prefixes_used)
    old_cidr = f"{prefix[0]}.{prefix[1]}.{prefix[2]}.0/24"
    approved_at = end - int(rng.uniform(12, 13) * DAY_US)
    configuration = {"name": name, "enabled": "True", "connectortype": "Partner", "senderdomains": dom,
                     "senderipaddresses": old_cidr, "restrictdomainstoipaddresses": "True", "requiretls": "True"}
    plan.approvals.append({"connector": name, "connectorType": "Inbound", "configuration": configuration,
                           "approvedAt": iso(approved_at), "approvedBy": soc, "reason": "partner onboarding review"})
    stream("approved_drift", "partner_inbound", start, end, rate(1, 15), connector=name, domain=dom, prefix=prefix,
           hosts=_hosts(rng, 2))
    wide = new_prefix(rng, t.prefixes_used)
    changed = end - int(rng.uniform(9, 10) * DAY_US)  # before the change lookback: no change is judged
    params = [("Identity", name), ("SenderIPAddresses", f"{old_cidr};{wide[0]}.{wide[1]}.0.0/16"),
              ("RestrictDomainsToIPAddresses", "False")]
    plan.cloud.append(cmdlet(rng, changed, t, who, usual.home, ip, "Set-InboundConnector", params, name))
    conn = add(name, "Inbound", "approved_drift_hosting", "truePositive", "maliciousUserActivity")
    plan.scenarios.append(_label(
        "approved_drift_hosting", conn,
        "An approved partner connector's SenderIPAddresses were widened by a hosting /16, with "
        "RestrictDomainsToIPAddresses off, nine days ago (before the change lookback): only the approved "
        "configuration tells that it drifted.", approvedBy=soc, times={"changed": iso(changed)}))

    dom_m, pname_m = partners[13 % len(partners)]
    name = unique(f"{pname_m} Migration Link")
    prefix = new_prefix(rng, t.prefixes_used)
    old_cidr = f"{prefix[0]}.{prefix[1]}.{prefix[2]}.0/24"
    stream("approved_migration", "partner_inbound", start, end, rate(1, 15), connector=name, domain=dom_m,
           prefix=prefix, hosts=_hosts(rng, 2))
    dc = new_prefix(rng, t.prefixes_used)
    added = f"{dc[0]}.{dc[1]}.0.0/20"
    changed = end - int(rng.uniform(30, 40) * HOUR_US)
    params = [("Identity", name), ("SenderIPAddresses", f"{old_cidr};{added}"), ("RequireTls", "False")]
    plan.cloud.append(cmdlet(rng, changed, t, who, usual.home, ip, "Set-InboundConnector", params, name))
    configuration = {"name": name, "enabled": "True", "connectortype": "Partner", "senderdomains": dom_m,
                     "senderipaddresses": f"{old_cidr};{added}", "requiretls": "False"}
    change_id = int(rng.integers(100_000, 999_999))
    plan.approvals.append({"connector": name, "connectorType": "Inbound", "configuration": configuration,
                           "approvedAt": iso(changed + 2 * HOUR_US), "approvedBy": soc,
                           "reason": f"planned migration to the partner's new datacentre, CHG{change_id}"})
    conn = add(name, "Inbound", "approved_migration", "informationalExpectedActivity", changed=changed)
    plan.scenarios.append(_label(
        "approved_migration", conn,
        "The usual admin widens a partner connector by a /20 and stops requiring TLS for a planned migration; "
        "the SOC approves the new configuration two hours later.", approvedBy=soc, added=added,
        times={"changed": iso(changed)}))


def partners_domains(partners: list[tuple[str, str]], first: int, n: int) -> list[str]:
    return [d for d, _ in partners[first:first + n]]
