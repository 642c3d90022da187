"""Synthetic tenant telemetry with labelled scenarios: ``python -m grading simulate OUT_DIR``.

Why: the grader must be shown to tell a compromised admin's spray connector from a busy
partner, a slow abuse that never crosses 100 messages an hour from a newsletter service whose
envelope sender always differs, at volumes a real tenant has, without real tenant data. The
simulator writes an export folder exactly as the local source reads one (one file per table,
every schema column typed, docs/architecture.md, "Export folder") and, BESIDE it, a labels file saying
what each scenario is, who did what, when, and the numbers a correct sweep must find.

Deterministic: the same seed and arguments give byte-identical files; mail is drawn day by day
with numpy and written with pyarrow, so a million mails a day for 14 days fits in minutes and
in flat memory. The graded window is the last 24 hours before ``end``; the export's latest
event is exactly ``end``, so a sweep whose ``--now`` defaults to the latest event grades
exactly the window the labels count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from devtools.simulate.activity import user_cloud_noise, user_logon_noise
from devtools.simulate.arrays import DAY_US, HOUR_US, domain_of, iso, poisson_times, to_us
from devtools.simulate.lookalikes import plan_look_alikes
from devtools.simulate.mail import (
    BUILDERS,
    background_inbound,
    background_intra,
    background_outbound,
    expand,
)
from devtools.simulate.output import FORMATS, TABLES, ExportWriter, rows_to_table, sort_by_time
from devtools.simulate.scenarios import (
    MIN_CONNECTORS,
    MIN_DAYS,
    Plan,
    background_rate,
    plan_scenarios,
)
from devtools.simulate.tenant import build_tenant

DEFAULT_END = datetime(2026, 11, 20, tzinfo=UTC)
"""A fixed instant, so a run without ``--end`` is reproducible."""
MIN_EMAILS_PER_DAY = 100
BACKGROUND_SHARES = (
    ("inbound", 0.45, background_inbound),
    ("outbound", 0.25, background_outbound),
    ("intra", 0.30, background_intra),
)
# Seed-sequence tags: each part of the simulation draws from its own stream, so changing one
# part (say, a new noise kind) does not reshuffle every other part.
_TENANT, _PLAN, _BACKGROUND, _STREAM, _EXPAND, _NOISE, _LOOK_ALIKES = range(1, 8)
SIGNINS = "AADSignInEventsBeta"
"""Written only with ``--look-alikes`` (the base scenarios' export stays as it was)."""


def _rng(seed: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([seed, *tags])


def labels_path(out_dir: Path) -> Path:
    """Where the labels of the export in *out_dir* go: beside the folder, never inside it
    (the loader must see only telemetry)."""
    out_dir = Path(out_dir)
    return out_dir.parent / f"{out_dir.name}.labels.json"


@dataclass(frozen=True)
class Labels:
    """The ground truth of a simulated export, as written to :func:`labels_path`.

    ``data`` is the JSON document: ``parameters``, ``timeRange``, ``window`` (the last 24 h,
    ending at the latest event), ``tenant`` (``domains``...), ``knownCorrespondentDomains``,
    ``usualAdmin``, ``admins``, ``scenarios`` (each: ``id``, ``connector``, ``connectorType``,
    ``expectedClassification``, ``expectedDetermination``, ``admin``, ``times``, ``counts``,
    ``mail`` statistics, ``description``), ``connectors`` (every connector, scenario or
    ordinary, with its ``mail`` statistics), ``noise`` and ``tables`` (rows per table).

    ``mail`` statistics, counted from the written rows ("messages" are distinct
    NetworkMessageIds; "window" is ``window.start`` .. ``window.end``; hours are UTC clock
    hours): ``messagesTotal``, ``messagesInHistory``, ``messagesInWindow``,
    ``recipientRowsInWindow``, ``p1p2MismatchMessagesIn{Window,History}``,
    ``emptySenderObjectIdMessagesIn{Window,History}``, ``maxMessagesPerHourInWindow``,
    ``minMessagesPerFullHourInWindow`` (full hours since the connector's first message),
    ``maxMessagesPerHourInHistory``, ``recipientDomainsInWindow`` (``distinct``, ``tenant``,
    ``knownCorrespondents``, ``seenBefore`` / ``neverSeen`` against every domain of the mail
    before the window), ``sourceIpsInWindow``, ``directionsInWindow``, ``firstMessage``,
    ``lastMessage``.
    """

    path: Path
    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Labels:
        return cls(Path(path), json.loads(Path(path).read_text(encoding="utf-8")))

    def scenario(self, scenario_id: str) -> dict[str, Any]:
        for s in self.data["scenarios"]:
            if s["id"] == scenario_id:
                return s
        raise KeyError(f"no scenario {scenario_id!r} in {self.path}")

    def connector(self, name: str) -> dict[str, Any]:
        for c in self.data["connectors"]:
            if c["name"] == name:
                return c
        raise KeyError(f"no connector {name!r} in {self.path}")

    @property
    def window(self) -> tuple[datetime, datetime]:
        w = self.data["window"]
        return datetime.fromisoformat(w["start"]), datetime.fromisoformat(w["end"])

    @property
    def tenant_domains(self) -> list[str]:
        return list(self.data["tenant"]["domains"])

    @property
    def known_domains(self) -> list[str]:
        return list(self.data["knownCorrespondentDomains"])

    @property
    def usual_admin(self) -> dict[str, Any]:
        return dict(self.data["usualAdmin"])


def _check(seed: int, days: int, emails_per_day: int, connectors: int, fmt: str) -> None:
    problems = []
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        problems.append(f"seed must be a whole number, 0 or more (got {seed!r})")
    if not isinstance(days, int) or days < MIN_DAYS:
        problems.append(f"days must be at least {MIN_DAYS} so scenarios have history (got {days!r})")
    if not isinstance(emails_per_day, int) or emails_per_day < MIN_EMAILS_PER_DAY:
        problems.append(f"emails per day must be at least {MIN_EMAILS_PER_DAY} (got {emails_per_day!r})")
    if not isinstance(connectors, int) or connectors < MIN_CONNECTORS:
        problems.append(f"connectors must be at least {MIN_CONNECTORS}, one per scenario (got {connectors!r})")
    if fmt not in FORMATS:
        problems.append(f"format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if problems:
        raise ValueError("; ".join(problems))


def simulate(
    out_dir: Path,
    *,
    seed: int,
    days: int,
    emails_per_day: int,
    connectors: int,
    end: datetime | None = None,
    fmt: str = "parquet",
    hostile_names: bool = False,
    look_alikes: bool = False,
) -> Labels:
    """Write a simulated export folder to *out_dir* and its labels beside it; return the labels.

    *emails_per_day* is the background user mail (messages a day, weekly mean); connector
    traffic comes on top at the rates the scenarios need. *connectors* is the total number of
    connectors (at least one per scenario; the rest are ordinary long-standing ones). Existing
    table files in *out_dir* (any format) are replaced; other files are left alone.
    """
    _check(seed, days, emails_per_day, connectors, fmt)
    end_dt = DEFAULT_END if end is None else end
    if end_dt.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC)")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for table in (*TABLES, SIGNINS):
        for f in FORMATS:
            (out_dir / f"{table}.{f}").unlink(missing_ok=True)

    end_us = to_us(end_dt)
    start_us = end_us - days * DAY_US
    tenant = build_tenant(
        _rng(seed, _TENANT),
        n_users=int(np.clip(emails_per_day // 50, 20, 5000)),
        n_correspondents=int(np.clip(emails_per_day // 100, 12, 40)),
    )
    plan = plan_scenarios(
        _rng(seed, _PLAN),
        tenant,
        start=start_us,
        end=end_us,
        connectors=connectors,
        emails_per_day=emails_per_day,
        hostile_names=hostile_names,
    )
    if look_alikes:
        plan_look_alikes(_rng(seed, _LOOK_ALIKES), plan)
    collector = _MailCollector(plan.window_start)
    with ExportWriter(out_dir, fmt) as writer:
        for day in range(days):
            tables = _mail_day(seed, plan, day, emails_per_day)
            for name in ("EmailEvents", "EmailUrlInfo", "EmailAttachmentInfo"):
                writer.write(name, tables[name])
            collector.add(tables["EmailEvents"])
        mail = collector.finish()
        _add_message_evidence(plan, mail)
        for name, table in _activity_tables(seed, plan).items():
            writer.write(name, table)
        rows = dict(writer.rows)
    labels = Labels(
        labels_path(out_dir),
        _labels(
            plan,
            mail,
            rows,
            out_dir,
            {
                "seed": seed,
                "days": days,
                "emailsPerDay": emails_per_day,
                "connectors": connectors,
                "end": iso(end_us),
                "format": fmt,
                "hostileNames": hostile_names,
                **({"lookAlikes": True} if look_alikes else {}),
            },
        ),
    )
    labels.path.write_text(json.dumps(labels.data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return labels


# ---------------------------------------------------------------------------------------------
# Mail, a day at a time


def _mail_day(seed: int, plan: Plan, day: int, emails_per_day: int) -> dict[str, pa.Table]:
    tenant = plan.tenant
    d0 = plan.start + day * DAY_US
    d1 = min(d0 + DAY_US, plan.end)
    last_day = d1 == plan.end
    batches = []
    rng = _rng(seed, _BACKGROUND, day)
    rate = background_rate(tenant, emails_per_day)
    for kind, share, builder in BACKGROUND_SHARES:
        times = poisson_times(rng, d0, d1, lambda h, s=share: s * rate(h))
        if last_day and kind == "intra":
            times = np.append(times, plan.end)  # the export's latest event is exactly `end`
        batches.append(builder(rng, tenant, times))
    for i, stream in enumerate(plan.streams):
        a, b = max(stream.start, d0), min(stream.end, d1)
        if a >= b:
            continue
        srng = _rng(seed, _STREAM, i, day)
        times = poisson_times(srng, a, b, stream.rate, per_hour=stream.per_hour)
        if len(times):
            batches.append(BUILDERS[stream.kind](srng, tenant, times, stream.params))
    erng = _rng(seed, _EXPAND, day)
    parts = [expand(erng, b) for b in batches if b.n]
    return {
        name: sort_by_time(pa.concat_tables([p[name] for p in parts]))
        for name in ("EmailEvents", "EmailUrlInfo", "EmailAttachmentInfo")
    }


class _MailCollector:
    """Keeps connector mail (small) and the domains seen in history (before the window), so the
    labels can count exactly what the files hold."""

    def __init__(self, window_start: int) -> None:
        self.window_start = window_start
        self.connector_rows: list[pa.Table] = []
        self.seen_domains: set[str] = set()

    def add(self, events: pa.Table) -> None:
        ts = pc.cast(events["Timestamp"], pa.int64())
        history = events.filter(pc.less(ts, self.window_start))
        if history.num_rows:
            for col in (
                domain_of(history["RecipientEmailAddress"]),
                history["SenderFromDomain"],
                history["SenderMailFromDomain"],
            ):
                self.seen_domains.update(pc.unique(col).to_pylist())
        via = events.filter(pc.not_equal(events["Connectors"], ""))
        self.connector_rows.append(
            pa.table(
                {
                    "ts": pc.cast(via["Timestamp"], pa.int64()),
                    "id": via["NetworkMessageId"],
                    "connector": via["Connectors"],
                    "p2": via["SenderFromDomain"],
                    "p1": via["SenderMailFromDomain"],
                    "oid": via["SenderObjectId"],
                    "rdom": domain_of(via["RecipientEmailAddress"]),
                    "ip": via["SenderIPv4"],
                    "direction": via["EmailDirection"],
                    "subject": via["Subject"],
                }
            )
        )

    def finish(self) -> _MailStats:
        return _MailStats(pa.concat_tables(self.connector_rows), self.window_start, self.seen_domains)


class _MailStats:
    """Per-connector numbers over the generated rows (DuckDB over the connector mail)."""

    def __init__(self, rows: pa.Table, window_start: int, seen: set[str]) -> None:
        self.rows = rows
        self.window_start = window_start
        self.seen = seen
        self.con = duckdb.connect()
        self.con.register("mail", rows)
        w = {"w": int(window_start)}
        summary = self.con.execute(
            """
            SELECT connector,
                   count(DISTINCT id), count(DISTINCT id) FILTER (ts >= $w), count(*) FILTER (ts >= $w),
                   count(DISTINCT id) FILTER (ts < $w),
                   count(DISTINCT id) FILTER (ts >= $w AND p1 <> p2),
                   count(DISTINCT id) FILTER (ts < $w AND p1 <> p2),
                   count(DISTINCT id) FILTER (ts >= $w AND oid = ''),
                   count(DISTINCT id) FILTER (ts < $w AND oid = ''),
                   min(ts), max(ts),
                   list(DISTINCT rdom) FILTER (ts >= $w),
                   list(DISTINCT ip) FILTER (ts >= $w)
            FROM mail GROUP BY connector""",
            w,
        ).fetchall()
        self.summary = {r[0]: r[1:] for r in summary}
        self.hourly: dict[str, dict[int, int]] = {}
        hourly = self.con.execute(
            "SELECT connector, ts // $h, count(DISTINCT id) FROM mail GROUP BY 1, 2", {"h": HOUR_US}
        ).fetchall()
        for c, h, n in hourly:
            self.hourly.setdefault(c, {})[int(h)] = int(n)
        self.directions: dict[str, dict[str, int]] = {}
        directions = self.con.execute(
            "SELECT connector, direction, count(DISTINCT id) FROM mail WHERE ts >= $w GROUP BY 1, 2 ORDER BY 1, 2",
            w,
        ).fetchall()
        for c, d, n in directions:
            self.directions.setdefault(c, {})[d] = int(n)

    def samples(self, connector: str, before: int, n: int, ip: str | None = None) -> list[tuple[str, str]]:
        return [
            (r[0], r[1])
            for r in self.con.execute(
                "SELECT id, any_value(subject) FROM mail WHERE connector = ? AND ts < ? AND (? IS NULL OR ip = ?) "
                "GROUP BY id ORDER BY min(ts), id LIMIT ?",
                [connector, before, ip, ip, n],
            ).fetchall()
        ]

    def for_connector(self, name: str, end: int, known: Iterable[str], tenant: Iterable[str]) -> dict[str, Any]:
        row = self.summary.get(name)
        if row is None:
            return {"messagesTotal": 0, "messagesInWindow": 0}
        (total, win, rows_win, hist, mm_win, mm_hist, empty_win, empty_hist, first, last, rdoms, ips) = row
        hours = self.hourly.get(name, {})
        # Full clock hours of the window since the connector's first message (zero hours count).
        w_first = -(-max(self.window_start, int(first)) // HOUR_US)
        full = [hours.get(h, 0) for h in range(w_first, end // HOUR_US)]
        in_window = [n for h, n in hours.items() if h >= self.window_start // HOUR_US]
        history = [n for h, n in hours.items() if (h + 1) * HOUR_US <= self.window_start]
        rdoms = set(rdoms or [])
        known_set = set(known)
        return {
            "messagesTotal": int(total),
            "messagesInHistory": int(hist),
            "messagesInWindow": int(win),
            "recipientRowsInWindow": int(rows_win),
            "p1p2MismatchMessagesInWindow": int(mm_win),
            "p1p2MismatchMessagesInHistory": int(mm_hist),
            "emptySenderObjectIdMessagesInWindow": int(empty_win),
            "emptySenderObjectIdMessagesInHistory": int(empty_hist),
            "maxMessagesPerHourInWindow": max(in_window, default=0),
            "minMessagesPerFullHourInWindow": min(full, default=0),
            "maxMessagesPerHourInHistory": max(history, default=0),
            "maxMessagesPerHour": max(hours.values(), default=0),
            "recipientDomainsInWindow": {
                "distinct": len(rdoms),
                "tenant": len(rdoms & set(tenant)),
                "knownCorrespondents": len(rdoms & known_set),
                "seenBefore": len(rdoms & self.seen),
                "neverSeen": len(rdoms - self.seen),
            },
            "sourceIpsInWindow": sorted(ips or []),
            "directionsInWindow": self.directions.get(name, {}),
            "firstMessage": iso(int(first)),
            "lastMessage": iso(int(last)),
        }


def _add_message_evidence(plan: Plan, mail: _MailStats) -> None:
    """MailMessage evidence rows naming real relayed messages, for alerts that have them."""
    for spec in plan.message_evidence:
        info = spec["alert"]
        samples = mail.samples(spec["connector"], spec["before"], spec["samples"], spec.get("ip"))
        for i, (nmid, subject) in enumerate(samples):
            plan.alert_evidence.append(
                {
                    "Timestamp": info["Timestamp"] + (10 + i) * 1000,
                    "AlertId": info["AlertId"],
                    "Title": info["Title"],
                    "Categories": json.dumps([info["Category"]]),
                    "AttackTechniques": info["AttackTechniques"],
                    "ServiceSource": info["ServiceSource"],
                    "DetectionSource": info["DetectionSource"],
                    "Severity": info["Severity"],
                    "EntityType": "MailMessage",
                    "EvidenceRole": "Related",
                    "NetworkMessageId": nmid,
                    "EmailSubject": subject,
                }
            )


def _activity_tables(seed: int, plan: Plan) -> dict[str, pa.Table]:
    t = plan.tenant
    rng = _rng(seed, _NOISE)
    cloud = pa.concat_tables(
        [
            rows_to_table("CloudAppEvents", plan.cloud),
            user_cloud_noise(rng, t, plan.start, plan.end, per_day=2.0 * t.n_users),
        ]
    )
    logons = pa.concat_tables(
        [
            rows_to_table("IdentityLogonEvents", plan.logons),
            user_logon_noise(rng, t, plan.start, plan.end, per_day=1.0 * t.n_users),
        ]
    )
    tables = {
        "CloudAppEvents": sort_by_time(cloud),
        "IdentityLogonEvents": sort_by_time(logons),
        "AlertInfo": sort_by_time(rows_to_table("AlertInfo", plan.alert_info)),
        "AlertEvidence": sort_by_time(rows_to_table("AlertEvidence", plan.alert_evidence)),
    }
    if plan.signins:
        tables[SIGNINS] = sort_by_time(rows_to_table(SIGNINS, plan.signins))
    return tables


def _labels(
    plan: Plan, mail: _MailStats, rows: dict[str, int], out_dir: Path, parameters: dict[str, Any]
) -> dict[str, Any]:
    t = plan.tenant
    known = t.correspondents
    connectors = []
    by_name: dict[str, dict[str, Any]] = {}
    for c in plan.connectors:
        stats = mail.for_connector(c.name, plan.end, known, t.domains)
        by_name[c.name] = stats
        connectors.append({**c.label(), "mail": stats})
    scenarios = []
    for s in plan.scenarios:
        s = dict(s)
        if s["connector"] is not None:
            s["mail"] = by_name[s["connector"]]
        scenarios.append(s)
    usual = t.admins["usual"]
    return {
        "schemaVersion": 1,
        "generator": "devtools.simulate",
        "exportFolder": out_dir.name,
        "parameters": parameters,
        "timeRange": {"start": iso(plan.start), "end": iso(plan.end)},
        "window": {
            "start": iso(plan.window_start),
            "end": iso(plan.end),
            "note": "the last 24 hours; the export's latest event is exactly window.end, so a sweep "
            "with --now defaulting to the latest event grades this window",
        },
        "latestEvent": iso(plan.end),
        "tenant": {
            "name": t.brand,
            "tenantId": t.tenant_id,
            "domains": t.domains,
            "primaryDomain": t.primary_domain,
            "timezoneOffsetHours": t.tz_offset,
            "users": t.n_users,
            "office": t.office.label(),
            "datacenter": t.datacenter.label(),
        },
        "knownCorrespondentDomains": sorted(known),
        "customerDomains": sorted(t.customers),
        "usualAdmin": {**usual.label(), "location": usual.home.label()},
        "admins": [{**a.label(), "home": a.home.label()} for a in t.admins.values()],
        "scenarios": scenarios,
        **({"approvedConfigurations": plan.approvals} if plan.approvals else {}),
        "connectors": connectors,
        "noise": plan.noise,
        "tables": rows,
    }


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_end(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time such as 2026-11-20T00:00:00Z, got {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def add_simulate_parser(subparsers: Any) -> None:
    """Add the ``simulate`` verb to an argparse sub-parser set."""
    p = subparsers.add_parser(
        "simulate",
        help="write a simulated tenant export with labelled scenarios",
        description="Write a deterministic simulated export folder (one file per table) and, beside "
        "it, OUT_DIR.labels.json describing each scenario and the numbers a correct sweep finds. "
        "Existing table files in OUT_DIR are replaced.",
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="export folder to write")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--days", type=int, default=14, help=f"days of telemetry, at least {MIN_DAYS} (default 14)")
    p.add_argument(
        "--emails-per-day",
        type=int,
        default=20000,
        dest="emails_per_day",
        help="background user mail per day, messages (default 20000)",
    )
    p.add_argument("--connectors", type=int, default=8, help=f"total connectors, at least {MIN_CONNECTORS} (default 8)")
    p.add_argument("--format", choices=FORMATS, default="parquet", dest="fmt", help="file format")
    p.add_argument(
        "--end",
        type=_parse_end,
        default=None,
        help=f"end of the telemetry, ISO 8601 UTC (default {iso(to_us(DEFAULT_END))})",
    )
    p.add_argument(
        "--hostile-names",
        action="store_true",
        dest="hostile_names",
        help="put injection payloads into connector names and some subjects",
    )
    p.add_argument(
        "--look-alikes",
        action="store_true",
        dest="look_alikes",
        help="add the labelled scenario pairs: each attack beside its benign look-alike "
        "(and the AADSignInEventsBeta table they need)",
    )
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Run the ``simulate`` verb: 0 done, 2 bad arguments."""
    began = time.monotonic()
    try:
        labels = simulate(
            args.out_dir,
            seed=args.seed,
            days=args.days,
            emails_per_day=args.emails_per_day,
            connectors=args.connectors,
            end=args.end,
            fmt=args.fmt,
            hostile_names=args.hostile_names,
            look_alikes=args.look_alikes,
        )
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    tables = labels.data["tables"]
    print(f"wrote {args.out_dir} ({args.fmt}): " + ", ".join(f"{k} {v:,}" for k, v in tables.items()))
    print(f"labels: {labels.path}")
    start, end = labels.window
    print(f"graded window: {start.isoformat()} .. {end.isoformat()}; {time.monotonic() - began:.1f} s")
    return 0
