"""Mail-flow (transport) rules around a connector: which rules concern it, and what they do to its mail.

Why: a connector is rarely abused alone. Rules that route mail through a connector
(``RouteMessageOutboundConnector``), bypass filtering (``SetSCL -1``, a bypass header), remove or rewrite
headers (``RemoveHeader``, ``SetHeaderName``/``SetHeaderValue``) or redirect and copy mail
(``RedirectMessageTo``, ``BlindCopyTo``, ``AddToRecipients``, ``CopyTo``) are how a connector becomes useful
to an attacker. A rule concerns a connector when its parameters name it, or when it is scoped to the
connector's sender IP ranges or domains. Disclaimers and encryption do nothing of the kind, and a rule whose
last change predates the change lookback is long-standing: neither counts against a connector.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from grading.grader.configuration import _networks, parameters_of, split_list

ROUTE = "routeThroughConnector"
BYPASS = "bypassFiltering"
HEADERS = "rewriteHeaders"
REDIRECT = "redirectOrCopy"
REDIRECT_PARAMETERS = ("redirectmessageto", "blindcopyto", "addtorecipients", "copyto")
BYPASS_HEADER_WORDS = ("bypass", "skip", "antispam", "scl", "spam")


@dataclass
class TransportRule:
    """One rule as its events left it (oldest first)."""

    name: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    removed: bool = False

    def actions(self) -> list[str]:
        """What the rule does that can make a connector useful to an attacker."""
        s, out = self.state, []
        if s.get("routemessageoutboundconnector"):
            out.append(ROUTE)
        header = (s.get("setheadername") or "").lower()
        if s.get("setscl", "").strip() == "-1" or any(w in header for w in BYPASS_HEADER_WORDS):
            out.append(BYPASS)
        if s.get("removeheader") or header:
            out.append(HEADERS)
        if any(s.get(p) for p in REDIRECT_PARAMETERS):
            out.append(REDIRECT)
        return out

    def recent_changes(self, since: datetime) -> list[dict[str, Any]]:
        return [c for c in self.changes if c["Timestamp"] >= since and c["Operation"] in ("New", "Set", "Enable")]


def rules_of(rows: list[dict[str, Any]]) -> list[TransportRule]:
    """The tenant's rules from ``transport_rules`` rows: each one's parameters replayed, oldest first."""
    by: dict[str, TransportRule] = {}
    for row in sorted(rows, key=lambda r: r["Timestamp"]):
        key = (row.get("Rule") or "").casefold()
        if not key:
            continue
        rule = by.setdefault(key, TransportRule(row["Rule"]))
        rule.changes.append(row)
        op = row["Operation"]
        if op == "New":
            rule.state, rule.enabled, rule.removed = {}, True, False
        if op == "Remove":
            rule.removed = True
        elif op in ("Enable", "Disable"):
            rule.enabled = op == "Enable"
        else:
            params = parameters_of(row)
            params.pop("identity", None)
            rule.state.update(params)
            if params.get("enabled", "").strip().lstrip("$").lower() == "false":
                rule.enabled = False
    return sorted(by.values(), key=lambda r: r.name.casefold())


def _overlap(a: list[str], b: list[str]) -> bool:
    nets_a, nets_b = _networks(a), _networks(b)
    return any(x.version == y.version and x.overlaps(y) for x in nets_a for y in nets_b)  # type: ignore[arg-type]


def link(rule: TransportRule, names: list[str], sender_ips: list[str], domains: set[str]) -> str | None:
    """How *rule* concerns a connector called one of *names* (with those sender addresses and domains):
    ``named``, ``senderIpRanges`` or ``domains``; None when it does not."""
    folded = {n.casefold() for n in names if n}
    # The rule's own name and comment describe it; they do not point it at a connector.
    values = [v for k, v in rule.state.items() if k not in ("name", "comments", "comment")]
    if any(v.strip().casefold() in folded for v in values) or any(
            item.casefold() in folded for v in values for item in split_list(v)):
        return "named"
    ranges = split_list(rule.state.get("senderipranges", ""))
    if ranges and sender_ips and _overlap(ranges, sender_ips):
        return "senderIpRanges"
    scoped = {d.lower().lstrip("*.") for p in ("senderdomainis", "recipientdomainis")
              for d in split_list(rule.state.get(p, ""))}
    if scoped & {d.lower().lstrip("*.") for d in domains if d and d != "*"}:
        return "domains"
    return None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return False
    return True
