"""Simulated identity and admin activity: logons, Exchange admin cmdlets, alerts, and user noise.

Why separate from mail: these tables are small next to EmailEvents (an admin's day is a handful
of events; a failure burst a few hundred), so scenario events are built as plain rows that read
like the Defender records they imitate. User noise scales with the tenant and is vectorised.
Every row is a dict of schema columns (times as µs since the epoch) for
:func:`devtools.simulate.output.rows_to_table`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from devtools.simulate.arrays import (
    DAY_US,
    HOUR_US,
    US,
    choose,
    const_str,
    guid_list,
    hex_ids,
    ipv4,
    iso,
    join,
    office_shape,
    poisson_times,
    take,
)
from devtools.simulate.output import conform
from devtools.simulate.tenant import Admin, Location, Tenant

EXCHANGE_APP = "Microsoft Exchange Online"
EXCHANGE_APP_ID = 20893
CLOUD_LOGON_APP = "Microsoft 365"
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)
ATTACKER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
ROUTINE_CMDLETS = (
    "Set-Mailbox",
    "Add-MailboxPermission",
    "Set-CASMailbox",
    "Add-DistributionGroupMember",
    "Set-MailboxAutoReplyConfiguration",
    "Set-DistributionGroup",
)
ACTIVITY_TYPE = {"New": "Create", "Set": "Edit", "Remove": "Delete", "Add": "Edit"}


@dataclass(frozen=True)
class Identity:
    """Who an event is about: an admin, a user, or a service account."""

    upn: str
    object_id: str
    display_name: str

    @classmethod
    def of(cls, admin: Admin) -> Identity:
        return cls(admin.upn, admin.object_id, admin.display_name)


def local_midnights(tenant: Tenant, start_us: int, end_us: int) -> list[int]:
    """UTC instants of each local midnight whose day overlaps ``[start_us, end_us)``."""
    tz = tenant.tz_offset * HOUR_US
    first = (start_us + tz) // DAY_US * DAY_US - tz
    return list(range(first, end_us, DAY_US))


def is_weekend_day(midnight_us: int, tenant: Tenant) -> bool:
    local_day = (midnight_us + tenant.tz_offset * HOUR_US) // DAY_US
    return (local_day + 3) % 7 >= 5


# ---------------------------------------------------------------------------------------------
# Rows


def logon(
    rng: np.random.Generator,
    ts: int,
    who: Identity,
    loc: Location,
    ip: str,
    action: str,
    *,
    app: str = CLOUD_LOGON_APP,
    isp: str | None = None,
) -> dict[str, Any]:
    """One IdentityLogonEvents row for a cloud sign-in (Defender for Cloud Apps style)."""
    account, _, domain = who.upn.partition("@")
    on_prem = app == "Active Directory"  # on-premises events carry no geolocation
    return {
        "Timestamp": ts,
        "ActionType": action,
        "Application": app,
        "LogonType": "Interactive",
        "FailureReason": "InvalidUserNameOrPassword" if action == "LogonFailed" else "",
        "AccountName": account,
        "AccountDomain": domain,
        "AccountUpn": who.upn,
        "AccountObjectId": who.object_id,
        "AccountDisplayName": who.display_name,
        "OSPlatform": "Windows",
        "IPAddress": ip,
        "Location": "" if on_prem else loc.country,
        "Isp": loc.isp if isp is None else isp,
        "ReportId": hex_ids(rng, 1, 12)[0].as_py(),
        "AdditionalFields": None if on_prem else {"CountryCode": loc.country, "City": loc.city},
    }


def burst(
    rng: np.random.Generator,
    start: int,
    failures: int,
    who: Identity,
    loc: Location,
    ip: str,
    *,
    success_after_s: float | None,
    app: str = CLOUD_LOGON_APP,
    isp: str | None = None,
) -> tuple[list[dict[str, Any]], int, int | None]:
    """*failures* LogonFailed inside one clock minute from *start*, then optionally a LogonSuccess
    *success_after_s* seconds after the last failure. Returns rows, last failure, success time."""
    span = 50 * US
    offsets = np.sort(rng.integers(0, span, size=failures))
    rows = [logon(rng, start + int(o), who, loc, ip, "LogonFailed", app=app, isp=isp) for o in offsets]
    last = start + int(offsets[-1])
    success = None
    if success_after_s is not None:
        success = last + int(success_after_s * US)
        rows.append(logon(rng, success, who, loc, ip, "LogonSuccess", app=app, isp=isp))
    return rows, last, success


def cmdlet(
    rng: np.random.Generator,
    ts: int,
    tenant: Tenant,
    who: Identity,
    loc: Location,
    ip: str,
    name: str,
    params: Sequence[tuple[str, str]],
    target: str,
    *,
    unusual: bool = False,
) -> dict[str, Any]:
    """One CloudAppEvents row for an Exchange admin cmdlet, with the audit record in RawEventData."""
    record_id, session = guid_list(rng, 2)
    raw = {
        "CreationTime": iso(ts)[:19],
        "Id": record_id,
        "Operation": name,
        "OrganizationId": tenant.tenant_id,
        "RecordType": 1,
        "ResultStatus": "True",
        "UserKey": who.object_id,
        "UserType": 2,
        "Version": 1,
        "Workload": "Exchange",
        "ClientIP": ip,
        "ObjectId": target,
        "UserId": who.upn,
        "AppId": "",
        "ExternalAccess": False,
        "OrganizationName": tenant.onmicrosoft,
        "OriginatingServer": f"AM{int(rng.integers(0, 9))}PR0{int(rng.integers(1, 9))}"
        f"MB{int(rng.integers(1000, 9999))} (15.20.8158.000)",
        "Parameters": [{"Name": k, "Value": v} for k, v in params],
        "SessionId": session,
    }
    seen = {k: (-1 if unusual else 0) for k in ("CountryCode", "ISP", "IPAddress", "City")}
    return {
        "Timestamp": ts,
        "ActionType": name,
        "Application": EXCHANGE_APP,
        "ApplicationId": EXCHANGE_APP_ID,
        "AppInstanceId": 0,
        "AccountObjectId": who.object_id,
        "AccountId": who.object_id,
        "AccountDisplayName": who.display_name,
        "IsAdminOperation": True,
        "IPAddress": ip,
        "IsAnonymousProxy": False,
        "CountryCode": loc.country,
        "City": loc.city,
        "Isp": loc.isp,
        "UserAgent": ATTACKER_UA if unusual else BROWSER_UA,
        "ActivityType": ACTIVITY_TYPE.get(name.split("-", 1)[0], "Edit"),
        "ActivityObjects": [
            {"Type": "Account", "Role": "Actor", "Name": who.display_name, "Id": who.object_id},
            {"Type": "Structured object", "Role": "Target object", "Name": target},
        ],
        "ObjectName": target,
        "ObjectType": "Structured object",
        "ReportId": hex_ids(rng, 1, 12)[0].as_py(),
        "AccountType": "Admin",
        "IsExternalUser": False,
        "IsImpersonated": False,
        "IPTags": [],
        "UserAgentTags": [],
        "RawEventData": raw,
        "AdditionalFields": {},
        "LastSeenForUser": seen,
        "UncommonForUser": [k for k, v in seen.items() if v < 0],
    }


def _routine_params(rng: np.random.Generator, tenant: Tenant, name: str) -> tuple[list[tuple[str, str]], str]:
    user = str(take(tenant.user_upns, rng.integers(0, tenant.n_users, size=1))[0])
    shared = f"shared-{int(rng.integers(1, 20))}@{tenant.primary_domain}"
    group = f"{rng.choice(['all-staff', 'sales', 'finance', 'it-team'])}@{tenant.primary_domain}"
    table = {
        "Set-Mailbox": ([("Identity", user), ("ProhibitSendQuota", "49.5 GB")], user),
        "Add-MailboxPermission": (
            [("Identity", shared), ("User", user), ("AccessRights", "FullAccess")],
            shared,
        ),
        "Set-CASMailbox": ([("Identity", user), ("ActiveSyncEnabled", "False")], user),
        "Add-DistributionGroupMember": ([("Identity", group), ("Member", user)], group),
        "Set-MailboxAutoReplyConfiguration": ([("Identity", user), ("AutoReplyState", "Enabled")], user),
        "Set-DistributionGroup": (
            [("Identity", group), ("RequireSenderAuthenticationEnabled", "True")],
            group,
        ),
    }
    return table[name]


def admin_routine(
    rng: np.random.Generator, tenant: Tenant, admin: Admin, start: int, end: int, *, busy: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """An admin's ordinary days from their home location: a morning sign-in, an occasional
    mistyped password, and routine (non-connector) cmdlets. *busy* is the usual connector admin,
    who works every weekday and many weekends; the others sign in on about half the weekdays."""
    cloud: list[dict[str, Any]] = []
    logons: list[dict[str, Any]] = []
    who = Identity.of(admin)
    hosts = [50, 51] if busy else [int(rng.integers(60, 200))]
    for midnight in local_midnights(tenant, start, end):
        weekend = is_weekend_day(midnight, tenant)
        works = rng.random() < (0.3 if weekend else 1.0) if busy else rng.random() < (0.05 if weekend else 0.5)
        if not works:
            continue
        ip = admin.home.ip(int(rng.choice(hosts)))
        t = midnight + int((8 + rng.random() * 1.5) * HOUR_US)
        if rng.random() < 0.08:
            logons.append(logon(rng, t - int(rng.integers(5, 40) * US), who, admin.home, ip, "LogonFailed"))
        logons.append(logon(rng, t, who, admin.home, ip, "LogonSuccess"))
        n_cmd = int(rng.integers(1, 6)) if busy else int(rng.random() < 0.3)
        for _ in range(n_cmd):
            tc = t + int(rng.uniform(0.2, 8.5) * HOUR_US)
            name = str(rng.choice(ROUTINE_CMDLETS))
            params, target = _routine_params(rng, tenant, name)
            cloud.append(cmdlet(rng, tc, tenant, who, admin.home, ip, name, params, target))
    cloud = [r for r in cloud if start <= r["Timestamp"] < end]
    logons = [r for r in logons if start <= r["Timestamp"] < end]
    return cloud, logons


def on_prem_logons(
    rng: np.random.Generator,
    tenant: Tenant,
    admins: Sequence[Admin],
    start: int,
    end: int,
) -> list[dict[str, Any]]:
    """Admins' on-premises Kerberos logons (Application "Active Directory"): the hunting query
    must leave these out, so they are here to be left out."""
    rows: list[dict[str, Any]] = []
    for midnight in local_midnights(tenant, start, end):
        if is_weekend_day(midnight, tenant):
            continue
        for admin in admins:
            t = midnight + int((7.5 + rng.random() * 2) * HOUR_US)
            account = admin.upn.split("@", 1)[0]
            rows.append(
                {
                    "Timestamp": t,
                    "ActionType": "LogonSuccess",
                    "Application": "Active Directory",
                    "LogonType": "Resource access",
                    "Protocol": "Kerberos",
                    "AccountName": account,
                    "AccountDomain": tenant.brand.upper(),
                    "AccountUpn": admin.upn,
                    "AccountObjectId": admin.object_id,
                    "AccountDisplayName": admin.display_name,
                    "DeviceName": f"wks-{account[:10]}.corp.{tenant.primary_domain}",
                    "DeviceType": "Workstation",
                    "OSPlatform": "Windows11",
                    "IPAddress": f"10.20.{int(rng.integers(1, 30))}.{int(rng.integers(2, 250))}",
                    "Port": int(rng.integers(49152, 65535)),
                    "DestinationDeviceName": f"dc01.corp.{tenant.primary_domain}",
                    "DestinationIPAddress": "10.20.0.10",
                    "DestinationPort": 88,
                    "ReportId": hex_ids(rng, 1, 12)[0].as_py(),
                }
            )
    return [r for r in rows if start <= r["Timestamp"] < end]


# ---------------------------------------------------------------------------------------------
# User noise (vectorised)


def _noise_times(rng: np.random.Generator, tenant: Tenant, start: int, end: int, per_day: float) -> np.ndarray:
    def rate(h: np.ndarray) -> np.ndarray:
        return per_day / 24 * (0.15 + 2.5 * office_shape(h, tenant.tz_offset))

    return poisson_times(rng, start, end, rate)


def user_cloud_noise(rng: np.random.Generator, tenant: Tenant, start: int, end: int, per_day: float) -> pa.Table:
    """Users' everyday Microsoft 365 activity (file and mailbox access): CloudAppEvents rows a
    connector query must filter out."""
    times = _noise_times(rng, tenant, start, end, per_day)
    n = len(times)
    uidx = rng.integers(0, tenant.n_users, size=n)
    kinds = (
        ("FileAccessed", "Microsoft SharePoint Online", 20892, "Read"),
        ("FileModified", "Microsoft OneDrive for Business", 15600, "Edit"),
        ("MailItemsAccessed", EXCHANGE_APP, EXCHANGE_APP_ID, "Read"),
        ("MessageSent", "Microsoft Teams", 11394, "Create"),
    )
    k = rng.integers(0, len(kinds), size=n)
    oid = take(tenant.user_oids, uidx)
    raw = join(
        '{"Workload":"',
        take([x[1] for x in kinds], k),
        '","UserId":"',
        take(tenant.user_upns, uidx),
        '","Operation":"',
        take([x[0] for x in kinds], k),
        '"}',
    )
    return conform(
        "CloudAppEvents",
        n,
        {
            "Timestamp": times,
            "ActionType": take([x[0] for x in kinds], k),
            "Application": take([x[1] for x in kinds], k),
            "ApplicationId": pa.array(np.array([x[2] for x in kinds], dtype=np.int32)[k]),
            "AppInstanceId": 0,
            "AccountObjectId": oid,
            "AccountId": oid,
            "AccountDisplayName": take(tenant.user_names, uidx),
            "IsAdminOperation": False,
            "IPAddress": ipv4(tenant.office.prefix, rng.integers(10, 40, size=n)),
            "IsAnonymousProxy": False,
            "CountryCode": tenant.office.country,
            "City": tenant.office.city,
            "Isp": tenant.office.isp,
            "UserAgent": BROWSER_UA,
            "ActivityType": take([x[3] for x in kinds], k),
            "ObjectType": "File",
            "ReportId": hex_ids(rng, n, 12),
            "AccountType": "Regular",
            "IsExternalUser": False,
            "IsImpersonated": False,
            "RawEventData": raw,
        },
    )


def user_logon_noise(rng: np.random.Generator, tenant: Tenant, start: int, end: int, per_day: float) -> pa.Table:
    """Users' everyday sign-ins (a few failures among them): IdentityLogonEvents rows."""
    times = _noise_times(rng, tenant, start, end, per_day)
    n = len(times)
    uidx = rng.integers(0, tenant.n_users, size=n)
    upn = take(tenant.user_upns, uidx)
    failed = rng.random(n) < 0.03
    local = pc.replace_substring_regex(upn, pattern="@.*$", replacement="")
    domain = pc.replace_substring_regex(upn, pattern="^.*@", replacement="")
    return conform(
        "IdentityLogonEvents",
        n,
        {
            "Timestamp": times,
            "ActionType": pc.if_else(pa.array(failed), const_str("LogonFailed", n), const_str("LogonSuccess", n)),
            "Application": CLOUD_LOGON_APP,
            "LogonType": "Interactive",
            "FailureReason": pc.if_else(pa.array(failed), const_str("InvalidUserNameOrPassword", n), const_str("", n)),
            "AccountName": local,
            "AccountDomain": domain,
            "AccountUpn": upn,
            "AccountObjectId": take(tenant.user_oids, uidx),
            "AccountDisplayName": take(tenant.user_names, uidx),
            "OSPlatform": choose(rng, ("Windows", "macOS", "iOS", "Android"), n, p=[0.6, 0.15, 0.15, 0.1]),
            "IPAddress": ipv4(tenant.office.prefix, rng.integers(10, 40, size=n)),
            "Location": tenant.office.country,
            "Isp": tenant.office.isp,
            "ReportId": hex_ids(rng, n, 12),
            "AdditionalFields": json.dumps(
                {"CountryCode": tenant.office.country, "City": tenant.office.city},
                ensure_ascii=False,
                separators=(",", ":"),
            ),
        },
    )


# ---------------------------------------------------------------------------------------------
# Alerts


def alert(
    rng: np.random.Generator,
    ts: int,
    *,
    title: str,
    category: str,
    severity: str,
    service: str,
    detection: str,
    evidence: Sequence[dict[str, Any]],
    techniques: Sequence[str] = (),
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """An AlertInfo row and its AlertEvidence rows (each evidence dict adds entity columns)."""
    alert_id = "fa" + hex_ids(rng, 1, 16)[0].as_py()
    common = {
        "AlertId": alert_id,
        "Title": title,
        "ServiceSource": service,
        "DetectionSource": detection,
        "AttackTechniques": json.dumps(list(techniques)) if techniques else "",
    }
    info = {"Timestamp": ts, **common, "Category": category, "Severity": severity}
    rows = [
        {
            "Timestamp": ts + i * 1000,
            **common,
            "Categories": json.dumps([category]),
            "Severity": severity,
            **e,
        }
        for i, e in enumerate(evidence)
    ]
    return alert_id, info, rows
