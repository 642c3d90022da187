"""Where a connector's mail goes and whose domains it carries, split by what the tenant knows.

Why in Python and not in the query: "known" means the tenant corresponded with the domain during the
baseline history (weeks of mail). A query that decides it must read those weeks every time, or be
handed every known domain as a literal (tens of thousands in a large tenant). Instead
``connector_domains.kql`` returns each connector's domains per hour and ``correspondents.kql`` the
external domains the tenant exchanged mail with; both are kept in Table Storage hour by hour
(:mod:`grading.storage.aggregates`), and the split happens here, over any span of hours, with a set
lookup. The same function serves the one-shot sweep (one query run each over the whole span), so the
two paths cannot disagree.

The results keep the shapes the checks read (``ConnectorFacts.recipients`` / ``sender_domains``):
per connector, a row per (Known, Internal) for recipients and per Part for sender domains.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SAMPLE_DOMAINS = 25
"""Domains named per row (the busiest first), as the evidence shows them."""


@dataclass
class _Tally:
    """One connector's domains of one part over a span: per domain its messages, forged-looking and
    threat messages; plus what the hourly rows did not list (their ``maxDomains`` cap)."""

    domains: dict[str, list[int]] = field(default_factory=dict)
    unlisted_domains: int = 0
    unlisted: list[int] = field(default_factory=lambda: [0, 0, 0])

    def add(self, row: Mapping[str, Any]) -> None:
        listed = [0, 0, 0]
        names = 0
        for item in row.get("Domains") or ():
            domain, counts = _listed(item)
            names += 1
            have = self.domains.setdefault(domain, [0, 0, 0])
            for i in range(3):
                have[i] += counts[i]
                listed[i] += counts[i]
        self.unlisted_domains += max(0, int(row.get("DomainCount") or 0) - names)
        for i, col in enumerate(("Messages", "Mismatched", "ThreatMessages")):
            self.unlisted[i] += max(0, int(row.get(col) or 0) - listed[i])


def _listed(item: Any) -> tuple[str, list[int]]:
    """A listed domain, ``"domain messages mismatched threats"``: the counts are the last three fields,
    whatever the domain (the sender's choice) holds."""
    domain, *numbers = str(item).rsplit(" ", 3)
    return domain.lower(), [int(v) for v in numbers]


def _tallies(rows: Iterable[Mapping[str, Any]], part: str) -> dict[str, _Tally]:
    out: dict[str, _Tally] = defaultdict(_Tally)
    for r in rows:
        if r.get("Part") == part and r.get("Connector"):
            out[r["Connector"]].add(r)
    return out


def _sample(domains: dict[str, list[int]]) -> list[str]:
    return sorted(domains, key=lambda d: (-domains[d][0], d))[:SAMPLE_DOMAINS]


def recipient_profile(rows: Iterable[Mapping[str, Any]], *, tenant_domains: Iterable[str],
                      correspondents: set[str], partner_domains: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Per connector: the recipient domains that are the tenant's own (``Internal``), its correspondents
    or allow-listed partners (``Known``), and the rest (never seen). Domains beyond an hour's listing cap
    cannot be looked up and count as never seen (a spray is what overflows the cap)."""
    own = {d.lower() for d in tenant_domains}
    known = correspondents | {d.lower() for d in partner_domains}
    out = []
    for connector, tally in sorted(_tallies(rows, "Recipient").items()):
        groups: dict[tuple[bool, bool], dict[str, list[int]]] = defaultdict(dict)
        for domain, counts in tally.domains.items():
            internal = domain in own
            groups[(internal, not internal and domain in known)][domain] = counts
        if tally.unlisted_domains or any(tally.unlisted):
            groups.setdefault((False, False), {})
        for internal, is_known in sorted(groups):
            domains = groups[(internal, is_known)]
            extra = (internal, is_known) == (False, False)
            out.append({
                "Connector": connector,
                "Known": is_known,
                "Internal": internal,
                "Domains": len(domains) + (tally.unlisted_domains if extra else 0),
                "Messages": sum(c[0] for c in domains.values()) + (tally.unlisted[0] if extra else 0),
                "SampleDomains": _sample(domains),
                "Mismatched": sum(c[1] for c in domains.values()) + (tally.unlisted[1] if extra else 0),
                "ThreatMessages": sum(c[2] for c in domains.values()) + (tally.unlisted[2] if extra else 0),
            })
    return out


def sender_domains(rows: Iterable[Mapping[str, Any]], *, tenant_domains: Iterable[str],
                   correspondents: set[str]) -> list[dict[str, Any]]:
    """Per connector and part (``Header``: P2 From, ``Envelope``: P1 MailFrom): the sender domains
    outside the tenant's own, how many messages carry them and how many of them are correspondents."""
    own = {d.lower() for d in tenant_domains}
    out = []
    for part in ("Envelope", "Header"):
        for connector, tally in _tallies(rows, part).items():
            domains = {d: c for d, c in tally.domains.items() if d not in own}
            if not domains and not tally.unlisted_domains:
                continue
            out.append({
                "Connector": connector,
                "Part": part,
                "Domains": len(domains) + tally.unlisted_domains,
                "Messages": sum(c[0] for c in domains.values()) + tally.unlisted[0],
                "SampleDomains": _sample(domains),
                "KnownDomains": sum(1 for d in domains if d in correspondents),
            })
    out.sort(key=lambda r: (r["Connector"], r["Part"]))
    return out


def correspondent_domains(rows: Iterable[Mapping[str, Any]], tenant_domains: Iterable[str]) -> set[str]:
    """The external domains of ``correspondents.kql`` rows (any span, stored or read), the tenant's own
    domains left out."""
    own = {d.lower() for d in tenant_domains}
    return {d for r in rows if (d := (r.get("Domain") or "").lower()) and d not in own}


def split_listing(rows: Iterable[Mapping[str, Any]], max_chars: int) -> list[dict[str, Any]]:
    """``connector_domains`` rows cut so none lists more than *max_chars* characters of domains (what a
    stored part may hold: domains are the sender's choice, up to 253 characters each). A cut row's
    pieces add up to it: each piece counts the domains it lists, and the first also what none lists, so
    the split above gives the same answer either way."""
    out: list[dict[str, Any]] = []
    for r in rows:
        listing = [str(item) for item in r.get("Domains") or ()]
        if sum(len(item) + 4 for item in listing) <= max_chars:
            out.append(dict(r))
            continue
        pieces: list[list[str]] = [[]]
        size = 0
        for item in listing:
            if pieces[-1] and size + len(item) + 4 > max_chars:
                pieces.append([])
                size = 0
            pieces[-1].append(item)
            size += len(item) + 4
        rest = []
        for piece in pieces[1:]:
            counts = [sum(_listed(i)[1][k] for i in piece) for k in range(3)]
            rest.append({**r, "Domains": piece, "DomainCount": len(piece), "Messages": counts[0],
                         "Mismatched": counts[1], "ThreatMessages": counts[2]})
        first = dict(r, Domains=pieces[0])
        for col in ("DomainCount", "Messages", "Mismatched", "ThreatMessages"):
            first[col] = int(r.get(col) or 0) - sum(p[col] for p in rest)
        out.extend([first, *rest])
    return out
