"""A sweep as Markdown: for a ticket, an incident comment or a chat message.

Why two escapes: names, domains and addresses go into code spans (shown literally: no Markdown,
no HTML, no autolinks; the fence is longer than any backtick run in the value), and prose that
embeds attacker strings (finding summaries) has every character that could start Markdown or
HTML syntax backslash-escaped, which CommonMark defines as literal. Control characters are shown as escapes
in both, so a newline cannot start a new block.
"""

from __future__ import annotations

import re
from typing import Any

from grading.report.evidence import defang, shorten
from grading.report.markup import visible
from grading.report.model import (
    CLASSIFICATION_LABELS,
    CLASSIFICATION_TITLES,
    fmt_time,
    grouped,
    is_flagged,
    main_finding,
)

_SPECIAL = re.compile(r"([\\`*_\[\]<>&|#!~{}$])")
_BLOCK_START = re.compile(r"^(\d+)([.)])|^([-+=])")
SAMPLE = 10


def md_text(value: object) -> str:
    """Prose: every character that can start Markdown or HTML syntax inline (emphasis, code, links,
    images, tables, raw HTML, entities, math) backslash-escaped, and so is a list or heading marker
    at its start; plain punctuation such as ``.``, ``:``, ``(`` stays as it is, so it reads well."""
    escaped = _SPECIAL.sub(r"\\\1", visible(value))
    escaped = _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"\\{m[3]}", escaped, count=1)
    # Leading spaces would indent (a code block), trailing ones break the line, and renderers trim
    # other white space at the edges: keep edge white space as character references.
    body = escaped.strip()
    if not body:
        return "".join(f"&#{ord(c)};" for c in escaped)
    start = escaped.index(body)
    edge = escaped[:start], escaped[start + len(body) :]
    return "".join(f"&#{ord(c)};" for c in edge[0]) + body + "".join(f"&#{ord(c)};" for c in edge[1])


def md_code(value: object, *, in_table: bool = False) -> str:
    """A code span holding *value* literally."""
    shown = visible(value)
    if in_table:
        shown = shown.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith(("`", " ")) or shown.endswith(("`", " ")) or not shown else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


def _codes(items: Any, *, total: int | None = None, fmt: Any = str) -> str:
    items = list(items or ())
    if not items:
        return "none"
    shown = ", ".join(md_code(shorten(fmt(i))) for i in items[:SAMPLE])
    count = total if total is not None else len(items)
    return shown + (f" (and {count - min(len(items), SAMPLE):,} more)" if count > min(len(items), SAMPLE) else "")


def _evidence(v: dict[str, Any]) -> list[str]:
    ev = v.get("evidence") or {}
    out = []
    if ev.get("created") or ev.get("lastModified"):
        where = ev.get("modifiedFrom") or {}
        out.append(
            f"- Created {fmt_time(ev.get('created'))} by {md_code(ev.get('createdBy') or '—')}; "
            f"last modified {fmt_time(ev.get('lastModified'))} by {md_code(ev.get('modifiedBy') or '—')} "
            f"from {md_code(where.get('ip') or '—')} ({md_text(where.get('country') or '?')}; "
            f"{md_text(where.get('isp') or '?')})"
        )
    for c in ev.get("changes") or ():
        out.append(
            f"- Change {fmt_time(c.get('time'))}: {md_text(c.get('actionType') or c.get('operation'))} by "
            f"{md_code(c.get('by') or '—')} from {md_code(c.get('ip') or '—')}"
        )
    for a in ev.get("admins") or ():
        locations = ", ".join(md_text(x) for x in a.get("newLogonLocations") or ()) or "none"
        out.append(
            f"- Admin {md_code(a.get('upn') or a.get('objectId') or '—')}: {a.get('failureBursts') or 0} "
            f"failed-logon burst(s), {a.get('successfulBursts') or 0} followed by a success; "
            f"new logon locations: {locations}"
        )
    rd = ev.get("recipientDomains") or {}
    for key, label in (("knownCorrespondents", "known correspondents"), ("neverSeen", "never seen before")):
        part = rd.get(key) or {}
        out.append(
            f"- Recipient domains, {label}: {part.get('count') or 0:,} ({part.get('messages') or 0:,} "
            f"messages): {_codes(part.get('sample'), total=part.get('count'))}"
        )
    sd = ev.get("senderDomainsOutsideTenant") or {}
    for key, label in (("header", "header From"), ("envelope", "envelope MAIL FROM")):
        part = sd.get(key) or {}
        sample = _codes(part.get("sample"), total=part.get("count"))
        out.append(f"- Sender domains outside the tenant, {label}: {sample}")
    out.append(f"- Source IPs: {_codes(ev.get('sourceIPs'))}")
    nm = ev.get("networkMessageIds") or {}
    out.append(f"- NetworkMessageIds: {_codes(nm.get('sample'), total=nm.get('count'))}")
    if ev.get("alertIds"):
        out.append(f"- Linked alerts: {_codes(ev.get('alertIds'))}")
    if ev.get("urls"):
        out.append(f"- URLs (defanged): {_codes(ev.get('urls'), fmt=lambda u: defang(str(u)))}")
    volume = ev.get("hourlyVolume") or {}
    series = volume.get("series") or []
    peak = max((p.get("messages") or 0 for p in series), default=0)
    band = volume.get("baseline")
    if band:
        above = sum(1 for p in series if (p.get("messages") or 0) > (band.get("upper") or 0))
        out.append(
            f"- Hourly volume: peak {peak:,}/h; {above} hour(s) above the normal band "
            f"(median {band.get('median')}, upper {band.get('upper')})"
        )
    else:
        out.append(
            f"- Hourly volume: peak {peak:,}/h; no baseline band ({md_text(volume.get('baselineReason') or 'none')})"
        )
    return out


def render_markdown_text(verdicts: list[dict[str, Any]], sweep: dict[str, Any]) -> str:
    lines = [
        "# Exchange Online connector sweep",
        "",
        f"Window {fmt_time(sweep.get('windowStart'))} to {fmt_time(sweep.get('windowEnd'))} · "
        f"source {md_text(sweep.get('source', '?'))} · sweep {md_code(sweep.get('sweepId', '?'))} · "
        f"{len(verdicts)} connectors",
        "",
    ]
    if not sweep.get("complete", True):
        lines += ["> **Incomplete sweep**: verdicts that depend on missing data are unknown.", ">"]
        lines += [f"> - {md_text(e)}" for e in sweep.get("errors") or ()]
        lines.append("")
    if sweep.get("notChecked"):
        lines += ["Not checked:", *(f"- {md_text(n)}" for n in sweep["notChecked"]), ""]
    groups = grouped(verdicts)
    for c, vs in groups:
        lines += [
            f"## {CLASSIFICATION_TITLES.get(c, c)} ({len(vs)})",
            "",
            "| Connector | Type | Score | Determination | Why |",
            "|---|---|--:|---|---|",
        ]
        for v in vs:
            lines.append(
                f"| {md_code(v.get('connector'), in_table=True)} | {md_text(v.get('connectorType'))} | "
                f"{v.get('score', 0)} | {md_text(v.get('determination') or '')} | "
                f"{md_text(main_finding(v))} |"
            )
        lines.append("")
    flagged = [v for _, vs in groups for v in vs if is_flagged(v)]
    if flagged:
        lines += ["## Details", ""]
    for v in flagged:
        c = str(v.get("classification"))
        det = f" ({md_text(v['determination'])})" if v.get("determination") else ""
        lines += [
            f"### {md_code(v.get('connector'))}: {CLASSIFICATION_LABELS.get(c, md_text(c))}{det}, "
            f"score {v.get('score', 0)}",
            "",
        ]
        decisive = v.get("decisiveAct") if c == "truePositive" else None
        if decisive:
            lead = f"{md_text(decisive.get('summary'))} ({md_text(decisive.get('check'))})"
            lines += [f"**Decisive evidence:** {lead}", ""]
        if v.get("reasonIfUnknown"):
            lines += [f"_{md_text(v['reasonIfUnknown'])}_", ""]
        lines += ["Findings:", ""]
        lines += [f"- **{md_text(f.get('severity'))}** {md_text(f.get('summary'))}" for f in v.get("findings") or ()]
        if not v.get("findings"):
            lines.append("- none")
        diffs = (v.get("evidence") or {}).get("configurationDiff") or ()
        diff = [(d, r) for d in diffs for r in d.get("changes") or ()]
        if diff:
            lines += ["", "Configuration diff:", "", "| Time | Action | Parameter | Before | After |",
                      "|---|---|---|---|---|"]
            lines += [
                f"| {fmt_time(d.get('time'))} | {md_text(d.get('actionType') or d.get('operation'))} | "
                f"{md_code(r.get('parameter'), in_table=True)} | "
                f"{md_code('unknown' if r.get('before') is None else r.get('before') or '(empty)', in_table=True)} | "
                f"{md_code(r.get('after') or '(empty)', in_table=True)} |"
                for d, r in diff
            ]
        lines += ["", "Evidence:", "", *_evidence(v), ""]
    return "\n".join(lines).rstrip() + "\n"
