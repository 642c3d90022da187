"""The cross-tenant summary page: per registered tenant, its connectors per classification, its last
sweep, whether that sweep was complete, and a link to its report.

Why the report's markup helpers (:mod:`grading.report.markup`): a tenant's display name is typed by
whoever onboards it and its errors quote its services; all of it is text, escaped, with control and
format characters made visible. The one link the helpers do not make (they allow only in-page
links) is the report's own blob URL, built by the grader from the storage endpoint and a blob name
it sanitised (:mod:`grading.storage.reports`); it is linked only when it has exactly that shape, and
shown as text otherwise.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from grading.classification import Classification
from grading.report.markup import Markup, el, plain
from grading.report.page import CSP, CSS

_REPORT_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?/[A-Za-z0-9._~/-]+\.html")
COLUMNS = (Classification.TRUE_POSITIVE, Classification.UNKNOWN, Classification.FALSE_POSITIVE,
           Classification.INFORMATIONAL)


def _report_cell(last: dict[str, Any] | None) -> Any:
    report = (last or {}).get("report") or {}
    url = report.get("url")
    if isinstance(url, str) and _REPORT_URL.fullmatch(url):
        return Markup(f'<a href="{plain(url)}" rel="noreferrer noopener">report</a>')
    if report.get("error"):
        return f"not written: {report['error']}"
    return "-"


def _row(r: dict[str, Any]) -> Markup:
    last = r.get("lastSweep") or {}
    counts = r.get("counts") or {}
    complete = last.get("complete")
    if r.get("error"):
        status = f"cannot read its tables: {r['error']}"
    elif not last:
        status = "not swept yet"
    else:
        status = str(last.get("status") or "?")
        if last.get("errors") and not complete:
            status += ": " + "; ".join(str(e) for e in last["errors"])[:300]
    return el(
        "tr", None,
        el("td", None, r.get("displayName") or "(no name)", el("br"), el("code", None, r.get("tenantId", ""))),
        *[el("td", None, str(counts.get(c.value, 0))) for c in COLUMNS],
        el("td", None, last.get("windowEnd") or last.get("ranAt") or "never"),
        el("td", None, "-" if complete is None else ("yes" if complete else "NO")),
        el("td", None, status),
        el("td", None, _report_cell(last)),
    )


def render_summary(rows: list[dict[str, Any]], *, generated_at: datetime | None = None) -> str:
    """The page for :func:`grading.wiring.tenants_summary`'s rows."""
    generated_at = generated_at or datetime.now(UTC)
    head = el(
        "head", None,
        Markup('<meta charset="utf-8">'),
        el("meta", {"http-equiv": "Content-Security-Policy", "content": CSP}),
        el("meta", {"name": "referrer", "content": "no-referrer"}),
        el("title", None, f"Connector grader: {len(rows)} tenants"),
        Markup(f"<style>{CSS}</style>"),
    )
    header = el("tr", None, el("th", None, "Tenant"), *[el("th", None, c.value) for c in COLUMNS],
                el("th", None, "Last sweep (window end)"), el("th", None, "Complete"), el("th", None, "Status"),
                el("th", None, "Report"))
    table = el("table", None, el("thead", None, header), el("tbody", None, [_row(r) for r in rows]))
    body = el(
        "body", None,
        el("header", {"class": "top"}, el("div", {"class": "inner"}, el("h1", None, "Connectors across tenants"))),
        el("main", None,
           table if rows else el("p", {"class": "none"}, "No tenant is registered."),
           el("footer", None, f"Generated {generated_at:%Y-%m-%d %H:%M} UTC by connector-grader. Counts are each "
                              "connector's latest verdict; a tenant's report is the page of its last sweep.")),
    )
    return "<!doctype html>\n" + el("html", {"lang": "en"}, head, body) + "\n"
