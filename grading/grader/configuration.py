"""What each connector change did: a diff against the connector's previous configuration, and its risk.

Why replay: Exchange's audit record of a ``Set-...Connector`` lists only the parameters passed, so the
configuration before a change is what the earlier changes (oldest first) left, and a change is judged
by what it moved from and to, not by the fact that it happened. Where nothing earlier is known (a
long-standing connector changed for the first time in the history), "before" is unknown and a value
that turns a protection off is read as turning it off: nobody passes ``-RequireTls $false`` to keep it.

Why libraries: a registrable domain comes from the Public Suffix List (``publicsuffixlist`` bundles it,
so nothing is fetched), never from splitting on dots (``mail.partner.co.uk`` is ``partner.co.uk``); a
name that imitates another connector is found through Unicode's confusables table
(``confusable_homoglyphs`` ships it), never a hand-made list of look-alike letters.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
from dataclasses import dataclass, field
from typing import Any

# Parameters whose change alone does nothing to mail flow.
COSMETIC = frozenset({"identity", "name", "comment"})
TLS_LEVELS = {"": 0, "encryptiononly": 1, "certificatevalidation": 2, "domainvalidation": 3}
LIST_PARAMETERS = frozenset({"senderipaddresses", "smarthosts", "recipientdomains", "senderdomains"})


def _key(name: str) -> str:
    return (name or "").strip().lower()


def _bool(value: Any) -> bool | None:
    text = str(value if value is not None else "").strip().lstrip("$").lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def split_list(value: Any) -> list[str]:
    """A multi-valued parameter as the audit record writes it (``a;b``, ``a,b``, or a JSON array)."""
    if isinstance(value, list):
        items = [str(v) for v in value]
    else:
        text = str(value or "").strip()
        if text.startswith("["):
            try:
                items = [str(v) for v in json.loads(text)]
            except json.JSONDecodeError:
                items = [text]
        else:
            items = text.replace(",", ";").split(";")
    return [i.strip() for i in items if i.strip()]


def parameters_of(change: dict[str, Any]) -> dict[str, str]:
    """The change's parameters by lower-case name (the query keeps one ``{Name, Value}`` per parameter)."""
    out: dict[str, str] = {}
    for p in change.get("Parameters") or ():
        name = _key(p.get("Name") or "")
        if name:
            out[name] = "" if p.get("Value") is None else str(p.get("Value"))
    return out


# ---------------------------------------------------------------------------------------------
# Registrable domains and look-alike names


@functools.lru_cache(maxsize=1)
def _psl() -> Any:
    from publicsuffixlist import PublicSuffixList  # the bundled list: no network

    return PublicSuffixList()


def registrable_domain(host: str) -> str:
    """``mail.partner.co.uk`` -> ``partner.co.uk``; an IP address -> its /24 (an address has no
    domain, and a move within a provider's /24 is not a move); a bare suffix -> itself."""
    host = (host or "").strip().strip(".").lower()
    if not host:
        return ""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return _psl().privatesuffix(host) or host
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


@functools.lru_cache(maxsize=1)
def _confusables() -> dict[str, list[dict[str, str]]]:
    import confusable_homoglyphs

    path = os.path.join(os.path.dirname(confusable_homoglyphs.__file__), "confusables.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@functools.lru_cache(maxsize=4096)
def _looks_like(ch: str) -> frozenset[str]:
    """The ASCII letters and digits Unicode says *ch* can be taken for, case aside (``о`` Cyrillic ->
    ``o``; ``O`` -> ``o``, ``0``), itself included when it is ASCII."""
    options = {ch.casefold()}
    for form in {ch, ch.casefold(), ch.upper()}:
        for glyph in _confusables().get(form, ()):
            text = glyph.get("c", "").replace("\u200e", "")
            if len(text) == 1:
                options.add(text.casefold())
    return frozenset(o for o in options if o.isascii() and o.isalnum()) or frozenset({ch.casefold()})


@functools.lru_cache(maxsize=65536)
def _glyphs(name: str) -> tuple[frozenset[str], ...]:
    return tuple(_looks_like(ch) for ch in name if ch.isalnum())


def imitated(name: str, others: list[str]) -> str | None:
    """The other connector *name* is made to look like, if any: a different name that reads the same,
    character by character, once Unicode's confusable characters are taken for what they imitate (case,
    spaces and punctuation aside). Multi-character look-alikes (``rn`` for ``m``) are not folded."""
    mine = _glyphs(name)
    if not mine:
        return None
    for other in others:
        if other.casefold() == name.casefold():
            continue
        theirs = _glyphs(other)
        if len(theirs) == len(mine) and all(a & b for a, b in zip(mine, theirs, strict=True)):
            return other
    return None


# ---------------------------------------------------------------------------------------------
# Addresses


def _networks(values: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = []
    for v in values:
        text = v.strip()
        try:
            if "-" in text and "/" not in text:  # a range "a-b": its covering networks
                lo, hi = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
                out.extend(ipaddress.summarize_address_range(lo, hi))  # type: ignore[arg-type]
            else:
                out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            continue
    return out


def address_count(values: list[str]) -> int:
    return sum(n.num_addresses for n in _networks(values))


# ---------------------------------------------------------------------------------------------
# Diffs


@dataclass
class ConfigDiff:
    """One change as before -> after, with what about it is risky."""

    change: dict[str, Any]
    before: dict[str, str]
    """The configuration the earlier changes left (lower-case parameter names); empty if unknown."""
    after: dict[str, str]
    changed: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    """parameter -> (before or None when unknown, after), for the parameters this change passed."""
    risks: list[dict[str, Any]] = field(default_factory=list)
    """Each: ``kind`` (a policy weight name), ``act`` (dangerous by itself), ``detail``."""

    @property
    def cosmetic(self) -> bool:
        return self.change["Operation"] == "Set" and bool(self.changed) and set(self.changed) <= COSMETIC

    def as_rows(self) -> list[dict[str, Any]]:
        return [
            {"parameter": k, "before": b, "after": a}
            for k, (b, a) in sorted(self.changed.items())
            if k != "identity"
        ]


def replay(changes: list[dict[str, Any]], snapshot: dict[str, str] | None = None) -> list[ConfigDiff]:
    """Each change (oldest first) as a diff against what came before it: *snapshot* (an inventory's
    configuration, lower-case names) then every earlier change. A removal clears the configuration."""
    state: dict[str, str] = dict(snapshot or {})
    out: list[ConfigDiff] = []
    for change in changes:
        params = parameters_of(change)
        if change["Operation"] == "Remove":
            out.append(ConfigDiff(change, dict(state), {}, {}))
            state = {}
            continue
        if change["Operation"] == "New":
            state = {}
        before = dict(state)
        changed: dict[str, tuple[str | None, str]] = {}
        for k, v in params.items():
            prev = state.get(k)  # None: no earlier change or snapshot says
            if prev is None or _normal(k, prev) != _normal(k, v):
                changed[k] = (prev, v)
        state.update(params)
        out.append(ConfigDiff(change, before, dict(state), changed))
    return out


def _normal(name: str, value: str) -> Any:
    if name in LIST_PARAMETERS:
        return sorted(v.lower() for v in split_list(value))
    b = _bool(value)
    return b if b is not None else value.strip().lower()


def assess(
    diff: ConfigDiff,
    *,
    known_domains: set[str],
    known_ips: set[str],
    other_connectors: list[str],
    broad_prefix_v4: int,
    broad_addresses: int,
) -> ConfigDiff:
    """Fill ``diff.risks``: what this change did to mail flow, judged on its own."""
    op = diff.change["Operation"]
    ch = diff.changed
    risks = diff.risks
    if op == "Remove":
        return diff
    # A name made to look like another connector's.
    new_name = ch.get("name", (None, ""))[1] if "name" in ch else ""
    if new_name:
        twin = imitated(new_name, other_connectors)
        if twin:
            risks.append({"kind": "impersonating_name", "act": True,
                          "detail": f"the name {new_name!r} imitates the existing connector {twin!r}",
                          "imitates": twin, "name": new_name})
    if op == "Set" and "smarthosts" in ch:
        before_hosts, after_hosts = split_list(ch["smarthosts"][0] or ""), split_list(ch["smarthosts"][1])
        before_domains = {registrable_domain(h) for h in before_hosts}
        recipients = {registrable_domain(d.lstrip("*.")) for d in split_list(diff.after.get("recipientdomains", ""))}
        familiar = before_domains | recipients | {registrable_domain(d) for d in known_domains}
        familiar.discard("")
        new = sorted({registrable_domain(h) for h in after_hosts} - familiar)
        if new:
            risks.append({"kind": "smarthost_new_domain", "act": True,
                          "detail": f"SmartHosts moved to {', '.join(new)}, a registrable domain this connector "
                                    "never used and the tenant never corresponded with",
                          "before": before_hosts, "after": after_hosts, "newDomains": new})
    tls = _tls_drops(diff)
    if tls:
        risks.append({"kind": "tls_dropped", "act": True, "detail": "; ".join(tls)})
    if "senderipaddresses" in ch:
        widened = _widened(ch["senderipaddresses"][0], ch["senderipaddresses"][1], known_ips,
                           broad_prefix_v4, broad_addresses)
        # A new connector's list is its first setting, not a widening: only a broad one is worth telling.
        if widened and (op == "Set" or widened["act"]):
            risks.append(widened)
    if "restrictdomainstoipaddresses" in ch and _bool(ch["restrictdomainstoipaddresses"][1]) is False \
            and _bool(ch["restrictdomainstoipaddresses"][0] or "true") is not False and op == "Set":
        risks.append({"kind": "restrict_domains_off", "act": True,
                      "detail": "RestrictDomainsToIPAddresses turned off: mail from any sender domain is accepted "
                                "from the connector's addresses"})
    if op == "Set" and "connectortype" in ch:
        b, a = ch["connectortype"]
        if (b or "").lower() != a.lower() and a.lower() == "onpremises":
            risks.append({"kind": "connector_type_changed", "act": True,
                          "detail": f"ConnectorType {b or 'unknown'} -> {a}: its mail is now trusted as the "
                                    "organisation's own"})
    if op == "Set" and "enabled" in ch and _bool(ch["enabled"][1]) is True and _bool(ch["enabled"][0] or "") is False:
        risks.append({"kind": "connector_enabled", "act": False, "detail": "a disabled connector was enabled"})
    return diff


def _tls_drops(diff: ConfigDiff) -> list[str]:
    if diff.change["Operation"] != "Set":
        return []
    ch, out = diff.changed, []
    for flag in ("requiretls", "restrictdomainstocertificate"):
        if flag in ch and _bool(ch[flag][1]) is False and _bool(ch[flag][0] or "true") is not False:
            out.append(f"{flag_label(flag)} {ch[flag][0] or 'unknown'} -> False")
    if "tlssettings" in ch:
        b, a = ch["tlssettings"]
        if TLS_LEVELS.get(a.strip().lower(), 0) < TLS_LEVELS.get((b or "domainvalidation").strip().lower(), 3):
            out.append(f"TlsSettings {b or 'unknown'} -> {a or '(none)'}")
    if "tlssendercertificatename" in ch and not ch["tlssendercertificatename"][1].strip():
        out.append(f"TlsSenderCertificateName {ch['tlssendercertificatename'][0] or 'unknown'} -> (none)")
    return out


def flag_label(name: str) -> str:
    return {"requiretls": "RequireTls", "restrictdomainstocertificate": "RestrictDomainsToCertificate"}.get(name, name)


def _widened(before: str | None, after: str, known_ips: set[str], broad_prefix_v4: int,
             broad_addresses: int) -> dict[str, Any] | None:
    old = _networks(split_list(before or ""))
    new = _networks(split_list(after))
    known = [ipaddress.ip_address(i) for i in known_ips if _is_ip(i)]
    added = [n for n in new if not any(n.version == o.version and n.subnet_of(o) for o in old)]  # type: ignore[arg-type]
    if before is None:
        # The previous list is unknown: a range the connector's mail already came from was evidently
        # allowed before this change; only the others are additions.
        added = [n for n in added if not any(ip in n for ip in known)]
    if not added:
        return None
    count = sum(n.num_addresses for n in added)
    shortest = min((n.prefixlen for n in added if n.version == 4), default=32)
    outside = [str(n) for n in added if not any(ip in n for ip in known)]
    broad = shortest < broad_prefix_v4 or count > broad_addresses
    return {
        "kind": "sender_ips_widened_broad" if broad else "sender_ips_widened",
        "act": broad,
        "detail": f"SenderIPAddresses widened by {count} address(es) ({', '.join(str(n) for n in added[:5])}"
                  + (f"; shortest prefix /{shortest}" if shortest < 32 else "") + ")"
                  + (f"; {len(outside)} range(s) never seen sending on this connector" if outside else ""),
        "added": [str(n) for n in added],
        "addedAddresses": count,
        "outsideKnownSources": outside,
    }


def in_ranges(ip: str, ranges: list[str]) -> bool:
    if not _is_ip(ip):
        return False
    address = ipaddress.ip_address(ip)
    return any(address in n for n in _networks(ranges))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Approved configurations: what a connector is supposed to look like, and how far it drifted


def configuration_values(raw: dict[str, Any]) -> dict[str, str]:
    """A connector's properties (``Get-...Connector`` output or a stored snapshot) as the replay keeps a
    configuration: lower-case names, text values, lists joined with ``;``."""
    out: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            text = ""
        elif isinstance(value, bool):
            text = "True" if value else "False"
        elif isinstance(value, list | tuple):
            text = ";".join(str(v) for v in value)
        else:
            text = str(value)
        out[_key(name)] = text
    return out


def current_configuration(base: dict[str, str], base_time: Any, changes: list[dict[str, Any]]) -> dict[str, str]:
    """The configuration now: *base* (an approval or an inventory snapshot taken at *base_time*) with every
    later change (oldest first) applied over it."""
    state = dict(base)
    for change in changes:
        if base_time is not None and change["Timestamp"] <= base_time:
            continue
        if change["Operation"] == "Remove":
            return {}
        if change["Operation"] == "New":
            state = {}
        state.update(parameters_of(change))
    return state


def drift(approved: dict[str, str], current: dict[str, str]) -> ConfigDiff:
    """The current configuration as a diff from the approved one (a ``Set`` from approved to current),
    so :func:`assess` weighs what drifted exactly as it weighs a change. Only the parameters both sides
    may hold count: a property the approval did not record (or the inventory does not read) is not drift."""
    changed: dict[str, tuple[str | None, str]] = {}
    for k, v in current.items():
        if k in COSMETIC or k not in approved:
            continue
        if _normal(k, approved[k]) != _normal(k, v):
            changed[k] = (approved[k], v)
    change = {"Operation": "Set", "Parameters": [{"Name": k, "Value": a} for k, (_, a) in sorted(changed.items())]}
    return ConfigDiff(change, dict(approved), dict(current), changed)
