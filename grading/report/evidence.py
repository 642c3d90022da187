"""The evidence of one verdict as HTML tables: what an analyst checks before acting.

Why tables per playbook question rather than a JSON dump: the playbook asks who changed the
connector and from where, where its mail went (known correspondents or never seen), from which
IPs and sender domains, and which messages; each table answers one of those. Every value is text
(escaped by :mod:`grading.report.markup`); URLs are shown defanged and never as links.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from grading.report.markup import Markup, el, join
from grading.report.model import fmt_time, parse_time

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
_WORDS = {
    "ip": "IP",
    "ips": "IPs",
    "isp": "ISP",
    "isps": "ISPs",
    "url": "URL",
    "urls": "URLs",
    "id": "id",
    "sha256": "SHA-256",
    "upn": "UPN",
}
LIST_LIMIT = 20
VALUE_CHARS = 200


def words(key: str) -> str:
    """``firstFailure`` -> ``first failure``, ``successIP`` -> ``success IP``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", key)
    return " ".join(_WORDS.get(w.lower(), w.lower()) for w in spaced.split())


def defang(url: str) -> str:
    """``https://evil.example/x`` -> ``hxxps://evil[.]example/x``: readable, not clickable when pasted
    into mail or chat that turns URLs into links."""
    scheme_fixed = re.sub(r"^(?i:http)", "hxxp", url)
    host_end = scheme_fixed.find("/", scheme_fixed.find("//") + 2) if "//" in scheme_fixed else -1
    head, tail = (scheme_fixed, "") if host_end < 0 else (scheme_fixed[:host_end], scheme_fixed[host_end:])
    return head.replace(".", "[.]") + tail


def value(v: Any, *, limit: int = LIST_LIMIT) -> Any:
    """A JSON value as text/Markup: times in UTC, lists comma-separated (cut at *limit*)."""
    if v is None or v == "" or v == []:
        return "—"
    if isinstance(v, str):
        v = shorten(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str) and _ISO.match(v) and parse_time(v):
        return el("span", {"class": "t"}, fmt_time(v))
    if isinstance(v, dict):
        if set(v) == {"Name", "Value"}:
            return join([el("b", None, str(v["Name"])), "=", value(v["Value"])])
        return join(
            (join([el("span", {"class": "k"}, words(str(k)) + ":"), " ", value(x)]) for k, x in v.items()), "; "
        )
    if isinstance(v, (list, tuple)):
        shown = [value(x) for x in v[:limit]]
        more = [el("span", {"class": "more"}, f" … and {len(v) - limit} more")] if len(v) > limit else []
        return join([join(shown, ", "), *more])
    return str(v)


def shorten(text: str, limit: int = VALUE_CHARS) -> str:
    """*text* cut to *limit* characters, saying how long it was (a URL can be kilobytes)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def code_list(items: Iterable[Any], *, total: int | None = None, fmt: Any = str, limit: int = LIST_LIMIT) -> Markup:
    """Values in monospace (message ids, IPs, domains), at most *limit* of them, with how many there
    are in all: the evidence is a sample and says so."""
    items = list(items)
    if not items:
        return el("span", {"class": "none"}, "none")
    shown = el("ul", {"class": "codes"}, (el("li", None, shorten(fmt(i))) for i in items[:limit]))
    total = max(total or 0, len(items))
    if total > min(len(items), limit):
        return join([shown, el("div", {"class": "more"}, f"showing {min(len(items), limit)} of {total:,}")])
    return shown


def kv_table(caption: str, rows: Iterable[tuple[str, Any]]) -> Markup:
    return el(
        "table",
        {"class": "kv"},
        el("caption", None, caption),
        el("tbody", None, (el("tr", None, el("th", {"scope": "row"}, k), el("td", None, value(v))) for k, v in rows)),
    )


def grid_table(caption: str, headers: list[str], rows: list[list[Any]], empty: str) -> Markup:
    if not rows:
        return el(
            "div",
            {"class": "panel empty"},
            el("div", {"class": "panel-title"}, caption),
            el("p", {"class": "none"}, empty),
        )
    return el(
        "table",
        {"class": "grid"},
        el("caption", None, caption),
        el("thead", None, el("tr", None, (el("th", {"scope": "col"}, h) for h in headers))),
        el(
            "tbody",
            None,
            (el("tr", None, (el("td", None, c if isinstance(c, Markup) else value(c)) for c in r)) for r in rows),
        ),
    )


def _configuration(ev: dict[str, Any]) -> Markup:
    where = ev.get("modifiedFrom") or {}
    place = ", ".join(str(p) for p in (where.get("city"), where.get("country")) if p)
    return kv_table(
        "Configuration",
        [
            ("Created", ev.get("created")),
            ("Created by", ev.get("createdBy")),
            ("Last modified", ev.get("lastModified")),
            ("Modified by", ev.get("modifiedBy")),
            ("Modified from", " · ".join(str(p) for p in (where.get("ip"), place, where.get("isp")) if p) or None),
        ],
    )


def _changes(ev: dict[str, Any]) -> Markup:
    rows = [
        [
            c.get("time"),
            c.get("actionType") or c.get("operation"),
            c.get("by"),
            c.get("ip"),
            " · ".join(str(p) for p in (c.get("country"), c.get("isp")) if p) or None,
            c.get("enabled"),
            c.get("parameters"),
        ]
        for c in ev.get("changes") or ()
    ]
    return grid_table(
        "Configuration changes in the lookback",
        ["Time", "Action", "By", "From IP", "Country · ISP", "Enabled", "Parameters"],
        rows,
        "No configuration change in the lookback.",
    )


def _diff(ev: dict[str, Any]) -> Markup:
    """Each change as before -> after, with what about it is risky (the configuration semantics)."""
    rows = []
    for d in ev.get("configurationDiff") or ():
        risks = "; ".join(("malicious act: " if r.get("maliciousAct") else "") + str(r.get("detail"))
                          for r in d.get("risks") or ()) or ("cosmetic (name or comment only)" if d.get("cosmetic")
                                                              else "—")
        for r in d.get("changes") or [{"parameter": "—", "before": None, "after": None}]:
            rows.append([d.get("time"), d.get("actionType") or d.get("operation"), r.get("parameter"),
                         "unknown" if r.get("before") is None else (r.get("before") or "(empty)"),
                         r.get("after") or "(empty)", risks])
    previous = ev.get("previousNames") or []
    caption = "Configuration diff (before -> after)" + (
        f"; previously named {', '.join(str(n) for n in previous)}" if previous else "")
    return grid_table(caption, ["Time", "Action", "Parameter", "Before", "After", "Risk"], rows,
                      "No configuration change in the lookback.")


def _approved(ev: dict[str, Any]) -> list[Markup]:
    """Approved -> current for a connector with an approved configuration (nothing without one)."""
    approval = ev.get("approvedConfiguration")
    if not approval:
        return []
    rows = [[r.get("parameter"), r.get("before") or "(empty)", r.get("after") or "(empty)"]
            for r in approval.get("drift") or ()]
    caption = (f"Approved configuration (by {approval.get('approvedBy') or 'unknown'}, "
               f"{approval.get('approvedAt') or 'unknown time'}: {approval.get('reason') or 'no reason given'}) "
               "-> current")
    return [grid_table(caption, ["Parameter", "Approved", "Current"], rows,
                       "No drift from the approved configuration.")]


def _rules(ev: dict[str, Any]) -> list[Markup]:
    """The transport rules linked to the connector, with who changed them and from where."""
    rules = ev.get("transportRules")
    if not rules:
        return []
    rows = []
    for r in rules:
        last = (r.get("changes") or [{}])[-1]
        state = "removed" if r.get("removed") else "enabled" if r.get("enabled") else "disabled"
        rows.append([r.get("rule"), r.get("linkedBy"), ", ".join(r.get("actions") or ()) or "—", state,
                     last.get("time"), last.get("operation"), last.get("by"), last.get("from")])
    return [grid_table("Transport rules linked to this connector",
                       ["Rule", "Linked by", "Does", "State", "Last change", "Operation", "By", "From"], rows,
                       "No transport rule is linked to this connector.")]


def _admins(ev: dict[str, Any]) -> Markup:
    rows = [
        [
            a.get("upn") or "—",
            a.get("objectId"),
            a.get("usualCountries"),
            a.get("failureBursts"),
            a.get("successfulBursts"),
            a.get("newLogonLocations"),
        ]
        for a in ev.get("admins") or ()
    ]
    return grid_table(
        "Admins who changed it",
        ["UPN", "Object id", "Usual countries", "Failed-logon bursts", "Bursts then success", "New logon locations"],
        rows,
        "No admin changed this connector in the lookback.",
    )


def _recipients(ev: dict[str, Any]) -> Markup:
    rd = ev.get("recipientDomains") or {}
    known, new = rd.get("knownCorrespondents") or {}, rd.get("neverSeen") or {}

    def column(part: dict[str, Any]) -> Markup:
        return code_list(part.get("sample") or (), total=part.get("count"))

    return el(
        "table",
        {"class": "grid split rows"},
        el("caption", None, "External recipient domains"),
        el(
            "thead",
            None,
            el(
                "tr",
                None,
                el("th", {"scope": "col"}, ""),
                el("th", {"scope": "col"}, "Known correspondents"),
                el("th", {"scope": "col", "class": "warn"}, "Never seen before"),
            ),
        ),
        el(
            "tbody",
            None,
            el(
                "tr",
                None,
                el("th", {"scope": "row"}, "Domains"),
                el("td", None, f"{known.get('count') or 0:,}"),
                el("td", None, f"{new.get('count') or 0:,}"),
            ),
            el(
                "tr",
                None,
                el("th", {"scope": "row"}, "Messages"),
                el("td", None, f"{known.get('messages') or 0:,}"),
                el("td", None, f"{new.get('messages') or 0:,}"),
            ),
            el(
                "tr",
                None,
                el("th", {"scope": "row"}, "Sample"),
                el("td", None, column(known)),
                el("td", None, column(new)),
            ),
        ),
    )


def _senders(ev: dict[str, Any]) -> Markup:
    sd = ev.get("senderDomainsOutsideTenant") or {}
    header, envelope = sd.get("header") or {}, sd.get("envelope") or {}
    return el(
        "table",
        {"class": "grid split"},
        el("caption", None, "Sender domains outside the tenant"),
        el(
            "thead",
            None,
            el(
                "tr",
                None,
                el("th", {"scope": "col"}, "Header From (P2)"),
                el("th", {"scope": "col"}, "Envelope MAIL FROM (P1)"),
            ),
        ),
        el(
            "tbody",
            None,
            el(
                "tr",
                None,
                el("td", None, code_list(header.get("sample") or (), total=header.get("count"))),
                el("td", None, code_list(envelope.get("sample") or (), total=envelope.get("count"))),
            ),
        ),
    )


def _traffic(ev: dict[str, Any]) -> Markup:
    mp = ev.get("messageProfile") or {}
    total = mp.get("messages") or 0

    def share(n: Any) -> str:
        n = n or 0
        return f"{n:,}" + (f" ({n / total:.0%})" if total else "")

    return kv_table(
        "Mail in the window",
        [
            ("Messages", f"{total:,}"),
            ("Envelope ≠ header domain", share(mp.get("mismatched"))),
            ("No SenderObjectId", share(mp.get("noSenderObjectId"))),
            ("To external recipients", share(mp.get("externalMessages"))),
            ("With a threat verdict", share(mp.get("threatMessages"))),
            ("Directions", mp.get("directions")),
        ],
    )


def _ids(ev: dict[str, Any]) -> list[Markup]:
    nm = ev.get("networkMessageIds") or {}
    panels = [
        ("Source IPs", code_list(ev.get("sourceIPs") or ())),
        ("Linked Defender alerts", code_list(ev.get("alertIds") or ())),
        ("NetworkMessageIds", code_list(nm.get("sample") or (), total=nm.get("count"))),
        ("URLs in the mail (defanged)", code_list(ev.get("urls") or (), fmt=lambda u: defang(str(u)))),
    ]
    return [el("div", {"class": "panel"}, el("div", {"class": "panel-title"}, title), body) for title, body in panels]


def evidence_html(verdict: dict[str, Any]) -> Markup:
    """Every evidence table of one verdict, in the order the playbook asks its questions."""
    ev = verdict.get("evidence") or {}
    not_run = ev.get("checksNotRun") or []
    parts: list[Any] = [
        el("div", {"class": "evidence-grid"}, _configuration(ev), _traffic(ev)),
        _diff(ev),
        *_approved(ev),
        *_rules(ev),
        _changes(ev),
        _admins(ev),
        el("div", {"class": "evidence-grid"}, _recipients(ev), _senders(ev)),
        el("div", {"class": "evidence-grid"}, *_ids(ev)),
    ]
    if not_run:
        parts.append(
            el(
                "p",
                {"class": "note"},
                "Not checked: ",
                join((f"{c.get('check')} ({c.get('reason')})" for c in not_run), "; "),
            )
        )
    return join(parts)
