"""One sweep end to end: windows -> queries -> facts -> verdicts, plus the sweep record.

Why a fixed plan: the sweep issues the same queries whatever the number of connectors, and
each returns aggregates (connectors x hours), so its cost does not grow with mail volume.
Why completeness is tracked per input: a failed, partial or truncated query makes the verdicts
that depend on it ``unknown`` with the service's reason, never a silent "clean".
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from grading.alert_links import link_alert_messages
from grading.classification import LISTING_ORDER, Classification
from grading.grader import ConnectorFacts, grade
from grading.grader.baselines import AdminProfile, admin_profiles, connector_baseline, floor_hour
from grading.grader.domains import correspondent_domains, recipient_profile, sender_domains, split_listing
from grading.grader.transport_rules import rules_of
from grading.hunting.catalog import REQUIRED_RESULTS, PlannedQuery, Windows, sweep_plan
from grading.hunting.live import SchemaResolution
from grading.hunting.rendering import load_queries, render, required_tables
from grading.policy import Policy
from grading.settings import TenantSettings, WindowSettings
from grading.sources.base import QueryResult, TelemetrySource
from grading.storage.aggregates import PART_CHARS

# Which check needs which optional result: a missing table makes that check "not checked".
OPTIONAL_CHECKS = {
    "connector_urls": "artifacts (URLs)",
    "connector_attachments": "artifacts (attachments)",
    "connector_alerts": "alerts",
    "admin_logon_bursts": "adminCompromise (logon bursts)",
    "admin_logon_locations": "adminCompromise (logon locations)",
    "admin_entra_signins": "adminCompromise (Entra sign-ins)",
}


@dataclass
class SweepResult:
    verdicts: list[dict[str, Any]]
    sweep: dict[str, Any]
    results: dict[str, QueryResult] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return bool(self.sweep["complete"])

    def as_json(self) -> dict[str, Any]:
        return {"verdicts": self.verdicts, "sweep": self.sweep}


def make_windows(now: datetime, window_start: datetime | None, settings: WindowSettings) -> Windows:
    """The contract's windows: the graded window ends at *now*; a first sweep grades ``first_window``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    start = window_start.astimezone(UTC) if window_start else now - settings.first_window
    if start >= now:
        raise ValueError(f"the window start {start.isoformat()} is not before its end {now.isoformat()}")
    change_start = now - settings.change_lookback
    evaluation_start = min(start, now - settings.evaluation_span)
    return Windows(
        window_start=start,
        window_end=now,
        evaluation_start=evaluation_start,
        change_start=change_start,
        history_start=evaluation_start - settings.baseline_lookback,
        admin_history_start=change_start - settings.baseline_lookback,
    )


def _span_text(span: timedelta) -> str:
    """A duration as the settings write it (``20m``, ``90s``)."""
    seconds = span.total_seconds()
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def learn_schema(source: TelemetrySource) -> SchemaResolution | None:
    """The source's view of the live schema of every table the sweep's queries read (a source
    without ``live_schema`` runs the queries as written)."""
    learn = getattr(source, "live_schema", None)
    if learn is None:
        return None
    tables = {t for q in load_queries().values() if source.dialect in q.dialects for t in q.tables}
    return learn(tables)


def _adapt(planned: PlannedQuery, tables: frozenset[str], text: str,
           schema: SchemaResolution) -> tuple[QueryResult | None, dict[str, list[str]]]:
    """A result without asking, where the live schema already answers (a missing table, a column
    the tenant lacks that is not optional); else the optional columns the query reads as empties."""
    missing = schema.missing_of(tables)
    if missing and not schema.normalised:  # a local export's source says "not checked" itself
        gone = [t for t in missing if t in required_tables()]
        if gone:
            reason = f"required table {', '.join(gone)} is not in this tenant (its live schema has no such table)"
            return QueryResult(planned.label, (), [], complete=False, reason=reason, missing_tables=tuple(gone)), {}
        return QueryResult(
            planned.label, (), [], complete=True, missing_tables=missing,
            reason="not checked: table " + ", ".join(missing) + " is not in this tenant's live schema",
        ), {}
    optional, required = schema.columns_needed(text, tables)
    if required and not schema.normalised:
        cols = "; ".join(f"{t}: {', '.join(c)}" for t, c in required.items())
        reason = f"the tenant's live schema lacks column(s) this query reads ({cols}); run schema-check"
        return QueryResult(planned.label, (), [], complete=False, reason=reason), {}
    return None, optional


def _run(source: TelemetrySource, planned: PlannedQuery, schema: SchemaResolution | None = None) -> QueryResult:
    query = load_queries()[planned.query]
    if source.dialect not in query.dialects:
        result = QueryResult(
            planned.label,
            (),
            [],
            complete=True,
            missing_tables=tuple(sorted(query.optional_tables)),
            reason=f"not checked: the query is not available in the {source.dialect.value} dialect",
        )
        return result
    absent: dict[str, list[str]] = {}
    if schema is not None:
        answered, absent = _adapt(planned, query.tables, query.body, schema)
        if answered is not None:
            return answered
    rendered = render(query, planned.values, source.dialect, start=planned.start, end=planned.end, schema=schema)
    started = time.perf_counter()
    result = source.run(rendered)
    result.name = planned.label
    if absent:
        result.absent_columns = {t: tuple(c) for t, c in absent.items()}
    result.stats.setdefault("elapsedSeconds", round(time.perf_counter() - started, 3))
    return result


def _match_alerts(
    connector: str, admin_ids: set[str], alerts: list[dict[str, Any]], *, names: tuple[str, ...] = (),
    source_ips: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Alerts linked to the connector by any evidence: an evidence entity that names it (or one of its
    earlier *names*, case-insensitively, as Exchange does), an evidence message it relayed, an evidence
    IP its traffic came from, or an admin who changed it. Titles are not matched: a connector named like
    a word of a title would otherwise link every alert."""
    wanted = {n.casefold() for n in (connector, *names)}
    matched = []
    for alert in alerts:
        named = any(str(c).casefold() in wanted for c in alert.get("EvidenceConnectors") or ())
        for text in alert.get("EvidenceFields") or ():
            if named:
                break
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except json.JSONDecodeError:
                value = text
            named = any(_contains_value(value, n) for n in (connector, *names))
        by_ip = bool(source_ips & set(alert.get("RemoteIPs") or ()))
        by_admin = bool(admin_ids & set(alert.get("AccountObjectIds") or ()))
        if named or by_ip or by_admin:
            matched.append(alert)
    return matched


def _contains_value(value: Any, wanted: str) -> bool:
    if isinstance(value, str):
        return value.casefold() == wanted.casefold()
    if isinstance(value, dict):
        return any(_contains_value(v, wanted) for v in value.values())
    if isinstance(value, list):
        return any(_contains_value(v, wanted) for v in value)
    return False


def run_sweep(
    source: TelemetrySource,
    *,
    now: datetime,
    window_start: datetime | None = None,
    window_settings: WindowSettings | None = None,
    tenant_settings: TenantSettings | None = None,
    policy: Policy | None = None,
    sweep_id: str | None = None,
    approved: Mapping[str, dict[str, Any]] | None = None,
    inventory: Mapping[str, dict[str, Any]] | None = None,
    aggregates: Any = None,
    ingested_until: datetime | None = None,
) -> SweepResult:
    """Grade every connector with mail in the window or a change in the lookback. *approved* and
    *inventory*: each connector's approved configuration and latest inventory snapshot, by case-folded
    name (:class:`grading.scheduler.KnownConfigurations`); a connector without them is graded without.

    *aggregates* (:class:`grading.storage.aggregates.HourlyAggregates`): where hourly query rows are
    kept; with it, every mail query (``AGGREGATE_KINDS``) reads only the hours not stored yet (and the
    hours due for their late-row re-read) from the source, and the rest from the store
    (:func:`_from_store`; the correspondents from a folded profile, :func:`_correspondents`).
    Without it, every query reads its whole range from the source. *ingested_until*: the time up to
    which the source holds all its rows (the clock minus GRADER_INGESTION_DELAY; the timer passes it,
    its windows already end there, so the hours it stores are final at once); by default the window
    end minus the delay, so the newest hours are read once more later."""
    started = time.perf_counter()
    ws = window_settings or WindowSettings()
    ts = tenant_settings or TenantSettings()
    policy = policy or Policy()
    w = make_windows(now, window_start, ws)
    sweep_id = sweep_id or f"{w.window_end:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"

    schema = learn_schema(source)
    # The sweep's own deadline (GRADER_SWEEP_DEADLINE), well inside the host's functionTimeout: past
    # it no further query is sent, and the queries not sent make the sweep incomplete, with the
    # reason, so it is recorded and its lease released instead of the worker being killed mid-run.
    deadline = started + ws.sweep_deadline.total_seconds()
    deadline_reason = (
        f"not run: the sweep reached its deadline (GRADER_SWEEP_DEADLINE={_span_text(ws.sweep_deadline)}) "
        "before this query was sent"
    )

    read: dict[str, dict[str, Any]] = {}  # per query run: the time range it read and its tables

    def run_planned(planned: PlannedQuery) -> QueryResult:
        read[planned.label] = _read_range(planned.query, planned.start, planned.end)
        if time.perf_counter() >= deadline:
            return QueryResult(planned.label, (), [], complete=False, reason=deadline_reason)
        return _run(source, planned, schema)

    results: dict[str, QueryResult] = {}
    ingested = ingested_until.astimezone(UTC) if ingested_until else w.window_end - ws.ingestion_delay
    stored_note = _aggregation_blocked(w) if aggregates is not None else None
    stored = aggregates if aggregates is not None and stored_note is None else None
    if stored is not None:
        served = _from_store(stored, TENANT_DOMAINS, {}, w, ingested, (w.history_start, w.window_end, w.window_end),
                             ("tenant_domains", "tenant_domains"), run_planned)
        results["tenant_domains"], read["tenant_domains"] = served["tenant_domains"]
    else:
        results["tenant_domains"] = run_planned(
            PlannedQuery(
                "tenant_domains",
                "tenant_domains",
                {"historyStart": w.history_start, "windowEnd": w.window_end},
                w.history_start,
                w.window_end,
            )
        )
    inferred = [r["Domain"] for r in results["tenant_domains"].rows if r.get("Domain")]
    tenant_domains = sorted({d.lower() for d in inferred} | set(ts.tenant_domains))
    plan = sweep_plan(w, tenant_domains)
    order = ["tenant_domains", *(p.label for p in plan)]
    if stored is not None:
        served = _from_store(stored, TRAFFIC, {"tenantDomains": tenant_domains}, w, ingested,
                             (w.history_start, w.evaluation_start, w.window_end),
                             ("connector_history", "connector_traffic"), run_planned)
        served.update(_correspondents(stored, w, ingested, run_planned))
        for p in plan:
            kind = SPAN_KINDS.get(p.label)
            if kind is not None:
                values = {k: v for k, v in p.values.items() if k not in ("windowStart", "windowEnd")}
                served.update(_from_store(stored, kind, values, w, ingested,
                                          (w.evaluation_start, w.window_end, w.window_end), (p.label, p.label),
                                          run_planned))
        for label, (result, ranges) in served.items():
            results[label] = result
            read[label] = ranges
        plan = [p for p in plan if p.label not in served]
    for planned in plan:
        if planned.label == CORRESPONDENTS.name:  # no store: a run a day, so no answer holds weeks of domains
            results[planned.label], runs = _correspondents_by_day(planned, run_planned)
            read[planned.label] = {**_read_range(planned.query, planned.start, planned.end), "sourceRuns": runs}
            continue
        results[planned.label] = run_planned(planned)
    for label, derived in split_domains(results, tenant_domains, policy).items():
        results[label] = derived
        read[label] = {"timeStart": None, "timeEnd": None, "tables": [],  # not a query: read nothing itself
                       "derivedFrom": ["connector_domains", "correspondents"]}
    order[order.index("connector_domains") + 1:order.index("connector_domains") + 1] = [
        "recipient_profile", "sender_domains"]
    # The record and the grader read the results in the plan's order.
    results = {label: results[label] for label in order if label in results}
    # Which connector relayed each alert evidence message: only the ids not answered yet (grading/alert_links.py).
    read["alert_messages"] = link_alert_messages(results, w, ws, run_planned, stored)

    incomplete: dict[str, str] = {}
    for label, result in results.items():
        if not result.complete:
            incomplete[label] = result.reason or "incomplete"
        elif label in REQUIRED_RESULTS and result.missing_tables:
            incomplete[label] = result.reason or "required table missing"
    if "mail_coverage" not in incomplete and not results["mail_coverage"].rows:
        incomplete["mail_coverage"] = (
            "no EmailEvents at all in the graded window: the telemetry is missing, not clean"
        )
    short = _short_data(source, w, ws)
    if short:
        incomplete["data_span"] = short
    not_checked = {
        OPTIONAL_CHECKS.get(label, label): r.reason or "not checked"
        for label, r in results.items()
        if r.missing_tables and label not in REQUIRED_RESULTS
    }
    for label, r in results.items():
        if r.absent_columns and not r.missing_tables:
            # What this tenant does not record cannot be judged: said per check, not read as "clean".
            cols = "; ".join(f"{t}.{', '.join(c)}" for t, c in sorted(r.absent_columns.items()))
            not_checked[f"{OPTIONAL_CHECKS.get(label, label)} [columns]"] = (
                f"column(s) {cols} absent in this tenant, read as empty"
            )

    own = {oid.casefold() for oid in ts.own_object_ids}
    if own:
        # The grader's own remediation is not a change to judge, nor a new configuration (incident).
        changes = results["connector_changes"]
        changes.rows = [r for r in changes.rows if (r.get("AccountObjectId") or "").casefold() not in own]
    verdicts = _grade_all(results, w, policy, incomplete, not_checked, tenant_domains,
                          known={"approved": approved or {}, "inventory": inventory or {}})
    counts = {c.value: sum(1 for v in verdicts if v["classification"] == c) for c in Classification}
    sweep = {
        "sweepId": sweep_id,
        "source": source.name,
        "dialect": source.dialect.value,
        "windowStart": w.window_start.isoformat().replace("+00:00", "Z"),
        "evaluationStart": w.evaluation_start.isoformat().replace("+00:00", "Z"),
        "windowEnd": w.window_end.isoformat().replace("+00:00", "Z"),
        "changeStart": w.change_start.isoformat().replace("+00:00", "Z"),
        "historyStart": w.history_start.isoformat().replace("+00:00", "Z"),
        "tenantDomains": tenant_domains,
        "queries": [
            {
                "name": label,
                "rows": len(r.rows),
                "complete": r.complete,
                "truncated": r.truncated,
                "checked": r.checked,
                "reason": r.reason,
                "elapsedSeconds": r.elapsed_seconds or r.stats.get("elapsedSeconds"),
                **read.get(label, {}),
            }
            for label, r in results.items()
        ],
        # Query runs only: recipient_profile and sender_domains are computed from two of them.
        "queryCount": sum(1 for label in results if "derivedFrom" not in read.get(label, {})),
        "rowsReturned": sum(len(r.rows) for label, r in results.items() if "derivedFrom" not in read.get(label, {})),
        "connectors": len(verdicts),
        "counts": counts,
        "complete": not incomplete,
        "deadlineReached": any(r.reason == deadline_reason for r in results.values()),
        "errors": [f"{k}: {v}" for k, v in sorted(incomplete.items())],
        "notChecked": [f"{k}: {v}" for k, v in sorted(not_checked.items())],
        "durationSeconds": round(time.perf_counter() - started, 3),
    }
    if aggregates is not None:
        sweep["aggregates"] = {"used": stored is not None, **({"note": stored_note} if stored_note else {})}
    if schema is not None:
        # Which table and column spellings the queries used (grading/hunting/live.py).
        sweep["schema"] = schema.record()
    return SweepResult(verdicts, sweep, results)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _read_range(query: str, start: datetime, end: datetime) -> dict[str, Any]:
    """What the sweep record says a query run read: ``timeStart`` .. ``timeEnd`` and its ``tables``."""
    q = load_queries()[query]
    return {"timeStart": _stamp(start), "timeEnd": _stamp(end), "tables": sorted(q.tables)}


HOUR = timedelta(hours=1)
TRAFFIC_KIND = "connector_traffic"
"""The stored aggregate kind of ``connector_traffic.kql``'s hourly rows (grading/storage/aggregates.py)."""
BACKFILL_CHUNK = timedelta(hours=24)
"""The longest range one query run of the backfill reads (a day: inside the sources' row, size and
per-query time limits at 1M mails a day, bench/RESULTS.md)."""


@dataclass(frozen=True)
class _Kind:
    """One stored kind: its query (``<name>.kql``, rows per ``Hour``), what its rows depend on besides
    the mail (*keyed*: the values a stored hour must have been read with) and how its runs sort."""

    name: str
    sort: tuple[str, ...]
    pad: timedelta = timedelta(0)
    """How far past its hour the query reads another table (URL and attachment rows are stamped up to an
    hour after their mail): an hour is final only once its delay has passed after that too."""
    fit: Any = None
    """Rows cut to what a stored part holds (``fit(rows, max_chars)``), for a kind whose rows the query
    does not bound by itself."""


TRAFFIC = _Kind(TRAFFIC_KIND, ("Connector", "Hour"))
TENANT_DOMAINS = _Kind("tenant_domains", ("Domain", "Hour"))
CORRESPONDENTS = _Kind("correspondents", ("Hour", "Domain"))
SPAN_KINDS = {
    kind.name: kind
    for kind in (
        _Kind("mail_coverage", ("Hour",)),
        _Kind("connector_domains", ("Connector", "Hour", "Part"), fit=split_listing),
        _Kind("similar_senders", ("Hour", "SenderFromAddress", "SenderObjectId")),
        _Kind("connector_urls", ("Connector", "Hour"), pad=HOUR),
        _Kind("connector_attachments", ("Connector", "Hour"), pad=HOUR),
    )
}
"""The evaluation span's queries, kept hour by hour too: a sweep reads only the new hours of them and
the sweep (or the grader) adds the hours up (:func:`split_domains`, :func:`_roll_up_senders`)."""
AGGREGATE_KINDS = (TRAFFIC_KIND, TENANT_DOMAINS.name, CORRESPONDENTS.name, *SPAN_KINDS)
"""Every kind of stored hourly rows: the query of the same name, one row per hour and key."""


def _aggregation_blocked(w: Windows) -> str | None:
    """Why the stored aggregates cannot serve this sweep (they hold whole hours), or None."""
    for name, t in (("window end", w.window_end), ("evaluation start", w.evaluation_start),
                    ("history start", w.history_start)):
        if t != floor_hour(t):
            return f"the {name} {_stamp(t)} is not on a whole hour: every query read its whole range"
    return None


def _context(values: dict[str, Any]) -> str:
    """A digest of the values a stored hour depends on besides the mail (the tenant's domains decide
    which recipients are external): an hour stored under other values is read again."""
    import hashlib

    text = json.dumps({k: sorted(v) if isinstance(v, list) else v for k, v in values.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _due_ranges(due: list[datetime], split_at: datetime) -> list[tuple[datetime, datetime]]:
    """Contiguous runs of the *due* hours, cut at *split_at* and into :data:`BACKFILL_CHUNK` pieces."""
    ranges: list[tuple[datetime, datetime]] = []
    for h in sorted(due):
        if ranges and ranges[-1][1] == h and h != split_at and h - ranges[-1][0] < BACKFILL_CHUNK:
            ranges[-1] = (ranges[-1][0], h + HOUR)
        else:
            ranges.append((h, h + HOUR))
    return ranges


def _from_store(aggregates: Any, kind: _Kind, values: dict[str, Any], w: Windows, ingested: datetime,
                span: tuple[datetime, datetime, datetime], labels: tuple[str, str],
                run_planned: Any, rows_from: datetime | None = None) -> dict[str, tuple[QueryResult, dict[str, Any]]]:
    """The results *labels* (the span's [start, split) and [split, end)) from stored hourly rows.

    The hours of the span that are not stored (a first run: the backfill, a day per query run; an
    interrupted backfill resumes at the first hour not stored), stored under other *values*, or stored
    before their ingestion delay had passed (read once more, then final: late rows) are read from the
    source with the very same query over just those hours, and stored hour by hour; then each result
    is the stored rows of its part of the span. The query's rows are per key and hour, so the stored
    rows of an hour are exactly what one query over the whole span returns for that hour."""
    start, split, end = span
    context = _context(values)
    final_before = ingested - kind.pad  # an hour ending by then holds all its rows
    # One read of the kind's days serves the whole sweep; before *rows_from* (folded into a profile) only
    # the markers are read, to know which hours are stored.
    lo = max(start, rows_from or start)
    early = aggregates.markers(kind.name, start, lo) if lo > start else {}
    span_read = aggregates.span(kind.name, lo, end)
    markers = {**early, **span_read.markers}
    due = []
    h = start
    while h < end:
        m = markers.get(h)
        if m is None or m.context != context or (not m.final and h + HOUR <= final_before):
            due.append(h)
        h += HOUR
    runs: dict[str, list[tuple[datetime, datetime, QueryResult]]] = {labels[0]: [], labels[1]: []}
    for a, b in _due_ranges(due, split):
        label = labels[0] if b <= split else labels[1]
        planned = PlannedQuery(label, kind.name, {"windowStart": a, "windowEnd": b, **values}, a - kind.pad,
                               b + kind.pad)
        if kind is TENANT_DOMAINS:
            planned = PlannedQuery(label, kind.name, {"historyStart": a, "windowEnd": b}, a, b)
        result = run_planned(planned)
        runs[label].append((a, b, result))
        if result.complete and not result.missing_tables:
            rows = kind.fit(result.rows, PART_CHARS // 2) if kind.fit else result.rows
            aggregates.write(kind.name, a, b, rows, hour_column="Hour", final_before=final_before,
                             context=context, span=span_read)
    rows, stored = span_read.rows()
    stored |= set(early)
    rows.sort(key=lambda r: tuple(r[c] for c in kind.sort))
    out: dict[str, tuple[QueryResult, dict[str, Any]]] = {}
    parts = [(labels[0], start, end)] if labels[0] == labels[1] else [
        (labels[0], start, split), (labels[1], split, end)]
    for label, lo, hi in parts:
        span_rows = [r for r in rows if lo <= r["Hour"] < hi]
        failed = [r for _, _, r in runs[label] if not r.complete or r.missing_tables]
        missing = sum(1 for i in range(int((hi - lo) / HOUR)) if lo + i * HOUR not in stored)
        reason = None
        if failed:
            reason = "; ".join(r.reason or "incomplete" for r in failed)
        elif missing:
            reason = f"{missing} hour(s) of {_stamp(lo)} .. {_stamp(hi)} are neither stored nor read"
        result = QueryResult(label, (), span_rows, complete=reason is None, reason=reason,
                             elapsed_seconds=round(sum(r.elapsed_seconds or r.stats.get("elapsedSeconds") or 0
                                                       for _, _, r in runs[label]), 3))
        ranges = runs[label]
        read = {
            "timeStart": _stamp(min(a for a, _, _ in ranges) - kind.pad) if ranges else None,
            "timeEnd": _stamp(max(b for _, b, _ in ranges) + kind.pad) if ranges else None,
            "tables": sorted(load_queries()[kind.name].tables) if ranges else [],
            "sourceRuns": len(ranges),
            "stored": {"timeStart": _stamp(lo), "timeEnd": _stamp(hi), "hours": int((hi - lo) / HOUR) - missing,
                       # the hours either side of its own the query reads another table over (kind.pad)
                       **({"padHours": kind.pad / HOUR} if kind.pad else {})},
        }
        out[label] = (result, read)
    return out


def _correspondents_by_day(planned: PlannedQuery, run_planned: Any) -> tuple[QueryResult, int]:
    """``correspondents`` over the whole history without a store: one query run a day (the backfill's
    chunks), each domain kept once at its last hour. One run over two weeks answers a row per domain the
    tenant ever wrote to, which passes the services' row caps in a large tenant (Defender: 100,000); a day
    holds the day's domains only. Incomplete, with the reasons, when any day is."""
    seen: dict[str, datetime] = {}
    broken: list[str] = []
    missing: tuple[str, ...] = ()
    runs = 0
    a = planned.start
    while a < planned.end:
        b = min(a + BACKFILL_CHUNK, planned.end)
        result = run_planned(PlannedQuery(planned.label, planned.query, {**planned.values, "windowStart": a,
                                                                          "windowEnd": b}, a, b))
        runs += 1
        missing = missing or tuple(result.missing_tables)
        if not result.complete:
            broken.append(f"{_stamp(a)} .. {_stamp(b)}: {result.reason or 'incomplete'}")
        _keep_latest(seen, result.rows)
        a = b
    return QueryResult(planned.label, (), _sightings(seen), complete=not broken, reason="; ".join(broken) or None,
                       missing_tables=missing), runs


def _keep_latest(seen: dict[str, datetime], rows: list[dict[str, Any]]) -> None:
    """Each ``correspondents`` row's domain into *seen* at its latest hour (all "known" needs)."""
    for r in rows:
        d = r.get("Domain")
        if d and (d not in seen or r["Hour"] > seen[d]):
            seen[d] = r["Hour"]


def _sightings(seen: dict[str, datetime]) -> list[dict[str, Any]]:
    """*seen* as ``correspondents`` rows (``Domain``, ``Hour``: its last sighting)."""
    return [{"Domain": d, "Hour": h} for h, d in sorted((h, d) for d, h in seen.items())]


FOLD_EVERY = timedelta(hours=24)
"""How many stored hours of correspondents a sweep reads before it folds them into the profile."""


def _correspondents(aggregates: Any, w: Windows, ingested: datetime,
                    run_planned: Any) -> dict[str, tuple[QueryResult, dict[str, Any]]]:
    """The correspondents of the baseline history from the store: the hours not folded yet, plus the
    folded profile (each domain and the last hour it was seen: all "known" needs, since a domain is
    known when it was seen in the history at all, and the history only moves forward). Once a day's
    worth of hours is unfolded they are folded in, so a sweep reads one row per known domain and at
    most a day or two of hours, not 14 days of hourly rows."""
    seen, through = aggregates.read_profile(CORRESPONDENTS.name)
    ahead = through is not None and through > w.evaluation_start
    if ahead:  # a sweep of an earlier window (a resweep): the profile knows later sightings; read the hours
        seen, through = {}, None
    served = _from_store(aggregates, CORRESPONDENTS, {}, w, ingested,
                         (w.history_start, w.evaluation_start, w.evaluation_start),
                         ("correspondents", "correspondents"), run_planned, rows_from=through)
    result, read = served["correspondents"]
    read["stored"]["profileDomains"] = len(seen)
    known = {d: h for d, h in seen.items() if h >= w.history_start}
    _keep_latest(known, result.rows)
    result.rows = _sightings(known)
    unfolded_from = max(through or w.history_start, w.history_start)
    if result.complete and not ahead and w.evaluation_start - unfolded_from >= FOLD_EVERY:
        # Every hour of the span is stored and final now (the span ends a day before the window).
        aggregates.write_profile(CORRESPONDENTS.name, known, w.evaluation_start)
    return served


def split_domains(results: dict[str, QueryResult], tenant_domains: list[str],
                   policy: Policy) -> dict[str, QueryResult]:
    """``recipient_profile`` and ``sender_domains``: the connectors' domains of the evaluation span split
    into the tenant's own, its correspondents (before the span) and never-seen ones
    (:mod:`grading.grader.domains`); incomplete, with the reason, when either input is."""
    domains, known = results["connector_domains"], results["correspondents"]
    broken = [f"{r.name}: {r.reason or 'incomplete'}" for r in (domains, known) if not r.complete]
    reason = "; ".join(broken) or None
    correspondents = correspondent_domains(known.rows, tenant_domains)
    recipients = recipient_profile(domains.rows, tenant_domains=tenant_domains, correspondents=correspondents,
                                   partner_domains=policy.protected_partner_domains)
    senders = sender_domains(domains.rows, tenant_domains=tenant_domains, correspondents=correspondents)
    return {
        label: QueryResult(label, (), rows, complete=reason is None, reason=reason,
                           missing_tables=domains.missing_tables or known.missing_tables)
        for label, rows in (("recipient_profile", recipients), ("sender_domains", senders))
    }


def _roll_up_senders(rows: list[dict[str, Any]], keep: int = 200) -> list[dict[str, Any]]:
    """``similar_senders``' hourly rows added up per sender over the span: the *keep* busiest senders,
    with their hours, messages, busiest hour, mismatches and most recipient domains in an hour."""
    senders: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r.get("SenderFromAddress") or "", r.get("SenderObjectId") or "")
        s = senders.setdefault(key, {"SenderFromAddress": key[0], "SenderObjectId": key[1], "Hours": 0, "Messages": 0,
                                     "PeakMessagesPerHour": 0, "Mismatched": 0, "RecipientDomains": 0,
                                     "FirstHour": r["Hour"], "LastHour": r["Hour"]})
        s["Hours"] += 1
        s["Messages"] += r.get("Messages") or 0
        s["PeakMessagesPerHour"] = max(s["PeakMessagesPerHour"], r.get("Messages") or 0)
        s["Mismatched"] += r.get("Mismatched") or 0
        s["RecipientDomains"] = max(s["RecipientDomains"], r.get("RecipientDomains") or 0)
        s["FirstHour"], s["LastHour"] = min(s["FirstHour"], r["Hour"]), max(s["LastHour"], r["Hour"])
    return sorted(senders.values(), key=lambda s: (-s["Messages"], s["SenderFromAddress"], s["SenderObjectId"]))[:keep]


SPAN_TOLERANCE = timedelta(hours=1)
"""How much later than the evaluation start the data may begin and still count as covering it
(an export of "the last 24 hours" starts with its first event, minutes after its query's start)."""


def _short_data(source: TelemetrySource, w: Windows, ws: WindowSettings) -> str | None:
    """Why the data is too short to judge, or None. A source that knows where its data begins (an
    export: its first EmailEvents row) must cover the evaluation span (GRADER_EVALUATION_SPAN):
    one hour of mail has no baseline and no day's rhythm, so no verdict may be confident either way."""
    earliest = getattr(source, "earliest_event_time", None)
    first = earliest() if callable(earliest) else None
    if first is None or first <= w.evaluation_start + SPAN_TOLERANCE:
        return None
    covered = max(timedelta(0), w.window_end - first)
    return (f"the data begins at {first:%Y-%m-%dT%H:%M:%SZ}: it covers {covered.total_seconds() / 3600:.1f} h before "
            f"the window end, less than the {ws.evaluation_span.total_seconds() / 3600:.0f} h a verdict weighs "
            "(GRADER_EVALUATION_SPAN); no confident verdict without a full span and its history: export at least "
            "that much (better: the baseline lookback too)")


def connector_key(name: str) -> str:
    """Exchange connector names are case-insensitive: one key for every spelling of one connector."""
    return name.casefold()


def _spelling(rows: list[dict[str, Any]], changes: list[dict[str, Any]]) -> str:
    """The name exactly as the telemetry spells it: the mail's spelling with the most messages, else the
    latest change's."""
    if rows:
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            counts[r["Connector"]] += r["Messages"] or 0
        return max(sorted(counts), key=lambda n: counts[n])
    return changes[-1]["Connector"]


def _grade_all(
    results: dict[str, QueryResult],
    w: Windows,
    policy: Policy,
    incomplete: dict[str, str],
    not_checked: dict[str, str],
    tenant_domains: list[str] | None = None,
    known: Mapping[str, Mapping[str, dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    def group(rows: list[dict[str, Any]], field: str = "Connector") -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r.get(field):
                out[connector_key(r[field])].append(r)
        return out

    for r in results["connector_changes"].rows:
        if (r.get("Connector") or "")[:3].upper() == "CN=":
            r["Connector"] = resolve_identity(r["Connector"], {})
    changes_by = group(results["connector_changes"].rows)
    window_by = group(results["connector_traffic"].rows)
    history_by = group(results["connector_history"].rows)
    recipients_by = group(results["recipient_profile"].rows)
    senders_by = group(results["sender_domains"].rows)
    urls_by = group(results["connector_urls"].rows)
    attachments_by = group(results["connector_attachments"].rows)
    profiles = admin_profiles(
        results["admin_logon_locations"].rows,
        results["admin_activity_locations"].rows,
        results["admin_entra_signins"].rows,
        results["admin_logon_bursts"].rows,
    )
    alerts = results["connector_alerts"].rows
    spellings: dict[str, str] = {}
    for by in (history_by, changes_by, window_by):
        for key, rows_of in by.items():
            spellings[key] = rows_of[-1]["Connector"]
    renamed = _follow_renames(
        changes_by, spellings, [changes_by, window_by, history_by, recipients_by, senders_by, urls_by, attachments_by]
    )
    recipients_by = {k: _merge_rows(v, "Known", "Internal") for k, v in recipients_by.items()}
    senders_by = {k: _merge_rows(v, "Part") for k, v in senders_by.items()}
    urls_by = {k: _merge_rows(v) for k, v in urls_by.items()}
    attachments_by = {k: _merge_rows(v) for k, v in attachments_by.items()}
    other_senders = [
        {
            "sender": r["SenderFromAddress"],
            "senderObjectId": r["SenderObjectId"],
            "messages": r["Messages"],
            "peakMessagesPerHour": r["PeakMessagesPerHour"],
            "mismatched": r["Mismatched"],
        }
        for r in _roll_up_senders(results["similar_senders"].rows)
    ]

    all_names = sorted(spellings.values())
    rules_result = results.get("transport_rules")
    rules = rules_of(rules_result.rows) if rules_result is not None else []
    graded_hour = floor_hour(w.window_start)
    verdicts = []
    for key in sorted(set(window_by) | set(changes_by)):
        all_changes = sorted(changes_by.get(key, []), key=lambda c: c["Timestamp"])
        recent = [c for c in all_changes if c["Timestamp"] >= w.change_start]
        rows = sorted(window_by.get(key, []), key=lambda r: r["Hour"])
        # The contract's set: mail in the graded window, or a change in the change lookback.
        if not recent and not any(r["Hour"] >= graded_hour for r in rows):
            continue
        renames = renamed.get(key, [])
        name = renames[-1][1] if renames else _spelling(rows, all_changes)
        kinds = [c["ConnectorType"] for c in all_changes if c.get("ConnectorType") in ("Inbound", "Outbound")]
        baseline = connector_baseline(
            name,
            history_by.get(key, []),
            window_start=w.evaluation_start,
            last_change=all_changes[-1]["Timestamp"] if all_changes else None,
            created_in_lookback=any(c["Operation"] == "New" for c in all_changes),
            policy=policy,
        )
        admin_ids = {c["AccountObjectId"] for c in recent if c.get("AccountObjectId")}
        admins = {oid: profiles.get(oid) or AdminProfile(oid) for oid in sorted(admin_ids)}
        for c in recent:
            p = admins.get(c.get("AccountObjectId") or "")
            if p and not p.upn:
                p.upn = c.get("AccountId") or ""
        facts = ConnectorFacts(
            connector=name,
            connector_type=kinds[-1] if kinds else "Unknown",
            window_start=w.evaluation_start,
            window_end=w.window_end,
            changes=recent,
            window_rows=rows,
            baseline=baseline,
            recipients={bool(r["Known"]): r for r in recipients_by.get(key, []) if not r.get("Internal")},
            internal_recipients=next((r for r in recipients_by.get(key, []) if r.get("Internal")), None),
            sender_domains={r["Part"]: r for r in senders_by.get(key, [])},
            urls=next(iter(urls_by.get(key, [])), None),
            attachments=next(iter(attachments_by.get(key, [])), None),
            alerts=_match_alerts(
                name, admin_ids, alerts, names=tuple(old for old, _ in renames),
                source_ips={ip for r in rows for ip in r.get("SourceIPs") or ()},
            ),
            admins=admins,
            not_checked=dict(not_checked),
            incomplete=dict(incomplete),
            other_senders=other_senders,
            history_changes=all_changes,
            other_connectors=all_names,  # one shared list (the check leaves this connector out)
            previous_names=[old for old, _ in renames],
            tenant_domains=list(tenant_domains or ()),
            transport_rules=rules,  # one shared list (the check links those that concern this connector)
            change_start=w.change_start,
        )
        if known:
            _attach_configurations(facts, key, known)
        verdicts.append(grade(facts, policy))
    verdicts.sort(key=lambda v: (LISTING_ORDER[v["classification"]], -v["score"], v["connector"]))
    return verdicts


SNAPSHOT_MARGIN = timedelta(minutes=1)
"""Exchange's WhenChanged and the audit event's Timestamp of one change differ by seconds."""


def _attach_configurations(facts: ConnectorFacts, key: str, known: Mapping[str, Mapping[str, dict[str, Any]]]) -> None:
    """The connector's approved configuration and inventory snapshot. The snapshot is also the configuration
    before the history's changes (``config_snapshot``, what the replay starts from) when Exchange last changed
    the connector before the first of them: a snapshot taken after a change would hide what it moved."""
    facts.approved = (known.get("approved") or {}).get(key)
    snap = (known.get("inventory") or {}).get(key)
    if not snap:
        return
    facts.inventory = {"configuration": snap["configuration"], "refreshedAt": snap["refreshedAt"]}
    when_changed = snap.get("whenChanged")
    first = facts.history_changes[0]["Timestamp"] if facts.history_changes else None
    if when_changed is not None and (first is None or when_changed < first - SNAPSHOT_MARGIN):
        facts.config_snapshot = dict(snap["configuration"])


def resolve_identity(identity: str, known: dict[str, str]) -> str:
    """The connector a ``Set-`` cmdlet's ``Identity`` names: a name; a distinguished name (its first
    ``CN=``); a GUID stays as it is (only an inventory could resolve it)."""
    text = identity.strip()
    if text.casefold() in known:
        return text
    if text[:3].upper() == "CN=":
        return re.split(r"(?<!\\),", text[3:], maxsplit=1)[0].replace("\\,", ",")
    return text


def _follow_renames(
    changes_by: dict[str, list[dict[str, Any]]],
    spellings: dict[str, str],
    groups: list[dict[str, list[dict[str, Any]]]],
) -> dict[str, list[tuple[str, str]]]:
    """Fold each renamed connector's rows (changes, traffic, history...) under its latest name, so it keeps
    its history and baseline across ``Set-...Connector -Identity OLD -Name NEW``. Returns, per surviving
    key, its renames (old spelling, new spelling) oldest first."""
    from grading.grader.configuration import parameters_of

    renames: list[tuple[Any, str, str]] = []
    for rows in changes_by.values():
        for c in rows:
            if c.get("Operation") != "Set":
                continue
            params = parameters_of(c)
            old = resolve_identity(params.get("identity", ""), spellings)
            new = params.get("name", "")
            if old and new and old.casefold() != new.casefold():
                renames.append((c["Timestamp"], old, new))
    out: dict[str, list[tuple[str, str]]] = {}
    for _, old, new in sorted(renames, key=lambda r: r[0]):
        src, dst = connector_key(old), connector_key(new)
        for group in groups:
            if src in group:
                group.setdefault(dst, []).extend(group.pop(src))
        out[dst] = [*out.pop(src, []), (spellings.get(src, old), new)]
        spellings.pop(src, None)
        spellings[dst] = new
    for rows in changes_by.values():
        rows.sort(key=lambda c: c["Timestamp"])
    return out


def _merge_rows(rows: list[dict[str, Any]], *by: str) -> list[dict[str, Any]]:
    """Rows of one connector under several names (a rename) merged per value of the *by* columns: counts
    add up, samples join. One row per value as before when there was no rename."""
    merged: dict[Any, dict[str, Any]] = {}
    for r in rows:
        k = tuple(r.get(b) for b in by)
        if k not in merged:
            merged[k] = dict(r)
            continue
        m = merged[k]
        for col, v in r.items():
            if col == "Connector" or col in by:
                continue
            if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(m.get(col), (int, float)):
                m[col] = m[col] + v
            elif isinstance(v, list):
                m[col] = list(dict.fromkeys([*(m.get(col) or []), *v]))
    return list(merged.values())


def default_now(source: TelemetrySource, *, live: bool, ingestion_delay: timedelta) -> datetime:
    """The contract's --now default: the export's latest event for a local export, else the clock
    minus the ingestion delay.

    Windows end exclusively (``Timestamp < windowEnd``) so consecutive sweeps never grade an event
    twice; for an export the end is the latest event's second plus one, so the latest event itself
    (often the very change being investigated) is graded."""
    if not live:
        latest = source.latest_event_time()
        if latest is None:
            raise ValueError("the export has no events to take --now from; pass --now")
        return latest.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
    return datetime.now(UTC) - ingestion_delay
