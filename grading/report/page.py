"""One self-contained HTML page of a sweep: overview by classification and score, then a card per
flagged connector (findings, chart, evidence), then the sweep's own record.

Why no script at all: the page is shared by mail and opened from blob storage; a page that runs
nothing cannot be turned against its reader, and a Content-Security-Policy that allows no script,
no network fetch and only the page's own stylesheet (by hash) is a second wall should an escape
ever be missed. The verdicts ride along as a JSON data block (never executed) so the page is also
the machine-readable record.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from grading.classification import Classification
from grading.report.chart import volume_chart
from grading.report.evidence import evidence_html, value
from grading.report.markup import Markup, el, join, json_block
from grading.report.model import (
    CLASSIFICATION_LABELS,
    CLASSIFICATION_ORDER,
    CLASSIFICATION_TITLES,
    Marker,
    fmt_time,
    grouped,
    is_flagged,
    main_finding,
    other_senders,
    parse_time,
    timeline_markers,
)

CSS = resources.files("grading.report").joinpath("style.css").read_text(encoding="utf-8")
_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode("utf-8")).digest()).decode("ascii")
CSP = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; script-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)
DATA_ELEMENT_ID = "sweep-data"


def _badges(v: dict[str, Any]) -> Markup:
    c = str(v.get("classification"))
    return el(
        "span",
        {"class": "badges"},
        el("span", {"class": f"badge {c}"}, CLASSIFICATION_LABELS.get(c, c)),
        el("span", {"class": "badge"}, v.get("determination")) if v.get("determination") else None,
        el("span", {"class": "badge score"}, f"score {v.get('score', 0)}"),
        el("span", {"class": "badge"}, v.get("connectorType") or "Unknown"),
    )


def _finding(f: dict[str, Any]) -> Markup:
    sev = str(f.get("severity") or "informational")
    ev = f.get("evidence") or {}
    return el(
        "li",
        None,
        el("span", {"class": f"sev {sev}"}, sev),
        f.get("summary") or "",
        " ",
        el("span", {"class": "check"}, f"({f.get('check')})"),
        el("details", None, el("summary", None, "evidence"), value(ev)) if ev else None,
    )


def _legend(volume: dict[str, Any]) -> Markup:
    band = volume.get("baseline")
    items = [("bar", "messages per hour")]
    if band:
        items += [
            ("above", "above the normal band"),
            ("band", f"normal band (up to {band.get('upper')}/h)"),
            ("median", f"median ({band.get('median')}/h)"),
        ]
    items += [("change", "configuration change (C)"), ("admin", "admin logon anomaly (A)")]
    spans = [el("span", None, el("span", {"class": f"sw {cls}"}), label) for cls, label in items]
    if not band:
        reason = volume.get("baselineReason") or "no history"
        spans.append(el("span", {"class": "noband"}, f"No baseline band: {reason}"))
    return el("div", {"class": "legend"}, spans)


def _markers_table(markers: list[Marker], start: Any, end: Any) -> Markup | None:
    if not markers:
        return None
    rows = []
    for m in markers:
        outside = (start and m.time < start) or (end and m.time > end)
        rows.append(
            el(
                "tr",
                {"class": f"{m.kind} outside" if outside else m.kind},
                el("td", None, m.label),
                el("td", {"class": "t"}, fmt_time(m.time)),
                el(
                    "td",
                    None,
                    m.description,
                    el("span", {"class": "more"}, " (before the charted window)") if outside else None,
                ),
            )
        )
    return el(
        "table", {"class": "grid markers"}, el("caption", None, "Events on the time axis"), el("tbody", None, rows)
    )


def _chart_block(v: dict[str, Any], index: int) -> Markup:
    markers = timeline_markers(v)
    volume = (v.get("evidence") or {}).get("hourlyVolume") or {}
    series = volume.get("series") or []
    start = parse_time(series[0]["hour"]) if series else None
    last = parse_time(series[-1]["hour"]) if series else None
    end = last.replace(minute=59, second=59) if last else None
    return join(
        [
            el("h4", None, "Hourly mail volume (UTC) against the baseline band"),
            volume_chart(v, markers, f"chart-{index}"),
            _legend(volume),
            _markers_table(markers, start, end),
        ]
    )


def _card(v: dict[str, Any], index: int) -> Markup:
    c = str(v.get("classification"))
    head = [el("h3", None, el("span", {"class": "name"}, v.get("connector"))), _badges(v)]
    decisive = v.get("decisiveAct") if c == Classification.TRUE_POSITIVE else None
    body = [
        el("p", {"class": "decisive"}, el("strong", None, "Decisive evidence: "), decisive.get("summary") or "",
           " ", el("span", {"class": "check"}, f"({decisive.get('check')})")) if decisive else None,
        el("p", {"class": "reason"}, v["reasonIfUnknown"]) if v.get("reasonIfUnknown") else None,
        el("h4", None, "Findings"),
        el("ol", {"class": "findings"}, (_finding(f) for f in v.get("findings") or ()))
        if v.get("findings")
        else el("p", {"class": "none"}, "No findings."),
        _chart_block(v, index),
        el("h4", None, "Evidence"),
        evidence_html(v),
        el("p", {"class": "key"}, f"Incident key {v.get('incidentKey')}"),
    ]
    attrs = {"class": f"card {c}", "id": f"c{index}", "aria-label": f"Connector {v.get('connector')}"}
    if c in (Classification.TRUE_POSITIVE, Classification.UNKNOWN):
        return el("section", attrs, el("div", {"class": "card-head"}, head), body)
    # Expected activity and low-scoring findings stay folded: there if wanted, out of the way.
    why = el("span", {"class": "why"}, main_finding(v), " (click to show the details)")
    return el("details", attrs, el("summary", None, head, why), body)


def _overview(groups: list[tuple[str, list[dict[str, Any]]]], anchors: dict[int, str]) -> Markup:
    bodies = []
    for c, vs in groups:
        rows = [
            el(
                "tr",
                {"class": "group"},
                el("th", {"colspan": 5, "id": f"group-{c}"}, f"{CLASSIFICATION_TITLES.get(c, c)} ({len(vs)})"),
            )
        ]
        for v in vs:
            anchor = anchors.get(id(v))
            name = (
                el("a", {"class": "name", "href": f"#{anchor}"}, v.get("connector"))
                if anchor
                else el("span", {"class": "name"}, v.get("connector"))
            )
            rows.append(
                el(
                    "tr",
                    None,
                    el("td", None, name),
                    el("td", {"class": "type"}, v.get("connectorType")),
                    el(
                        "td",
                        None,
                        el("span", {"class": f"badge {c}"}, CLASSIFICATION_LABELS.get(c, c)),
                        " ",
                        v.get("determination") or "",
                    ),
                    el("td", {"class": "num score"}, str(v.get("score", 0))),
                    el("td", None, main_finding(v)),
                )
            )
        bodies.append(el("tbody", None, rows))
    headers = [
        el("th", {"scope": "col", "class": "num" if h == "Score" else None}, h)
        for h in ("Connector", "Type", "Classification", "Score", "Why")
    ]
    return el("table", {"class": "overview"}, el("thead", None, el("tr", None, headers)), bodies)


def _status(sweep: dict[str, Any]) -> Markup:
    parts = []
    if sweep.get("complete", True):
        parts.append(el("div", {"class": "banner ok"}, "Complete: every required query answered in full."))
    else:
        parts.append(
            el(
                "div",
                {"class": "banner bad"},
                el("strong", None, "Incomplete sweep: verdicts that depend on missing data are unknown."),
                el("ul", None, (el("li", None, e) for e in sweep.get("errors") or ())),
            )
        )
    if sweep.get("notChecked"):
        parts.append(
            el(
                "div",
                {"class": "banner notes"},
                el("strong", None, "Not checked (tables absent):"),
                el("ul", None, (el("li", None, n) for n in sweep["notChecked"])),
            )
        )
    return join(parts)


def _tiles(verdicts: list[dict[str, Any]]) -> Markup:
    counts = {c: 0 for c in CLASSIFICATION_ORDER}
    for v in verdicts:
        c = v.get("classification")
        counts[c if c in counts else Classification.UNKNOWN] += 1
    return el(
        "div",
        {"class": "tiles"},
        (
            el(
                "a",
                {"class": f"tile {c}", "href": f"#group-{c}"},
                el("div", {"class": "n"}, str(n)),
                CLASSIFICATION_TITLES[c],
            )
            if n
            else el("div", {"class": f"tile {c}"}, el("div", {"class": "n"}, "0"), CLASSIFICATION_TITLES[c])
            for c, n in counts.items()
        ),
    )


def _other_senders(verdicts: list[dict[str, Any]]) -> Markup | None:
    senders = other_senders(verdicts)
    if not senders:
        return None
    rows = [
        el(
            "tr",
            None,
            el("td", None, s.get("sender")),
            el("td", None, s.get("senderObjectId") or "—"),
            el("td", {"class": "num"}, f"{s.get('messages') or 0:,}"),
            el("td", {"class": "num"}, f"{s.get('peakMessagesPerHour') or 0:,}"),
            el("td", {"class": "num"}, f"{s.get('mismatched') or 0:,}"),
        )
        for s in senders
    ]
    return join(
        [
            el("h2", None, "Other senders of similar external mail (not through a connector)"),
            el(
                "table",
                {"class": "grid"},
                el(
                    "thead",
                    None,
                    el(
                        "tr",
                        None,
                        (
                            el("th", {"scope": "col"}, h)
                            for h in ("Sender", "SenderObjectId", "Messages", "Peak per hour", "Envelope ≠ header")
                        ),
                    ),
                ),
                el("tbody", None, rows),
            ),
        ]
    )


def _queries(sweep: dict[str, Any]) -> Markup:
    rows = [
        [
            q.get("name"),
            f"{q.get('rows') or 0:,}",
            q.get("complete"),
            q.get("truncated"),
            q.get("checked"),
            q.get("elapsedSeconds"),
            q.get("reason"),
        ]
        for q in sweep.get("queries") or ()
    ]
    table = el(
        "table",
        {"class": "grid"},
        el(
            "thead",
            None,
            el(
                "tr",
                None,
                (
                    el("th", {"scope": "col"}, h)
                    for h in ("Query", "Rows", "Complete", "Truncated", "Checked", "Seconds", "Reason")
                ),
            ),
        ),
        el("tbody", None, (el("tr", None, (el("td", None, value(c)) for c in r)) for r in rows)),
    )
    return el(
        "details",
        {"class": "queries"},
        el(
            "summary",
            None,
            f"The sweep's {sweep.get('queryCount', len(rows))} queries "
            f"({sweep.get('rowsReturned', 0):,} rows, {sweep.get('durationSeconds', '?')} s)",
        ),
        table,
    )


def render_page(verdicts: list[dict[str, Any]], sweep: dict[str, Any], *, generated_at: datetime | None = None) -> str:
    """The whole page as a string (UTF-8 when written)."""
    generated_at = generated_at or datetime.now(UTC)
    groups = grouped(verdicts)
    anchors: dict[int, str] = {}
    details = []
    index = 0
    for c, vs in groups:
        flagged = [v for v in vs if is_flagged(v)]
        if not flagged:
            continue
        cards = []
        for v in flagged:
            index += 1
            anchors[id(v)] = f"c{index}"
            cards.append(_card(v, index))
        details.append(join([el("h2", None, f"{CLASSIFICATION_TITLES.get(c, c)}: details"), cards]))
    window = f"{fmt_time(sweep.get('windowStart'))} to {fmt_time(sweep.get('windowEnd'))}"
    head = el(
        "head",
        None,
        Markup('<meta charset="utf-8">'),
        el("meta", {"http-equiv": "Content-Security-Policy", "content": CSP}),
        el("meta", {"name": "referrer", "content": "no-referrer"}),
        el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        el("title", None, f"Connector sweep {sweep.get('sweepId', '')}: {window}"),
        Markup(f"<style>{CSS}</style>"),
    )
    top = el(
        "header",
        {"class": "top"},
        el(
            "div",
            {"class": "inner"},
            el("h1", None, "Exchange Online connector sweep"),
            el(
                "div",
                {"class": "meta"},
                el("span", None, f"Window {window}"),
                el("span", None, f"changes since {fmt_time(sweep.get('changeStart'))}"),
                el("span", None, f"source {sweep.get('source', '?')} ({sweep.get('dialect', '?')})"),
                el("span", None, f"{sweep.get('connectors', len(verdicts))} connectors"),
                el("span", None, f"sweep {sweep.get('sweepId', '?')}"),
            ),
        ),
    )
    body = el(
        "body",
        None,
        top,
        el(
            "main",
            None,
            _status(sweep),
            _tiles(verdicts),
            el("h2", None, "Connectors by classification and score"),
            _overview(groups, anchors)
            if verdicts
            else el("p", {"class": "none"}, "No connector had mail in the window or a change in the lookback."),
            details,
            _other_senders(verdicts),
            el("h2", None, "The sweep"),
            el("p", None, "Tenant domains: ", value(sweep.get("tenantDomains"))),
            _queries(sweep),
            el(
                "footer",
                None,
                f"Generated {generated_at:%Y-%m-%d %H:%M} UTC by connector-grader. All times are UTC. "
                "This page runs no scripts; the verdicts and the sweep record are embedded as JSON in the "
                f"element #{DATA_ELEMENT_ID}.",
            ),
            json_block(DATA_ELEMENT_ID, {"verdicts": verdicts, "sweep": sweep}),
        ),
    )
    return "<!doctype html>\n" + el("html", {"lang": "en"}, head, body) + "\n"
