"""The labelled scenarios of the simulated tenant, planned before any mail is drawn.

Why a plan: the mail of a 14-day export is generated day by day to keep memory flat, but each
scenario spans days (a connector created on Monday sprays until the end). Planning fixes every
scenario's times, places, names and traffic streams first, from the seed; the generator then
only asks each stream for its messages in a given day. The plan also carries the scenario's
admin activity rows and alerts, and the skeleton of its label (times, people, places); counts
are added from the generated rows afterwards, so the labels describe the files as written.

Scenario ids (see ``tests/test_simulate.py`` for what each guarantees):
compromised_admin_spray, supply_chain, slow_abuse (true positives); busy_partner,
bulk_mail_service (false positives); migration (expected activity); brute_force_no_success
(no connector: must not give a connector true positive). Connectors beyond these six are
"ordinary": long-standing partner or relay connectors with steady, clean traffic and no change,
labelled falsePositive (nothing about them should raise more than a benign verdict).
With ``--look-alikes``, ``lookalikes.py`` adds attack / benign look-alike pairs on top of these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devtools.simulate.activity import (
    Identity,
    admin_routine,
    alert,
    burst,
    cmdlet,
    logon,
    on_prem_logons,
)
from devtools.simulate.arrays import (
    DAY_US,
    HOUR_US,
    MINUTE_US,
    US,
    RateFn,
    guid_list,
    is_weekend,
    iso,
    office_shape,
    random_words,
)
from devtools.simulate.tenant import (
    ATTACKER_CONNECTOR_NAMES,
    BULK_SERVICES,
    MIGRATION_SOURCES,
    SLOW_TLDS,
    SPAM_TLDS,
    Location,
    Tenant,
    add_hostile_payloads,
    new_prefix,
)

SCENARIO_IDS = (
    "compromised_admin_spray",
    "supply_chain",
    "slow_abuse",
    "busy_partner",
    "migration",
    "bulk_mail_service",
)
"""Scenarios that own a connector (brute_force_no_success owns none)."""
MIN_DAYS = 4
MIN_CONNECTORS = len(SCENARIO_IDS)

PARTNER_IN_PATTERNS = ("{p} Partner Relay", "{p} Inbound", "{p} TLS Connector", "{p} Secure Mail")
RELAY_PATTERNS = (
    "OnPrem Smarthost {n}",
    "Hybrid Mail Flow {n}",
    "Scanner Relay {n}",
    "App Relay {n}",
    "Datacenter Relay {n}",
)
PARTNER_OUT_PATTERNS = ("{p} Outbound Route", "To {p} (TLS)", "{p} Outbound")


@dataclass(frozen=True)
class Stream:
    """One flow of messages: a builder kind, an active interval, an hourly rate and its params."""

    key: str
    kind: str
    start: int
    end: int
    rate: RateFn
    params: dict[str, Any]
    per_hour: tuple[int, int] | None = None


@dataclass
class Connector:
    name: str
    connector_type: str
    role: str
    scenario: str | None
    expected_classification: str
    expected_determination: str | None = None
    created: int | None = None
    changed: int | None = None

    def label(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "connectorType": self.connector_type,
            "role": self.role,
            "scenario": self.scenario,
            "expectedClassification": self.expected_classification,
            "expectedDetermination": self.expected_determination,
            "longStanding": self.created is None,
            "created": None if self.created is None else iso(self.created),
            "lastChanged": None if self.changed is None else iso(self.changed),
        }


@dataclass
class Plan:
    tenant: Tenant
    start: int
    end: int
    streams: list[Stream] = field(default_factory=list)
    connectors: list[Connector] = field(default_factory=list)
    cloud: list[dict[str, Any]] = field(default_factory=list)
    logons: list[dict[str, Any]] = field(default_factory=list)
    alert_info: list[dict[str, Any]] = field(default_factory=list)
    alert_evidence: list[dict[str, Any]] = field(default_factory=list)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    noise: list[dict[str, Any]] = field(default_factory=list)
    signins: list[dict[str, Any]] = field(default_factory=list)
    """AADSignInEventsBeta rows (written only when some scenario needs them)."""
    message_evidence: list[dict[str, Any]] = field(default_factory=list)
    """Alerts whose MailMessage evidence is filled from generated mail: alert id, connector, time."""
    approvals: list[dict[str, Any]] = field(default_factory=list)
    """Approved connector configurations (``approvedConfigurations`` in the labels): not telemetry, what an
    operator recorded with ``approve-config``; ``sweep --approved LABELS`` hands them to the grader."""

    @property
    def window_start(self) -> int:
        return self.end - DAY_US

    def connector(self, scenario: str) -> Connector:
        return next(c for c in self.connectors if c.scenario == scenario)


# ---------------------------------------------------------------------------------------------
# Rates


def office_rate(tenant: Tenant, floor: float, peak: float, weekend: float = 0.35) -> RateFn:
    """Messages per hour: *floor* at night, *peak* early afternoon on weekdays (scaled by
    *weekend* on Saturdays and Sundays above the floor)."""

    def rate(hours: np.ndarray) -> np.ndarray:
        shape = office_shape(hours, tenant.tz_offset)
        day = np.where(is_weekend(hours, tenant.tz_offset), weekend, 1.0)
        return floor + (peak - floor) * shape * day

    return rate


def flat_rate(level: float, wobble: float = 0.0, period_h: float = 5.0) -> RateFn:
    def rate(hours: np.ndarray) -> np.ndarray:
        return level * (1.0 + wobble * np.sin(hours / HOUR_US / period_h))

    return rate


def background_rate(tenant: Tenant, per_day: float) -> RateFn:
    """Office-shaped rate whose weekly mean is *per_day* messages a day."""
    probe = np.arange(0, 7 * DAY_US, HOUR_US, dtype=np.int64)
    base = office_rate(tenant, 0.1, 1.0)
    scale = per_day / 24 / float(base(probe).mean())
    return lambda hours: scale * base(hours)


# ---------------------------------------------------------------------------------------------
# Planning helpers


def _minute_aligned(t: int) -> int:
    return t - t % MINUTE_US


def _attacker_domains(rng: np.random.Generator, n: int, tlds: tuple[str, ...]) -> list[str]:
    words = random_words(rng, n, 6, 11).to_pylist()
    return [f"{w}{tlds[int(rng.integers(len(tlds)))]}" for w in words]


def _hosts(rng: np.random.Generator, n: int) -> list[int]:
    return sorted(int(h) for h in rng.choice(np.arange(2, 254), size=n, replace=False))


def _label(scenario: str, conn: Connector | None, description: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": scenario,
        "connector": None if conn is None else conn.name,
        "connectorType": None if conn is None else conn.connector_type,
        "expectedClassification": None if conn is None else conn.expected_classification,
        "expectedDetermination": None if conn is None else conn.expected_determination,
        "description": description,
    }
    out.update(extra)
    return out


def _new_connector_params(name: str, kind: str, ips: str) -> tuple[str, list[tuple[str, str]]]:
    if kind == "Outbound":
        return "New-OutboundConnector", [
            ("Name", name),
            ("Enabled", "True"),
            ("ConnectorType", "Partner"),
            ("SmartHosts", ips),
            ("UseMXRecord", "False"),
            ("RecipientDomains", "*"),
            ("TlsSettings", ""),
        ]
    return "New-InboundConnector", [
        ("Name", name),
        ("Enabled", "True"),
        ("ConnectorType", "OnPremises"),
        ("SenderIPAddresses", ips),
        ("RequireTls", "False"),
        ("RestrictDomainsToIPAddresses", "False"),
    ]


# ---------------------------------------------------------------------------------------------
# The plan


def plan_scenarios(
    rng: np.random.Generator,
    tenant: Tenant,
    *,
    start: int,
    end: int,
    connectors: int,
    emails_per_day: int,
    hostile_names: bool,
) -> Plan:
    """Every scenario, extra connector, admin routine and noise event of the simulated tenant."""
    plan = Plan(tenant=tenant, start=start, end=end)
    names = _names(rng, tenant, connectors, hostile_names)
    _admin_routines(rng, plan)
    _spray(rng, plan, names["compromised_admin_spray"], hostile_names)
    _supply_chain(rng, plan, names["supply_chain"])
    _slow_abuse(rng, plan, names["slow_abuse"])
    _busy_partner(rng, plan, names["busy_partner"])
    _migration(rng, plan, names["migration"])
    _bulk(rng, plan, names["bulk_mail_service"], names["_bulk_service"])
    _brute_force(rng, plan)
    _extras(rng, plan, {k: v for k, v in names.items() if k.startswith("extra")}, emails_per_day)
    _noise(rng, plan)
    return plan


def _names(rng: np.random.Generator, tenant: Tenant, connectors: int, hostile: bool) -> dict[str, str]:
    partners = tenant.partner_names
    used: set[str] = set()

    def unique(name: str) -> str:
        base, k = name, 2
        while name in used:
            name = f"{base} {k}"
            k += 1
        used.add(name)
        return name

    service = str(rng.choice(BULK_SERVICES))
    spray_name, slow_name = (str(n) for n in rng.choice(ATTACKER_CONNECTOR_NAMES, size=2, replace=False))
    names = {
        "compromised_admin_spray": unique(spray_name),
        "supply_chain": unique(f"OnPrem Smarthost {int(rng.integers(1, 4))}"),
        "slow_abuse": unique(slow_name),
        "busy_partner": unique(f"{partners[0]} Partner Inbound"),
        "migration": unique(f"Migration {rng.choice(MIGRATION_SOURCES)}"),
        "bulk_mail_service": unique(f"{service.title()} Newsletter Outbound"),
    }
    for i in range(connectors - MIN_CONNECTORS):
        kind = ("in", "relay", "out")[i % 3]
        patterns = {"in": PARTNER_IN_PATTERNS, "relay": RELAY_PATTERNS, "out": PARTNER_OUT_PATTERNS}[kind]
        partner = partners[1 + i % (len(partners) - 1)]
        pattern = str(rng.choice(patterns))
        names[f"extra_{i + 1}_{kind}"] = unique(pattern.format(p=partner, n=int(rng.integers(1, 5))))
    if hostile:
        names = add_hostile_payloads(rng, names)
    names["_bulk_service"] = service
    return names


def _admin_routines(rng: np.random.Generator, plan: Plan) -> None:
    t = plan.tenant
    for role, admin in t.admins.items():
        cloud, logons = admin_routine(rng, t, admin, plan.start, plan.end, busy=role == "usual")
        plan.cloud += cloud
        plan.logons += logons
    plan.logons += on_prem_logons(rng, t, list(t.admins.values()), plan.start, plan.end)


def _spray(rng: np.random.Generator, plan: Plan, name: str, hostile: bool) -> None:
    t, end = plan.tenant, plan.end
    admin = t.admins["spray_victim"]
    who = Identity.of(admin)
    loc = t.foreign[0]
    ip = loc.ip(int(rng.integers(2, 254)))
    t_burst = _minute_aligned(end - int(rng.uniform(12, 20) * HOUR_US)) + int(rng.integers(0, 3 * US))
    failures = int(rng.integers(150, 400))
    rows, last_fail, success = burst(rng, t_burst, failures, who, loc, ip, success_after_s=float(rng.uniform(1, 9)))
    assert success is not None
    plan.logons += rows
    created = success + int(rng.uniform(1, 3) * HOUR_US)
    conn = Connector(
        name,
        "Inbound",
        "scenario",
        "compromised_admin_spray",
        "truePositive",
        "compromisedAccount",
        created=created,
    )
    plan.connectors.append(conn)
    cmd, params = _new_connector_params(name, "Inbound", loc.cidr)
    plan.cloud.append(cmdlet(rng, created, t, who, loc, ip, cmd, params, name, unusual=True))
    spray_start = created + int(rng.uniform(5, 25) * MINUTE_US)
    level = float(rng.uniform(300, 1500))
    hosts = _hosts(rng, int(rng.integers(5, 20)))
    plan.streams.append(
        Stream(
            "compromised_admin_spray",
            "spray",
            spray_start,
            end,
            flat_rate(level, 0.3),
            {
                "connector": name,
                "prefix": loc.prefix,
                "hosts": hosts,
                "attacker_domains": _attacker_domains(rng, int(rng.integers(5, 20)), SPAM_TLDS),
                "phish_hosts": [f"login.{d}" for d in _attacker_domains(rng, int(rng.integers(3, 8)), SPAM_TLDS)],
                "rcpt_tlds": SPAM_TLDS,
                "detect_rate": 0.15,
                "hostile_subjects": hostile,
            },
        )
    )
    alert_time = spray_start + int(rng.uniform(15, 45) * MINUTE_US)
    alert_id, info, evidence = alert(
        rng,
        alert_time,
        title="Suspicious connector activity",
        category="SuspiciousActivity",
        severity="High",
        service="Microsoft Defender for Office 365",
        detection="Microsoft Defender for Office 365",
        techniques=("T1114.003", "T1566"),
        evidence=[
            {
                "EntityType": "User",
                "EvidenceRole": "Impacted",
                "AccountUpn": admin.upn,
                "AccountObjectId": admin.object_id,
                "AccountName": admin.account_name,
                "AccountDomain": admin.domain,
            },
            {
                "EntityType": "CloudApplication",
                "EvidenceRole": "Impacted",
                "Application": "Microsoft Exchange Online",
                "ApplicationId": 20893,
                "AdditionalFields": _json({"ConnectorName": name, "ConnectorType": "InboundConnector"}),
            },
            {"EntityType": "Ip", "EvidenceRole": "Related", "EvidenceDirection": "Source", "RemoteIP": ip},
        ],
    )
    plan.alert_info.append(info)
    plan.alert_evidence += evidence
    plan.message_evidence.append({"alert": info, "connector": name, "before": alert_time, "samples": 3})
    plan.scenarios.append(
        _label(
            "compromised_admin_spray",
            conn,
            "A non-usual admin's password is sprayed from a never-seen country (a burst of failures "
            "in one minute, then a success from the same IP); hours later that admin creates an inbound "
            "connector from the same place, which relays phishing to random never-seen domains with "
            "P1/P2 mismatch and no SenderObjectId; Defender raises 'Suspicious connector activity'.",
            admin=admin.label(),
            location=loc.label(),
            attackerIp=ip,
            alertIds=[alert_id],
            times={
                "burstStart": iso(t_burst),
                "lastFailure": iso(last_fail),
                "success": iso(success),
                "created": iso(created),
                "trafficStart": iso(spray_start),
                "alert": iso(alert_time),
            },
            counts={"logonFailures": failures, "logonSuccesses": 1},
        )
    )


def _supply_chain(rng: np.random.Generator, plan: Plan, name: str) -> None:
    t, start, end = plan.tenant, plan.start, plan.end
    admin = t.admins["supply_actor"]
    who = Identity.of(admin)
    loc = t.foreign[1]
    ip = loc.ip(int(rng.integers(2, 254)))
    conn = Connector(name, "Inbound", "scenario", "supply_chain", "truePositive", "phishing")
    plan.connectors.append(conn)
    dc_hosts = [20, 21]
    plan.streams.append(
        Stream(
            "supply_chain",
            "tenant_relay",
            start,
            end,
            office_rate(t, 2, float(rng.uniform(30, 80))),
            {
                "connector": name,
                "prefix": t.datacenter.prefix,
                "hosts": dc_hosts,
                "internal_share": 0.2,
            },
        )
    )
    t_logon = end - int(rng.uniform(8, 20) * HOUR_US)
    plan.logons.append(logon(rng, t_logon, who, loc, ip, "LogonSuccess"))
    changed = t_logon + int(rng.uniform(10, 40) * MINUTE_US)
    conn.changed = changed
    new_hosts = _hosts(rng, 3)
    ips = [t.datacenter.ip(h) for h in dc_hosts] + [loc.ip(h) for h in new_hosts]
    params = [("Identity", name), ("SenderIPAddresses", ";".join(ips)), ("RequireTls", "False")]
    plan.cloud.append(cmdlet(rng, changed, t, who, loc, ip, "Set-InboundConnector", params, name, unusual=True))
    phish_start = changed + int(rng.uniform(15, 60) * MINUTE_US)
    k = min(len(t.correspondents), int(rng.integers(5, 11)))
    targets = [str(d) for d in rng.choice(t.correspondents, size=k, replace=False)]
    brand = t.brand
    lookalikes = [f"{brand}-billing.com", f"{brand}-invoices.net", f"{brand[:2]}{brand[1:]}.com"]
    plan.streams.append(
        Stream(
            "supply_chain:phishing",
            "phish_known",
            phish_start,
            end,
            office_rate(t, 8, float(rng.uniform(30, 90)), weekend=0.8),
            {
                "connector": name,
                "prefix": loc.prefix,
                "hosts": new_hosts,
                "lookalikes": lookalikes,
                "targets": targets,
                "phish_hosts": [f"secure.{d}" for d in _attacker_domains(rng, 3, SPAM_TLDS)],
            },
        )
    )
    plan.scenarios.append(
        _label(
            "supply_chain",
            conn,
            "A long-standing on-premises relay connector with steady, clean user mail is changed "
            "(Set-InboundConnector adds new sender IPs) by an admin signed in from a never-seen "
            "country; afterwards it also relays phishing to the tenant's known customers and vendors "
            "with P1/P2 mismatch, no SenderObjectId and new source IPs.",
            admin=admin.label(),
            location=loc.label(),
            attackerIp=ip,
            newSourceIps=[loc.ip(h) for h in new_hosts],
            targetDomains=sorted(targets),
            lookalikeDomains=lookalikes,
            times={"logon": iso(t_logon), "changed": iso(changed), "phishingStart": iso(phish_start)},
            counts={"logonFailures": 0, "logonSuccesses": 1},
        )
    )


def _slow_abuse(rng: np.random.Generator, plan: Plan, name: str) -> None:
    t, start, end = plan.tenant, plan.start, plan.end
    admin = t.admins["slow_actor"]
    who = Identity.of(admin)
    loc = t.foreign[2]
    ip = loc.ip(int(rng.integers(2, 254)))
    days_back = float(rng.uniform(2, min(5, (end - start) / DAY_US - 1)))
    created = max(end - int(days_back * DAY_US), start + 12 * HOUR_US)
    kind = "Outbound" if rng.random() < 0.5 else "Inbound"
    conn = Connector(name, kind, "scenario", "slow_abuse", "truePositive", "phishing", created=created)
    plan.connectors.append(conn)
    t_logon = created - int(rng.uniform(5, 30) * MINUTE_US)
    plan.logons.append(logon(rng, t_logon, who, loc, ip, "LogonSuccess"))
    cmd, params = _new_connector_params(name, kind, loc.cidr if kind == "Inbound" else ip)
    plan.cloud.append(cmdlet(rng, created, t, who, loc, ip, cmd, params, name, unusual=True))
    traffic_start = created + int(rng.uniform(10, 60) * MINUTE_US)
    level = float(rng.uniform(15, 40))
    plan.streams.append(
        Stream(
            "slow_abuse",
            "spray",
            traffic_start,
            end,
            flat_rate(level, 0.25),
            {
                "connector": name,
                "prefix": loc.prefix,
                "hosts": _hosts(rng, 4),
                "attacker_domains": _attacker_domains(rng, int(rng.integers(3, 10)), SLOW_TLDS),
                "phish_hosts": [f"portal.{d}" for d in _attacker_domains(rng, 3, SLOW_TLDS)],
                "rcpt_tlds": SLOW_TLDS,
                "rcpt_p": (0.7, 0.3),
                "detect_rate": 0.05,
            },
            per_hour=(10, 60),
        )
    )
    plan.scenarios.append(
        _label(
            "slow_abuse",
            conn,
            f"A non-usual admin signs in from an unusual country (no failure burst) and creates an "
            f"{kind.lower()} connector days before the end; it relays 10-60 messages an hour (never 100) "
            "with P1/P2 mismatch and no SenderObjectId to never-seen domains, from creation to the end.",
            admin=admin.label(),
            location=loc.label(),
            attackerIp=ip,
            times={"logon": iso(t_logon), "created": iso(created), "trafficStart": iso(traffic_start)},
            counts={"logonFailures": 0, "logonSuccesses": 1},
        )
    )


def _busy_partner(rng: np.random.Generator, plan: Plan, name: str) -> None:
    t = plan.tenant
    domain = t.correspondents[0]
    conn = Connector(name, "Inbound", "scenario", "busy_partner", "falsePositive")
    plan.connectors.append(conn)
    prefix = new_prefix(rng, t.prefixes_used)
    floor, peak = 300.0, float(rng.uniform(700, 1300))
    plan.streams.append(
        Stream(
            "busy_partner",
            "partner_inbound",
            plan.start,
            plan.end,
            office_rate(t, floor, peak),
            {
                "connector": name,
                "domain": domain,
                "prefix": prefix,
                "hosts": _hosts(rng, 4),
            },
        )
    )
    plan.scenarios.append(
        _label(
            "busy_partner",
            conn,
            "A long-standing inbound partner connector with high, steady, office-shaped volume (well "
            "above 100 messages an hour every hour) from the partner's own domain (P1 = P2) to users.",
            partnerDomain=domain,
            sourceIps=[f"{prefix[0]}.{prefix[1]}.{prefix[2]}.0/24"],
            rate={"floorPerHour": floor, "peakPerHour": round(peak, 1)},
        )
    )


def _migration(rng: np.random.Generator, plan: Plan, name: str) -> None:
    t, start, end = plan.tenant, plan.start, plan.end
    admin = t.admins["usual"]
    who = Identity.of(admin)
    day = end - int(rng.uniform(1, 3) * DAY_US)
    tz = t.tz_offset * HOUR_US
    midnight = (day + tz) // DAY_US * DAY_US - tz
    created = midnight + int(rng.uniform(10, 16) * HOUR_US)
    created = min(max(created, start + 12 * HOUR_US), end - 6 * HOUR_US)
    conn = Connector(name, "Inbound", "scenario", "migration", "informationalExpectedActivity", created=created)
    plan.connectors.append(conn)
    ip = admin.home.ip(50)
    hosts = [30, 31]
    ips = ";".join(t.datacenter.ip(h) for h in hosts)
    params = [
        ("Name", name),
        ("Enabled", "True"),
        ("ConnectorType", "OnPremises"),
        ("SenderIPAddresses", ips),
        ("Comment", f"Mailbox migration, change CHG{int(rng.integers(100000, 999999))}"),
    ]
    plan.cloud.append(cmdlet(rng, created, t, who, admin.home, ip, "New-InboundConnector", params, name))
    traffic_start = created + int(rng.uniform(10, 60) * MINUTE_US)
    plan.streams.append(
        Stream(
            "migration",
            "tenant_relay",
            traffic_start,
            end,
            office_rate(t, 4, float(rng.uniform(40, 90))),
            {
                "connector": name,
                "prefix": t.datacenter.prefix,
                "hosts": hosts,
                "internal_share": 0.5,
            },
        )
    )
    plan.scenarios.append(
        _label(
            "migration",
            conn,
            "The usual connector admin, from the usual place, creates a 'Migration' inbound connector "
            "days before the end; it relays users' own mail (SenderObjectId set, P1 = P2 tenant domain) "
            "to colleagues and known correspondents at moderate volume.",
            admin=admin.label(),
            location=admin.home.label(),
            adminIp=ip,
            times={"created": iso(created), "trafficStart": iso(traffic_start)},
        )
    )


def _bulk(rng: np.random.Generator, plan: Plan, name: str, service: str) -> None:
    t = plan.tenant
    conn = Connector(name, "Outbound", "scenario", "bulk_mail_service", "falsePositive")
    plan.connectors.append(conn)
    prefix = new_prefix(rng, t.prefixes_used)
    bounce = f"bounces.{service}.com"
    plan.streams.append(
        Stream(
            "bulk_mail_service",
            "bulk_service",
            plan.start,
            plan.end,
            office_rate(t, float(rng.uniform(10, 30)), float(rng.uniform(80, 250))),
            {
                "connector": name,
                "prefix": prefix,
                "hosts": _hosts(rng, 4),
                "bounce_domain": bounce,
                "click_domain": f"click.{service}.com",
            },
        )
    )
    plan.scenarios.append(
        _label(
            "bulk_mail_service",
            conn,
            "A long-standing outbound connector of a newsletter service: header From is the tenant's "
            "domain, the envelope sender always the service's bounce domain (P1/P2 mismatch in all of "
            "history), no SenderObjectId, mostly to known customers, volume as in history.",
            service=service,
            bounceDomain=bounce,
        )
    )


def _brute_force(rng: np.random.Generator, plan: Plan) -> None:
    t, start, end = plan.tenant, plan.start, plan.end
    admin = t.admins["brute_target"]
    who = Identity.of(admin)
    loc = t.foreign[3]
    ip = loc.ip(int(rng.integers(2, 254)))
    lo = max(start + HOUR_US, end - 6 * DAY_US)
    bursts = sorted(int(x) for x in rng.integers(lo, end - HOUR_US, size=int(rng.integers(1, 4))))
    total = 0
    times = []
    for b in bursts:
        b = _minute_aligned(b) + int(rng.integers(0, 3 * US))
        n = int(rng.integers(120, 300))
        rows, _, _ = burst(rng, b, n, who, loc, ip, success_after_s=None)
        plan.logons += rows
        total += n
        times.append(iso(b))
    plan.scenarios.append(
        _label(
            "brute_force_no_success",
            None,
            "Another admin's password is sprayed from a foreign IP in bursts, with no success from "
            "there and no change: it must not give any connector a true positive.",
            admin=admin.label(),
            location=loc.label(),
            attackerIp=ip,
            times={"bursts": times},
            counts={"logonFailures": total, "logonSuccesses": 0, "bursts": len(bursts)},
        )
    )


def _extras(rng: np.random.Generator, plan: Plan, names: dict[str, str], emails_per_day: int) -> None:
    t = plan.tenant
    for i, (key, name) in enumerate(sorted(names.items(), key=lambda kv: int(kv[0].split("_")[1]))):
        kind = key.rsplit("_", 1)[1]
        share = float(rng.uniform(0.005, 0.03))
        mean = max(3.0, share * emails_per_day / 24)
        rate = office_rate(t, 0.1 * mean, 2.5 * mean)
        partner = t.correspondents[1 + i % (len(t.correspondents) - 1)]
        prefix = new_prefix(rng, t.prefixes_used)
        if kind == "in":
            ctype, builder = "Inbound", "partner_inbound"
            params = {"domain": partner, "prefix": prefix, "hosts": _hosts(rng, 2)}
        elif kind == "relay":
            ctype, builder = "Inbound", "tenant_relay"
            params = {"prefix": t.datacenter.prefix, "hosts": [40 + i % 50], "internal_share": 0.6}
        else:
            ctype, builder = "Outbound", "tenant_relay"
            params = {
                "prefix": t.office.prefix,
                "hosts": [60 + i % 50],
                "internal_share": 0.0,
                "targets": [partner],
            }
        plan.connectors.append(Connector(name, ctype, "ordinary", None, "falsePositive"))
        plan.streams.append(Stream(key, builder, plan.start, plan.end, rate, {"connector": name, **params}))


def _noise(rng: np.random.Generator, plan: Plan) -> None:
    """Events a naive rule mistakes for attacks: an on-premises lockout burst (Application
    "Active Directory") and a cloud service account failing from ISP "Microsoft Azure"."""
    t, start, end = plan.tenant, plan.start, plan.end
    uidx = int(rng.integers(0, t.n_users))
    user = Identity(str(t.user_upns[uidx]), str(t.user_oids[uidx]), str(t.user_names[uidx]))
    when = _minute_aligned(int(rng.integers(start + HOUR_US, end - HOUR_US)))
    n = int(rng.integers(130, 200))
    rows, _, _ = burst(
        rng,
        when,
        n,
        user,
        t.office,
        f"10.20.5.{int(rng.integers(2, 250))}",
        success_after_s=3.0,
        app="Active Directory",
        isp="",
    )
    plan.logons += rows
    plan.noise.append(
        {
            "id": "active_directory_lockout",
            "account": user.upn,
            "logonFailures": n,
            "time": iso(when),
            "application": "Active Directory",
        }
    )
    svc = Identity(f"svc-sync@{t.primary_domain}", guid_list(rng, 1)[0], "Directory Sync Service")
    azure = Location("US", "Boydton", "Microsoft Azure", (20, 42, int(rng.integers(0, 255))))
    when = _minute_aligned(int(rng.integers(start + HOUR_US, end - HOUR_US)))
    n = int(rng.integers(110, 180))
    rows, _, _ = burst(rng, when, n, svc, azure, azure.ip(int(rng.integers(2, 250))), success_after_s=4.0)
    plan.logons += rows
    plan.noise.append(
        {
            "id": "azure_service_account_failures",
            "account": svc.upn,
            "logonFailures": n,
            "time": iso(when),
            "isp": "Microsoft Azure",
        }
    )
    when = int(rng.integers(start + HOUR_US, end - HOUR_US))
    alert_id, info, evidence = alert(
        rng,
        when,
        title="Unusual volume of file deletion",
        category="Impact",
        severity="Medium",
        service="Microsoft Defender for Cloud Apps",
        detection="Microsoft Defender for Cloud Apps",
        evidence=[
            {
                "EntityType": "User",
                "EvidenceRole": "Impacted",
                "AccountUpn": user.upn,
                "AccountObjectId": user.object_id,
            }
        ],
    )
    plan.alert_info.append(info)
    plan.alert_evidence += evidence
    plan.noise.append({"id": "unrelated_alert", "alertId": alert_id, "title": info["Title"], "time": iso(when)})


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
