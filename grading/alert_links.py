"""The alert -> connector link by evidence message, looked up once per message id.

Why a step of its own: ``connector_alerts`` returns each alert's evidence message ids
(``NetworkMessageIds``), but which connector relayed a message is in EmailEvents, over the change
lookback (seven days). Joining EmailEvents inside ``connector_alerts`` read that whole lookback
every sweep, for a handful of ids: 168 hours of mail an hour. Here the sweep asks
``alert_messages.kql`` only about the ids it has no answer for and, with stored aggregates, keeps
each answer in Table Storage (:mod:`grading.storage.message_links`), so a steady-state hourly sweep
whose alerts bring no new evidence message reads no EmailEvents for the link at all.

What the grader gets is what the one-shot sweep gets: each alert row's ``EvidenceConnectors`` are
the connectors that relayed one of its evidence messages inside the change lookback (a stored answer
carries each message's latest time, so a message that has left the lookback links no more, as the
one-shot lookup would not find it).

Late rows: an id not found before the ingestion delay has passed since its alert (its message's
rows may not have arrived) is stored as not final and looked up once more by the first sweep past
that delay. An id found is final: its connector is known.

Completeness: a failed, partial or truncated lookup makes ``connector_alerts`` (the alerts input)
incomplete with the lookup's reason, exactly as a failure of that query would; nothing of a failed
lookup is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from grading.hunting.catalog import PlannedQuery, Windows
from grading.hunting.rendering import load_queries
from grading.settings import WindowSettings
from grading.sources.base import QueryResult
from grading.storage.message_links import MessageLink, StoredMessageLinks

LABEL = "alert_messages"
"""The lookup's query file and its name in the sweep record."""
ALERTS = "connector_alerts"
MAX_IDS_PER_QUERY = 5_000
"""Message ids passed to one lookup query as a literal (a GUID is about 40 characters of query text:
some 200 KB); more ids are looked up in several query runs."""
MAX_IDS_PER_ALERT = 1_000
"""``connector_alerts.kql``'s cap on an alert's evidence message ids (``make_set(NetworkMessageId, 1000)``)."""


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def link_alert_messages(results: dict[str, QueryResult], w: Windows, ws: WindowSettings,
                        run_planned: Callable[[PlannedQuery], QueryResult], store: Any = None) -> dict[str, Any]:
    """Fill each ``connector_alerts`` row's ``EvidenceConnectors`` and put the lookup's own result,
    ``alert_messages``, into *results* right after it; returns what the sweep record says the lookup read
    (``timeStart``/``timeEnd``/``tables``: none when it did not run; ``sourceRuns``; ``messageIds``: how
    many evidence ids, how many answered from the store, how many looked up).

    *run_planned* runs one query as the sweep does (its deadline, the live schema); *store*, the sweep's
    :class:`grading.storage.aggregates.HourlyAggregates` (its table holds the answers), or None: every id is
    looked up, every sweep (the one-shot reference)."""
    alerts = results.get(ALERTS)
    rows = alerts.rows if alerts is not None else []
    latest: dict[str, datetime] = {}  # evidence id -> the latest alert naming it
    capped = 0
    for row in rows:
        ids = [i for i in row.get("NetworkMessageIds") or () if isinstance(i, str) and i]
        capped += len(row.get("NetworkMessageIds") or ()) >= MAX_IDS_PER_ALERT
        for i in ids:
            latest[i] = max(latest.get(i, row["Timestamp"]), row["Timestamp"])
    stored_links = StoredMessageLinks(store.table) if store is not None else None
    known: dict[str, MessageLink] = {}
    final_before = w.window_end - ws.ingestion_delay
    if stored_links is not None and latest:
        known = stored_links.read(w.change_start, w.window_end)
        known = {i: link for i, link in known.items() if i in latest and
                 (link.final or latest[i] > final_before)}  # not final and past its delay: ask again
    due = sorted(i for i in latest if i not in known)

    runs: list[QueryResult] = []
    answered: dict[str, MessageLink] = {}
    for n in range(0, len(due), MAX_IDS_PER_QUERY):
        batch = due[n:n + MAX_IDS_PER_QUERY]
        planned = PlannedQuery(LABEL, LABEL, {"messageIds": batch, "changeStart": w.change_start,
                                              "windowEnd": w.window_end}, w.change_start, w.window_end)
        result = run_planned(planned)
        runs.append(result)
        if not result.complete or result.missing_tables or result.truncated:
            continue
        found: dict[str, list[tuple[str, datetime]]] = {}
        for r in result.rows:
            found.setdefault(r["NetworkMessageId"], []).append((r["Connector"], r["LastSeen"]))
        for i in batch:
            links = tuple(sorted(found.get(i, ())))
            answered[i] = MessageLink(i, links, final=bool(links) or latest[i] <= final_before,
                                      alert_time=latest[i], checked_at=w.window_end)
    if stored_links is not None and answered:
        stored_links.write(answered.values())

    failed = [r for r in runs if not r.complete or r.missing_tables or r.truncated]
    reason = "; ".join(r.reason or ("truncated" if r.truncated else "incomplete") for r in failed) or None
    links = {**known, **answered}
    for row in rows:
        connectors = {c for i in row.get("NetworkMessageIds") or () if i in links
                      for c, seen in links[i].connectors if w.change_start <= seen < w.window_end}
        row["EvidenceConnectors"] = sorted(connectors)
    if reason and alerts is not None and alerts.complete:
        alerts.complete = False
        alerts.reason = f"the connectors of its evidence messages could not be looked up ({LABEL}): {reason}"

    if runs:
        result = QueryResult(LABEL, runs[0].columns, [r for run in runs for r in run.rows], complete=reason is None,
                             reason=reason, truncated=any(r.truncated for r in runs),
                             elapsed_seconds=round(sum(r.elapsed_seconds or r.stats.get("elapsedSeconds") or 0
                                                       for r in runs), 3))
    else:
        why = "every evidence message id is answered by the store" if latest else "no alert evidence message id"
        if alerts is not None and (not alerts.complete or alerts.missing_tables) and not latest:
            why = f"{ALERTS} returned no evidence (it is incomplete or not checked)"
        result = QueryResult(LABEL, (), [], complete=True, reason=f"not run: {why}")
    ordered = dict(results)
    results.clear()
    for label, r in ordered.items():
        if label != LABEL:
            results[label] = r
        if label == ALERTS:
            results[LABEL] = result
    if LABEL not in results:
        results[LABEL] = result

    read: dict[str, Any] = {"timeStart": None, "timeEnd": None, "tables": [], "sourceRuns": len(runs)}
    if runs:
        read.update(timeStart=_stamp(w.change_start), timeEnd=_stamp(w.window_end),
                    tables=sorted(load_queries()[LABEL].tables))
    read["messageIds"] = {"evidence": len(latest), "lookedUp": len(due),
                          **({"stored": len(known)} if stored_links is not None else {})}
    if capped:
        read["note"] = (f"{capped} alert(s) carry {MAX_IDS_PER_ALERT} evidence message ids or more: each is linked "
                        f"by the {MAX_IDS_PER_ALERT} connector_alerts returns")
    return read
