"""Simulated mail: message batches per traffic kind, expanded into EmailEvents, EmailUrlInfo and
EmailAttachmentInfo rows, all vectorised.

Why batches: a traffic stream (background user mail, a partner connector, a spray) is a set of
messages sharing how their senders, recipients and verdicts are drawn. A builder draws those
columns for all of a stream's messages at once; :func:`expand` then turns a batch into rows
(one EmailEvents row per message and recipient, as Defender records it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from devtools.simulate.arrays import (
    choose,
    const_str,
    domain_of,
    guids,
    hex_ids,
    ints_to_str,
    ipv4,
    ipv4_from_prefixes,
    join,
    random_words,
    take,
)
from devtools.simulate.output import conform
from devtools.simulate.tenant import (
    FIRST_NAMES,
    FREEMAIL,
    HOSTILE_SUBJECTS,
    LAST_NAMES,
    NEWSLETTERS,
    RARE_TLDS,
    Tenant,
)

TOPICS = (
    "Quarterly review",
    "Project kickoff",
    "Meeting notes",
    "Purchase order",
    "Invoice",
    "Contract draft",
    "Shipping update",
    "Budget 2027",
    "Team lunch",
    "Weekly status",
    "Travel plans",
    "Candidate interview",
    "Product roadmap",
    "Support ticket",
    "Price list",
    "Delivery schedule",
    "Board pack",
    "Onboarding",
)
REPLY_PREFIXES = ("", "", "Re: ", "RE: ", "Fwd: ", "FW: ")
NEWS_SUBJECTS = (
    "Your weekly digest",
    "New features this month",
    "Webinar invitation",
    "Security notice",
    "Your invoice is available",
    "Product update",
    "Don't miss our spring offers",
    "Event recap",
)
PHISH_SUBJECTS = (
    "Action required: verify your mailbox",
    "Invoice overdue - payment needed",
    "Shared document: Q4 payroll",
    "Your password expires today",
    "DocuSign: please review and sign",
    "Voicemail received (2 messages)",
    "Updated remittance details",
    "Urgent wire transfer request",
)
SUPPLY_SUBJECTS = (
    "Updated bank details for future payments",
    "Invoice {n} - new remittance account",
    "Re: Purchase order {n}",
    "Outstanding balance - please settle",
    "Change of payment instructions",
)
URL_PATHS = ("login", "secure", "verify", "account", "docs", "share", "invoice", "portal", "auth")
BENIGN_URL_HOSTS = ("teams.microsoft.com", "sharepoint.com", "zoom.us", "docs.google.com", "www.linkedin.com")
ATTACH_BENIGN = (
    ("Invoice.pdf", "pdf"),
    ("Report.docx", "docx"),
    ("Budget.xlsx", "xlsx"),
    ("Photo.jpg", "jpg"),
)
ATTACH_PHISH = (("Remittance_Advice.htm", "html"), ("Payment_Details.html", "html"), ("Scan_0098.pdf", "pdf"))
AUTH_OK = '{"SPF":"pass","DKIM":"pass","DMARC":"pass","CompAuth":"pass"}'
AUTH_UNSIGNED = '{"SPF":"none","DKIM":"none","DMARC":"none","CompAuth":"none"}'
AUTH_FAILED = '{"SPF":"fail","DKIM":"none","DMARC":"fail","CompAuth":"fail"}'
DETECTION = {
    "Phish": '{"Phish":["URL detonation reputation"]}',
    "Spam": '{"Spam":["Mixed analysis detection"]}',
}
CONFIDENCE = {"Phish": '{"Phish":"High"}', "Spam": '{"Spam":"Normal"}'}

Col = pa.Array | str


@dataclass
class MailBatch:
    """Messages of one traffic kind: message-level columns, recipients, URLs and attachments."""

    times: np.ndarray
    sender_from: pa.Array
    sender_mailfrom: pa.Array
    sender_display: Col
    sender_oid: Col
    sender_ip: Col
    direction: Col
    subject: Col
    rcpt_counts: np.ndarray
    rcpt: pa.Array
    rcpt_oid: Col
    connector: str = ""
    threat: Col = ""
    auth: Col = AUTH_OK
    bcl: pa.Array | None = None
    url_counts: np.ndarray | None = None
    urls: pa.Array | None = None
    attach_counts: np.ndarray | None = None
    attach_files: tuple[tuple[str, str], ...] = ATTACH_BENIGN
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.times)


# ---------------------------------------------------------------------------------------------
# Shared draws


def _users(rng: np.random.Generator, tenant: Tenant, n: int) -> tuple[pa.Array, pa.Array, pa.Array]:
    # Zipf-like activity: a few users send a lot, most a little.
    idx = np.minimum(rng.zipf(1.3, size=n) - 1, tenant.n_users - 1)
    idx = (idx + rng.integers(0, tenant.n_users, size=n) * (rng.random(n) < 0.6)) % tenant.n_users
    return take(tenant.user_upns, idx), take(tenant.user_oids, idx), take(tenant.user_names, idx)


def _ranks(counts: np.ndarray) -> np.ndarray:
    """For rows grouped by message (*counts* rows each), each row's position in its message."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)


def _spread_index(rng: np.random.Generator, counts: np.ndarray, size: int) -> np.ndarray:
    """Indices into ``range(size)``, one per row, distinct within each message (up to 3 rows):
    a random start and a random stride below size / 3, so no message lists a recipient twice."""
    if len(counts) and int(counts.max()) > 3:
        raise ValueError("at most 3 recipients per message")
    n = len(counts)
    base = rng.integers(0, size, size=n)
    stride = rng.integers(1, max(2, size // 3), size=n)
    return (np.repeat(base, counts) + _ranks(counts) * np.repeat(stride, counts)) % size


def _people(rng: np.random.Generator, domains: pa.Array, counts: np.ndarray | None = None) -> tuple[pa.Array, pa.Array]:
    """External addresses first.last@domain (and display names), one per domain; rows of one
    message (*counts* per message) are different people."""
    n = len(domains)
    counts = np.ones(n, dtype=np.int64) if counts is None else counts
    person = _spread_index(rng, counts, len(FIRST_NAMES) * len(LAST_NAMES))
    fi, li = person // len(LAST_NAMES), person % len(LAST_NAMES)
    local = join(take(FIRST_NAMES, fi), take(LAST_NAMES, li), sep=".")
    display = join(take([f.title() for f in FIRST_NAMES], fi), take([x.title() for x in LAST_NAMES], li), sep=" ")
    return join(local, domains, sep="@"), display


def _rcpt_counts(rng: np.random.Generator, n: int, p: tuple[float, ...] = (0.8, 0.15, 0.05)) -> np.ndarray:
    return rng.choice(np.arange(1, len(p) + 1), size=n, p=np.asarray(p) / sum(p))


def _subjects(rng: np.random.Generator, n: int, topics: tuple[str, ...] = TOPICS) -> pa.Array:
    return join(choose(rng, REPLY_PREFIXES, n), choose(rng, topics, n))


def _numbered(rng: np.random.Generator, templates: tuple[str, ...], n: int) -> pa.Array:
    """Subjects from templates with ``{n}`` replaced by a random number."""
    parts = [t.split("{n}") for t in templates]
    idx = rng.integers(0, len(templates), size=n)
    heads = take([p[0] for p in parts], idx)
    tails = take([p[1] if len(p) > 1 else "" for p in parts], idx)
    has_n = np.array([len(p) > 1 for p in parts])[idx]
    nums = pc.if_else(pa.array(has_n), ints_to_str(rng.integers(10000, 99999, size=n)), const_str("", n))
    return join(heads, nums, tails)


def _urls(rng: np.random.Generator, hosts: pa.Array) -> pa.Array:
    n = len(hosts)
    return join("https:/", hosts, choose(rng, URL_PATHS, n), hex_ids(rng, n, 6), sep="/")


def _url_batch(rng: np.random.Generator, counts: np.ndarray, hosts: pa.Array) -> pa.Array:
    """URLs for messages with *counts* URLs each, hosts drawn from *hosts*."""
    total = int(counts.sum())
    return _urls(rng, take(hosts, rng.integers(0, len(hosts), size=total)))


def _ips(rng: np.random.Generator, prefix: tuple[int, int, int], hosts: list[int], n: int) -> pa.Array:
    return ipv4(prefix, rng.choice(np.asarray(hosts), size=n))


# ---------------------------------------------------------------------------------------------
# Background user mail (no connector)


def background_outbound(rng: np.random.Generator, tenant: Tenant, times: np.ndarray) -> MailBatch:
    """Users mailing outside: mostly known correspondents, some freemail, a few new contacts.

    Every correspondent domain gets at least one message in each batch that has room for it,
    so "known correspondent" is true of every domain the labels call known.
    """
    n = len(times)
    upn, oid, name = _users(rng, tenant, n)
    counts = _rcpt_counts(rng, n)
    total = int(counts.sum())
    corr = len(tenant.correspondents)
    kind = rng.choice(3, size=total, p=[0.8, 0.16, 0.04])
    dom_idx = np.where(
        kind == 0,
        rng.integers(0, corr, size=total),
        np.where(kind == 1, corr + rng.integers(0, 7, total), -1),
    )
    first_rows = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n else np.empty(0, dtype=np.int64)
    k = min(corr, n)
    chosen = rng.choice(n, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
    dom_idx[first_rows[chosen]] = np.arange(k)
    known = tenant.correspondents + list(FREEMAIL)
    rare = join(random_words(rng, total, 5, 10), choose(rng, RARE_TLDS, total))
    domains = pc.if_else(pa.array(dom_idx >= 0), take(known, np.maximum(dom_idx, 0)), rare)
    rcpt, _ = _people(rng, domains, counts)
    url_counts = rng.choice([0, 1, 2], size=n, p=[0.75, 0.2, 0.05])
    return MailBatch(
        times=times,
        sender_from=upn,
        sender_mailfrom=upn,
        sender_display=name,
        sender_oid=oid,
        sender_ip=_ips(rng, tenant.office.prefix, list(range(10, 40)), n),
        direction="Outbound",
        subject=_subjects(rng, n),
        rcpt_counts=counts,
        rcpt=rcpt,
        rcpt_oid="",
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, pa.array(BENIGN_URL_HOSTS)),
        attach_counts=rng.choice([0, 1, 2], size=n, p=[0.8, 0.17, 0.03]),
    )


def background_inbound(rng: np.random.Generator, tenant: Tenant, times: np.ndarray) -> MailBatch:
    """Mail from outside to users: correspondents, freemail, newsletters (P1 often differs from
    P2, as real bulk senders' do) and some spam and phish that filtering catches."""
    n = len(times)
    kind = rng.choice(4, size=n, p=[0.55, 0.15, 0.22, 0.08])
    corr = pa.array(tenant.correspondents)
    news_from = pa.array([f for f, _ in NEWSLETTERS])
    news_env = pa.array([e for _, e in NEWSLETTERS])
    news_i = rng.integers(0, len(NEWSLETTERS), size=n)
    rare = join(random_words(rng, n, 5, 10), choose(rng, RARE_TLDS, n))
    p2_dom = pc.if_else(
        pa.array(kind == 0),
        take(corr, rng.integers(0, len(corr), n)),
        pc.if_else(
            pa.array(kind == 1),
            choose(rng, FREEMAIL, n),
            pc.if_else(pa.array(kind == 2), take(news_from, news_i), rare),
        ),
    )
    person, display = _people(rng, p2_dom)
    news_addr = join("noreply", take(news_from, news_i), sep="@")
    p2 = pc.if_else(pa.array(kind == 2), news_addr, person)
    p1 = pc.if_else(pa.array(kind == 2), join(join("bounce-", hex_ids(rng, n, 4)), take(news_env, news_i), sep="@"), p2)
    counts = _rcpt_counts(rng, n, (0.85, 0.1, 0.05))
    ridx = _spread_index(rng, counts, tenant.n_users)
    threat_draw = rng.random(n)
    threat = np.where(kind == 3, np.where(threat_draw < 0.6, "Spam", np.where(threat_draw < 0.8, "Phish", "")), "")
    threat = np.where((kind != 3) & (threat_draw < 0.01), "Spam", threat)
    prefixes = np.stack(
        [
            rng.choice([45, 52, 77, 85, 91, 104, 149, 185, 198, 209], n),
            rng.integers(1, 255, n),
            rng.integers(0, 255, n),
        ],
        axis=1,
    )
    url_counts = rng.choice([0, 1, 2, 3], size=n, p=[0.5, 0.3, 0.15, 0.05])
    url_hosts = pc.if_else(
        pa.array(np.repeat(kind == 3, url_counts)),
        join("www", take(rare, np.repeat(np.arange(n), url_counts)), sep="."),
        take(pa.array(BENIGN_URL_HOSTS), rng.integers(0, len(BENIGN_URL_HOSTS), int(url_counts.sum()))),
    )
    return MailBatch(
        times=times,
        sender_from=p2,
        sender_mailfrom=p1,
        sender_display=display,
        sender_oid="",
        sender_ip=ipv4_from_prefixes(prefixes, rng.integers(2, 250, n)),
        direction="Inbound",
        subject=pc.if_else(pa.array(kind == 2), choose(rng, NEWS_SUBJECTS, n), _subjects(rng, n)),
        rcpt_counts=counts,
        rcpt=take(tenant.user_upns, ridx),
        rcpt_oid=take(tenant.user_oids, ridx),
        threat=pa.array(threat, pa.string()),
        auth=pc.if_else(pa.array(kind == 3), const_str(AUTH_FAILED, n), const_str(AUTH_OK, n)),
        bcl=pa.array(np.where(kind == 2, rng.integers(4, 8, n), rng.integers(0, 2, n)), pa.int32()),
        url_counts=url_counts,
        urls=_urls(rng, url_hosts),
        attach_counts=rng.choice([0, 1], size=n, p=[0.8, 0.2]),
    )


def background_intra(rng: np.random.Generator, tenant: Tenant, times: np.ndarray) -> MailBatch:
    """Users mailing each other inside the organisation."""
    n = len(times)
    upn, oid, name = _users(rng, tenant, n)
    counts = _rcpt_counts(rng, n, (0.6, 0.25, 0.15))
    ridx = _spread_index(rng, counts, tenant.n_users)
    url_counts = rng.choice([0, 1], size=n, p=[0.7, 0.3])
    return MailBatch(
        times=times,
        sender_from=upn,
        sender_mailfrom=upn,
        sender_display=name,
        sender_oid=oid,
        sender_ip=_ips(rng, tenant.office.prefix, list(range(10, 40)), n),
        direction="Intra-org",
        subject=_subjects(rng, n),
        rcpt_counts=counts,
        rcpt=take(tenant.user_upns, ridx),
        rcpt_oid=take(tenant.user_oids, ridx),
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, pa.array(BENIGN_URL_HOSTS)),
        attach_counts=rng.choice([0, 1], size=n, p=[0.85, 0.15]),
    )


# ---------------------------------------------------------------------------------------------
# Connector traffic


def partner_inbound(rng: np.random.Generator, tenant: Tenant, times: np.ndarray, p: dict[str, Any]) -> MailBatch:
    """A partner's servers delivering its people's mail to users through an inbound connector."""
    n = len(times)
    sender, display = _people(rng, const_str(p["domain"], n))
    counts = _rcpt_counts(rng, n, (0.85, 0.15))
    ridx = _spread_index(rng, counts, tenant.n_users)
    url_counts = rng.choice([0, 1], size=n, p=[0.8, 0.2])
    return MailBatch(
        times=times,
        sender_from=sender,
        sender_mailfrom=sender,
        sender_display=display,
        sender_oid="",
        sender_ip=_ips(rng, p["prefix"], p["hosts"], n),
        direction="Inbound",
        subject=_subjects(rng, n),
        rcpt_counts=counts,
        rcpt=take(tenant.user_upns, ridx),
        rcpt_oid=take(tenant.user_oids, ridx),
        connector=p["connector"],
        bcl=pa.array(rng.integers(0, 2, n), pa.int32()),
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, pa.array([f"portal.{p['domain']}"])),
        attach_counts=rng.choice([0, 1], size=n, p=[0.7, 0.3]),
    )


def tenant_relay(rng: np.random.Generator, tenant: Tenant, times: np.ndarray, p: dict[str, Any]) -> MailBatch:
    """Users' own mail relayed by the organisation's servers (on-premises smarthost, hybrid,
    migration): P1 = P2 = a real user with an object id, to colleagues or known correspondents."""
    n = len(times)
    upn, oid, name = _users(rng, tenant, n)
    internal = rng.random(n) < p.get("internal_share", 0.3)
    counts = _rcpt_counts(rng, n)
    total = int(counts.sum())
    row_internal = np.repeat(internal, counts)
    ridx = _spread_index(rng, counts, tenant.n_users)
    targets = pa.array(p.get("targets", tenant.correspondents))
    ext, _ = _people(rng, take(targets, rng.integers(0, len(targets), total)), counts)
    rcpt = pc.if_else(pa.array(row_internal), take(tenant.user_upns, ridx), ext)
    rcpt_oid = pc.if_else(pa.array(row_internal), take(tenant.user_oids, ridx), const_str("", total))
    url_counts = rng.choice([0, 1], size=n, p=[0.75, 0.25])
    mailfrom = upn
    if p.get("bounce_share"):  # a billing or mailing service sending as users: its own envelope domain
        bounced = rng.random(n) < p["bounce_share"]
        mailfrom = pc.if_else(pa.array(bounced), join(join("bounce-", hex_ids(rng, n, 5)), p["bounce_domain"], sep="@"),
                              upn)
    return MailBatch(
        times=times,
        sender_from=upn,
        sender_mailfrom=mailfrom,
        sender_display=name,
        sender_oid=oid,
        sender_ip=_ips(rng, p["prefix"], p["hosts"], n),
        direction=pc.if_else(pa.array(internal), const_str("Intra-org", n), const_str("Outbound", n)),
        subject=_subjects(rng, n),
        rcpt_counts=counts,
        rcpt=rcpt,
        rcpt_oid=rcpt_oid,
        connector=p["connector"],
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, pa.array(BENIGN_URL_HOSTS)),
        attach_counts=rng.choice([0, 1], size=n, p=[0.8, 0.2]),
    )


def bulk_service(rng: np.random.Generator, tenant: Tenant, times: np.ndarray, p: dict[str, Any]) -> MailBatch:
    """A newsletter service sending as the tenant: P2 the tenant's address, P1 the service's
    bounce domain (always different), no object id, to customers and some freemail readers."""
    n = len(times)
    p2 = join(choose(rng, ("news", "marketing", "events", "newsletter"), n), tenant.primary_domain, sep="@")
    p1 = join(join("bounce-", hex_ids(rng, n, 5)), p["bounce_domain"], sep="@")
    is_customer = rng.random(n) < 0.85
    customers = pa.array(tenant.customers)
    domains = pc.if_else(
        pa.array(is_customer), take(customers, rng.integers(0, len(customers), n)), choose(rng, FREEMAIL, n)
    )
    rcpt, _ = _people(rng, domains)
    url_counts = rng.integers(2, 5, size=n)
    return MailBatch(
        times=times,
        sender_from=p2,
        sender_mailfrom=p1,
        sender_display=f"{tenant.brand.title()} News",
        sender_oid="",
        sender_ip=_ips(rng, p["prefix"], p["hosts"], n),
        direction="Outbound",
        subject=choose(rng, NEWS_SUBJECTS, n),
        rcpt_counts=np.ones(n, dtype=np.int64),
        rcpt=rcpt,
        rcpt_oid="",
        connector=p["connector"],
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, pa.array([p["click_domain"]])),
        attach_counts=np.zeros(n, dtype=np.int64),
    )


def spray(rng: np.random.Generator, tenant: Tenant, times: np.ndarray, p: dict[str, Any]) -> MailBatch:
    """Attacker mail relayed through a malicious connector: P2 a tenant domain, P1 attacker
    domains, no object id, recipients at random never-seen domains, phishing URLs."""
    n = len(times)
    tenant_dom = take(tenant.domains, rng.integers(0, len(tenant.domains), n))
    p2 = join(random_words(rng, n, 4, 9), tenant_dom, sep="@")
    attackers = pa.array(p["attacker_domains"])
    p1 = join(random_words(rng, n, 4, 9), take(attackers, rng.integers(0, len(attackers), n)), sep="@")
    if p.get("same_envelope"):  # a relay that claims the tenant's users in both headers
        p1 = p2
    counts = _rcpt_counts(rng, n, p.get("rcpt_p", (0.5, 0.3, 0.2)))
    total = int(counts.sum())
    rdom = join(random_words(rng, total, 6, 12), choose(rng, p["rcpt_tlds"], total))
    rcpt, _ = _people(rng, rdom, counts)
    phish_hosts = pa.array(p["phish_hosts"])
    url_counts = rng.choice([1, 2], size=n, p=[0.7, 0.3])
    subjects = choose(rng, PHISH_SUBJECTS, n)
    if p.get("hostile_subjects"):
        hostile = rng.random(n) < 0.05
        subjects = pc.if_else(pa.array(hostile), choose(rng, HOSTILE_SUBJECTS, n), subjects)
    detected = rng.random(n) < p.get("detect_rate", 0.15)
    return MailBatch(
        times=times,
        sender_from=p2,
        sender_mailfrom=p1,
        sender_display=choose(rng, ("IT Helpdesk", "Accounts", "Payroll", "Microsoft 365", "Security Team"), n),
        sender_oid="",
        sender_ip=_ips(rng, p["prefix"], p["hosts"], n),
        direction="Outbound",
        subject=subjects,
        rcpt_counts=counts,
        rcpt=rcpt,
        rcpt_oid="",
        connector=p["connector"],
        threat=pc.if_else(pa.array(detected), const_str("Phish", n), const_str("", n)),
        auth=AUTH_UNSIGNED,
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, phish_hosts),
        attach_counts=np.zeros(n, dtype=np.int64),
    )


def phish_known(rng: np.random.Generator, tenant: Tenant, times: np.ndarray, p: dict[str, Any]) -> MailBatch:
    """Supply-chain phishing through a hijacked connector: P2 a real user's address, P1 a
    look-alike domain, no object id, to the tenant's known customers and vendors."""
    n = len(times)
    upn, _, name = _users(rng, tenant, n)
    p1 = join(random_words(rng, n, 4, 8), choose(rng, p["lookalikes"], n), sep="@")
    counts = _rcpt_counts(rng, n, (0.7, 0.3))
    total = int(counts.sum())
    targets = pa.array(p["targets"])
    rcpt, _ = _people(rng, take(targets, rng.integers(0, len(targets), total)), counts)
    url_counts = rng.choice([0, 1], size=n, p=[0.3, 0.7])
    detected = rng.random(n) < p.get("detect_rate", 0.1)
    return MailBatch(
        times=times,
        sender_from=upn,
        sender_mailfrom=p1,
        sender_display=name,
        sender_oid="",
        sender_ip=_ips(rng, p["prefix"], p["hosts"], n),
        direction="Outbound",
        subject=_numbered(rng, SUPPLY_SUBJECTS, n),
        rcpt_counts=counts,
        rcpt=rcpt,
        rcpt_oid="",
        connector=p["connector"],
        threat=pc.if_else(pa.array(detected), const_str("Phish", n), const_str("", n)),
        auth=AUTH_UNSIGNED,
        url_counts=url_counts,
        urls=_url_batch(rng, url_counts, pa.array(p["phish_hosts"])),
        attach_counts=rng.choice([0, 1], size=n, p=[0.5, 0.5]),
        attach_files=ATTACH_PHISH,
    )


Builder = Callable[[np.random.Generator, Tenant, np.ndarray, dict[str, Any]], MailBatch]
BUILDERS: dict[str, Builder] = {
    "partner_inbound": partner_inbound,
    "tenant_relay": tenant_relay,
    "bulk_service": bulk_service,
    "spray": spray,
    "phish_known": phish_known,
}


# ---------------------------------------------------------------------------------------------
# Rows


def _per_row(value: Col, msg_index: pa.Array) -> Col:
    return value if isinstance(value, str) else pc.take(value, msg_index)


def expand(rng: np.random.Generator, batch: MailBatch) -> dict[str, pa.Table]:
    """The batch as EmailEvents (message x recipient), EmailUrlInfo and EmailAttachmentInfo rows."""
    n = batch.n
    rows = int(batch.rcpt_counts.sum())
    msg_index = pa.array(np.repeat(np.arange(n, dtype=np.int64), batch.rcpt_counts))
    rank = _ranks(batch.rcpt_counts)
    nmid = guids(rng, n)
    threat = batch.threat if isinstance(batch.threat, pa.Array) else const_str(batch.threat, n)
    direction = batch.direction if isinstance(batch.direction, pa.Array) else const_str(batch.direction, n)
    is_threat = pc.not_equal(threat, "")
    inbound_like = pc.not_equal(direction, "Outbound")
    action = pc.if_else(
        is_threat,
        pc.if_else(pc.equal(threat, "Spam"), const_str("Junked", n), const_str("Blocked", n)),
        const_str("Delivered", n),
    )
    location = pc.if_else(
        is_threat,
        pc.if_else(pc.equal(threat, "Spam"), const_str("Junk folder", n), const_str("Quarantine", n)),
        pc.if_else(inbound_like, const_str("Inbox/folder", n), const_str("On-premises/external", n)),
    )
    detection = pc.if_else(
        pc.equal(threat, "Phish"),
        const_str(DETECTION["Phish"], n),
        pc.if_else(pc.equal(threat, "Spam"), const_str(DETECTION["Spam"], n), const_str("", n)),
    )
    confidence = pc.if_else(
        pc.equal(threat, "Phish"),
        const_str(CONFIDENCE["Phish"], n),
        pc.if_else(pc.equal(threat, "Spam"), const_str(CONFIDENCE["Spam"], n), const_str("", n)),
    )
    url_counts = batch.url_counts if batch.url_counts is not None else np.zeros(n, dtype=np.int64)
    attach_counts = batch.attach_counts if batch.attach_counts is not None else np.zeros(n, dtype=np.int64)
    msg: dict[str, Any] = {
        "NetworkMessageId": nmid,
        "InternetMessageId": join("<", hex_ids(rng, n, 12), "@", domain_of(batch.sender_mailfrom), ">"),
        "SenderMailFromAddress": batch.sender_mailfrom,
        "SenderFromAddress": batch.sender_from,
        "SenderDisplayName": batch.sender_display,
        "SenderObjectId": batch.sender_oid,
        "SenderMailFromDomain": domain_of(batch.sender_mailfrom),
        "SenderFromDomain": domain_of(batch.sender_from),
        "SenderIPv4": batch.sender_ip,
        "Subject": batch.subject,
        "EmailClusterId": pa.array(rng.integers(1 << 32, 1 << 40, size=n), pa.int64()),
        "EmailDirection": direction,
        "DeliveryAction": action,
        "DeliveryLocation": location,
        "ThreatTypes": threat,
        "DetectionMethods": detection,
        "ConfidenceLevel": confidence,
        "AuthenticationDetails": batch.auth,
        "AttachmentCount": pa.array(attach_counts, pa.int32()),
        "UrlCount": pa.array(url_counts, pa.int32()),
        "EmailLanguage": "en",
        "Connectors": batch.connector,
        "LatestDeliveryLocation": location,
        "LatestDeliveryAction": action,
    }
    if batch.bcl is not None:
        msg["BulkComplaintLevel"] = batch.bcl
    cols = {k: _per_row(v, msg_index) for k, v in msg.items()}
    cols["Timestamp"] = batch.times[np.asarray(msg_index)]
    cols["RecipientEmailAddress"] = batch.rcpt
    cols["RecipientObjectId"] = batch.rcpt_oid
    cols["ReportId"] = join(cols["NetworkMessageId"], ints_to_str(rank), sep="-")
    out = {"EmailEvents": conform("EmailEvents", rows, cols)}

    url_msg = np.repeat(np.arange(n, dtype=np.int64), url_counts)
    urls = batch.urls if batch.urls is not None else const_str("", 0)
    out["EmailUrlInfo"] = conform(
        "EmailUrlInfo",
        len(url_msg),
        {
            "Timestamp": batch.times[url_msg],
            "NetworkMessageId": pc.take(nmid, pa.array(url_msg)),
            "Url": urls,
            "UrlDomain": pc.replace_substring_regex(urls, pattern=r"^https?://([^/]+).*$", replacement=r"\1"),
            "UrlLocation": "Body",
            "ReportId": join(pc.take(nmid, pa.array(url_msg)), ints_to_str(np.arange(len(url_msg))), sep="-u"),
        },
    )

    row_attach = np.asarray(pc.take(pa.array(attach_counts), msg_index)) if rows else np.empty(0, np.int64)
    att_row = np.repeat(np.arange(rows, dtype=np.int64), row_attach)
    att_msg = np.asarray(msg_index)[att_row] if rows else np.empty(0, np.int64)
    m = len(att_row)
    files = batch.attach_files
    fidx = rng.integers(0, len(files), size=m)
    att_phish = pc.equal(pc.take(threat, pa.array(att_msg)), "Phish")
    att_idx = pa.array(att_row)
    out["EmailAttachmentInfo"] = conform(
        "EmailAttachmentInfo",
        m,
        {
            "Timestamp": batch.times[att_msg],
            "NetworkMessageId": pc.take(nmid, pa.array(att_msg)),
            "SenderFromAddress": pc.take(cols["SenderFromAddress"], att_idx),
            "SenderDisplayName": _per_row(cols["SenderDisplayName"], att_idx),
            "SenderObjectId": _per_row(cols["SenderObjectId"], att_idx),
            "RecipientEmailAddress": pc.take(batch.rcpt, att_idx),
            "RecipientObjectId": _per_row(batch.rcpt_oid, att_idx),
            "FileName": take([f for f, _ in files], fidx),
            "FileType": take([t for _, t in files], fidx),
            "SHA256": hex_ids(rng, m, 32),
            "FileSize": pa.array(rng.integers(8_000, 4_000_000, size=m), pa.int64()),
            "ThreatTypes": pc.if_else(att_phish, const_str("Phish", m), const_str("", m)),
            "ReportId": join(pc.take(nmid, pa.array(att_msg)), ints_to_str(np.arange(m)), sep="-a"),
        },
    )
    return out
