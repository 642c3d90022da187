"""What every rendering of a sweep shares: the order connectors are shown in, which are flagged,
and the events marked on a connector's time axis.

Why here and not in each renderer: the HTML page, the Markdown summary and the tests must agree
on what an analyst sees first (true positives, then connectors to review, by score) and on
which events are configuration changes and which are admin logon anomalies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from grading.classification import Classification

# Order of attention: what to act on, what to review, what to know, what to ignore.
CLASSIFICATION_ORDER = (Classification.TRUE_POSITIVE, Classification.UNKNOWN, Classification.INFORMATIONAL,
                        Classification.FALSE_POSITIVE)
CLASSIFICATION_TITLES = {
    Classification.TRUE_POSITIVE: "True positives",
    Classification.UNKNOWN: "Needs review",
    Classification.INFORMATIONAL: "Expected activity",
    Classification.FALSE_POSITIVE: "False positives",
}
CLASSIFICATION_LABELS = {
    Classification.TRUE_POSITIVE: "true positive",
    Classification.UNKNOWN: "unknown",
    Classification.INFORMATIONAL: "informational, expected activity",
    Classification.FALSE_POSITIVE: "false positive",
}
SEVERITY_ORDER = ("high", "medium", "low", "informational")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 instant from the verdict JSON (``...Z``), as aware UTC; ``None`` if absent/bad."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def fmt_time(value: Any) -> str:
    """``2026-11-19 14:05 UTC`` for an instant, the value as is when it is not one, ``—`` for none."""
    t = parse_time(value)
    if t is None:
        return "—" if value in (None, "") else str(value)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _rank(classification: str) -> int:
    return CLASSIFICATION_ORDER.index(classification) if classification in CLASSIFICATION_ORDER else 1


def ordered(verdicts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """By classification (order of attention), then score high to low, then name."""
    return sorted(
        verdicts,
        key=lambda v: (_rank(v.get("classification", Classification.UNKNOWN)), -(v.get("score") or 0),
                       str(v.get("connector"))),
    )


def grouped(verdicts: Iterable[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``[(classification, verdicts)]`` in order of attention, empty groups left out. An unexpected
    classification value is shown with the ``unknown`` group rather than dropped."""
    groups: dict[str, list[dict[str, Any]]] = {c: [] for c in CLASSIFICATION_ORDER}
    for v in ordered(verdicts):
        c = v.get("classification")
        groups[c if c in groups else Classification.UNKNOWN].append(v)
    return [(c, vs) for c, vs in groups.items() if vs]


def is_flagged(verdict: dict[str, Any]) -> bool:
    """A connector an analyst should look at: anything but a false positive with no findings."""
    return verdict.get("classification") != Classification.FALSE_POSITIVE or bool(verdict.get("findings"))


def main_finding(verdict: dict[str, Any]) -> str:
    """One line that says why: the reason for an unknown, else the strongest finding."""
    if verdict.get("classification") == Classification.UNKNOWN and verdict.get("reasonIfUnknown"):
        return str(verdict["reasonIfUnknown"])
    findings = verdict.get("findings") or []
    return str(findings[0]["summary"]) if findings else "no findings"


@dataclass(frozen=True)
class Marker:
    """An event on a connector's time axis: a configuration change or an admin logon anomaly."""

    kind: str
    """``change`` or ``admin``."""
    label: str
    """``C1``, ``C2``... for changes, ``A1``... for admin anomalies, in time order."""
    time: datetime
    description: str


def timeline_markers(verdict: dict[str, Any]) -> list[Marker]:
    """Configuration changes (``evidence.changes``) and admin logon anomalies (the
    ``adminCompromise`` findings: a failure burst followed by a success, a logon from a new place)."""
    evidence = verdict.get("evidence") or {}
    changes: list[tuple[datetime, str]] = []
    for c in evidence.get("changes") or ():
        t = parse_time(c.get("time"))
        if t is None:
            continue
        place = "; ".join(str(p) for p in (c.get("country"), c.get("isp")) if p)
        origin = f" from {c.get('ip') or 'an unknown IP'}" + (f" ({place})" if place else "")
        changes.append(
            (
                t,
                f"{c.get('actionType') or c.get('operation') or 'change'} by "
                f"{c.get('by') or 'an unknown account'}{origin}",
            )
        )
    admins: list[tuple[datetime, str]] = []
    for f in verdict.get("findings") or ():
        if f.get("check") != "adminCompromise":
            continue
        ev = f.get("evidence") or {}
        t = parse_time(ev.get("successTime") or ev.get("firstSuccess"))
        if t is not None:
            admins.append((t, str(f.get("summary") or "admin logon anomaly")))
    out: list[Marker] = []
    for kind, prefix, events in (("change", "C", changes), ("admin", "A", admins)):
        unique = sorted(set(events), key=lambda e: (e[0], e[1]))
        out.extend(Marker(kind, f"{prefix}{i}", t, d) for i, (t, d) in enumerate(unique, 1))
    return sorted(out, key=lambda m: (m.time, m.kind))


def other_senders(verdicts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tenant-wide senders of similar external mail (the same list rides on every verdict)."""
    for v in verdicts:
        senders = (v.get("evidence") or {}).get("otherSenders")
        if senders:
            return list(senders)
    return []
