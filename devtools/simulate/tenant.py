"""The simulated tenant: its domains, users, admins, locations, correspondents and connector names.

Why separate from the traffic: the tenant is a small set of facts drawn once from the seed
(a few thousand users at most, a handful of admins), which every traffic stream and every
scenario then reads. Plain Python is fine here; the mail path that uses these facts is
vectorised. Names come from word lists so they read like a real tenant's and vary by seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from devtools.simulate.arrays import guid_list, join, take

# fmt: off
FIRST_NAMES = (
    "alex", "amelia", "anna", "arjun", "ben", "carla", "chloe", "daniel", "david", "elena", "emma", "ethan",
    "fatima", "felix", "grace", "hannah", "hugo", "ines", "isaac", "jade", "james", "julia", "karim", "laura",
    "leo", "lina", "lucas", "maria", "mateo", "maya", "mila", "nadia", "noah", "olivia", "omar", "paul", "priya",
    "rafael", "rosa", "ryan", "sara", "sofia", "tom", "victor", "wei", "yara", "yusuf", "zoe", "marc", "ingrid",
)
LAST_NAMES = (
    "adams", "alvarez", "bauer", "bernard", "brown", "chen", "costa", "dubois", "evans", "fischer", "garcia",
    "green", "hansen", "hughes", "ivanova", "jansen", "johnson", "kaur", "khan", "kim", "klein", "kowalski",
    "lambert", "larsen", "lee", "lopez", "martin", "meyer", "moreau", "murphy", "nguyen", "novak", "obrien",
    "patel", "petit", "quinn", "rossi", "roux", "santos", "schmidt", "silva", "singh", "smith", "suzuki", "tanaka",
    "taylor", "varga", "walker", "weber", "young",
)
TENANT_BRANDS = (
    "contoso", "fabrikam", "northwind", "adatum", "litware", "tailspin", "woodgrove", "proseware", "wingtip",
    "lucerne", "alpineski", "fourthcoffee", "margies", "treyresearch", "cohowinery", "wideworld", "relecloud",
    "humongous", "blueyonder", "graphicdesigninst",
)
TENANT_SUFFIXES = (
    "", "group", "corp", "-intl", "hq", "-global",
)
TENANT_TLDS = (
    ".com", ".co.uk", ".de", ".fr", ".net", ".eu", ".nl", ".ca",
)
PARTNER_BRANDS = (
    "bluepeak", "northgate", "ironwood", "silverline", "brightpath", "cedarhill", "oakridge", "redfern",
    "summitview", "keystone", "harborline", "meridian", "pinecrest", "riverside", "stonebridge", "westfield",
    "goldcrest", "clearwater", "highland", "lakeside", "copperleaf", "eastwind", "greenfield", "sunharbor",
    "falconry", "maplewood", "northstar", "openfield", "quarry", "rockport", "seabright", "tidewater", "upland",
    "valeview", "whitestone", "yellowpine", "ashford", "birchwood", "crestline", "dunmore",
)
PARTNER_SECTORS = (
    "logistics", "foods", "pharma", "consulting", "legal", "bank", "insurance", "energy", "engineering", "medical",
    "retail", "systems", "partners", "capital", "textiles", "marine", "labs", "media", "freight", "supply",
)
PARTNER_TLDS = (
    ".com", ".net", ".co.uk", ".de", ".fr", ".eu", ".io", ".nl", ".es", ".it",
)
FREEMAIL = (
    "gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "proton.me", "gmx.de",
)
NEWSLETTERS = (
    ("linkedin.com", "bounce.linkedin.com"), ("github.com", "github.com"), ("zoom.us", "zoom.us"),
    ("salesforce.com", "bounce.salesforce.com"), ("atlassian.net", "mail-us.atlassian.net"),
    ("docusign.net", "docusign.net"), ("mailchimpapp.net", "mail154.suw121.mcdlv.net"),
)
"""Inbound newsletter senders (header From domain, envelope domain): many mismatch, as real ones do."""
BULK_SERVICES = (
    "mailsprout", "sendwave", "campaignly", "newsloop", "blastpoint", "letterhub",
)
SPAM_TLDS = (
    ".xyz", ".top", ".info", ".online", ".site",
)
"""TLDs of spray recipient and attacker domains (never used by known correspondents)."""
SLOW_TLDS = (
    ".shop", ".click", ".live", ".buzz", ".icu",
)
"""TLDs of the slow abuse's domains (disjoint from the spray's, so the two never share one)."""
RARE_TLDS = (
    ".com", ".org", ".net",
)
# (country code, city, ISP, UTC offset in hours)
HOME_LOCATIONS = (
    ("FR", "Paris", "Orange S.A.", 1), ("DE", "Frankfurt am Main", "Deutsche Telekom AG", 1),
    ("GB", "London", "British Telecommunications PLC", 0), ("US", "Seattle", "Comcast Cable", -8),
    ("NL", "Amsterdam", "KPN B.V.", 1), ("CA", "Toronto", "Bell Canada", -5),
    ("ES", "Madrid", "Telefonica de Espana", 1), ("SE", "Stockholm", "Telia Company AB", 1),
    ("AU", "Sydney", "Telstra Corporation", 10), ("JP", "Tokyo", "NTT Communications", 9),
)
FOREIGN_LOCATIONS = (
    ("NG", "Lagos", "MainOne Cable Company"), ("RU", "Moscow", "Rostelecom"), ("VN", "Hanoi", "Viettel Group"),
    ("BR", "Sao Paulo", "Telefonica Brasil"), ("ID", "Jakarta", "PT Telkom Indonesia"),
    ("RO", "Bucharest", "M247 Europe SRL"), ("UA", "Kyiv", "Kyivstar"), ("IN", "Mumbai", "Reliance Jio"),
    ("TR", "Istanbul", "Turk Telekom"), ("KZ", "Almaty", "Kazakhtelecom"), ("PK", "Karachi", "PTCL"),
    ("CN", "Shenzhen", "China Telecom"), ("MA", "Casablanca", "Maroc Telecom"), ("TH", "Bangkok", "True Internet"),
    ("AR", "Buenos Aires", "Telecom Argentina"),
)
# First octets for made-up public /24s (no private, loopback, CGNAT or multicast ranges).
PUBLIC_FIRST_OCTETS = (
    31, 37, 41, 45, 46, 62, 77, 78, 80, 81, 82, 85, 86, 88, 89, 91, 92, 93, 94, 95, 102, 103, 105, 109, 110, 112,
    114, 118, 121, 122, 125, 176, 177, 178, 179, 181, 185, 186, 187, 188, 189, 190, 193, 194, 195, 197, 200, 201,
    203, 212, 213, 217,
)
ATTACKER_CONNECTOR_NAMES = (
    "Inbound Relay Fix", "Hybrid Sync Connector", "Mail Flow Repair", "O365 Relay Service",
    "Exchange Routing Update", "Temp Relay", "Mailbox Sync Inbound", "Security Gateway",
)
MIGRATION_SOURCES = (
    "Legacy Exchange 2016", "Google Workspace", "Lotus Notes", "Zimbra", "Exchange 2013",
)
HOSTILE_PAYLOADS = (
    "\"Quoted\"", "\" | take 1 //", "line\nbreak", "back\\slash", "<script>window.__pwned=1</script>",
    "'); alert(1);//", "{{x}}", "Zürich 東京 ✉ Ünïcødé", "a/b\\c#d?e",
    "\"><img src=x onerror=\"window.__pwned=1\">", "</script><script>window.__pwned=1</script>",
    "<svg onload=\"window.__pwned=1\">", "\u202eRTL\x1b[31m",
)
"""Payloads that hostile-names mode puts into connector names (all of them, whatever the count)."""
HOSTILE_SUBJECTS = (
    "<img src=x onerror=\"window.__pwned=1\">Invoice", "Payment\r\nBcc: victim@example.com",
    "\"; DROP TABLE verdicts; --",
)
# fmt: on


@dataclass(frozen=True)
class Location:
    """Where an account signs in from: a country, a city, an ISP and a /24 of its addresses."""

    country: str
    city: str
    isp: str
    prefix: tuple[int, int, int]

    def ip(self, host: int) -> str:
        return f"{self.prefix[0]}.{self.prefix[1]}.{self.prefix[2]}.{host}"

    @property
    def cidr(self) -> str:
        return f"{self.prefix[0]}.{self.prefix[1]}.{self.prefix[2]}.0/24"

    def label(self) -> dict[str, str]:
        return {"countryCode": self.country, "city": self.city, "isp": self.isp, "ipRange": self.cidr}


@dataclass(frozen=True)
class Admin:
    """An Exchange admin: identity, home location, and the part they play in the scenarios."""

    role: str
    upn: str
    object_id: str
    display_name: str
    home: Location

    @property
    def account_name(self) -> str:
        return self.upn.split("@", 1)[0]

    @property
    def domain(self) -> str:
        return self.upn.split("@", 1)[1]

    def label(self) -> dict[str, str]:
        return {
            "upn": self.upn,
            "objectId": self.object_id,
            "displayName": self.display_name,
            "role": self.role,
        }


@dataclass
class Tenant:
    """Facts about the simulated organisation, drawn once from the seed."""

    brand: str
    domains: list[str]
    tenant_id: str
    tz_offset: int
    office: Location
    datacenter: Location
    user_upns: pa.Array
    user_oids: pa.Array
    user_names: pa.Array
    correspondents: list[str]
    """Known external domains (customers, vendors, partners) the tenant mails all through history."""
    partner_names: list[str]
    """Each correspondent's name as people write it ("Bluepeak"), for connector names."""
    customers: list[str]
    admins: dict[str, Admin]
    foreign: list[Location]
    """Never-seen locations, one per scenario that needs one (drawn without replacement)."""
    prefixes_used: set[tuple[int, int, int]] = field(default_factory=set)

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    @property
    def n_users(self) -> int:
        return len(self.user_upns)

    @property
    def onmicrosoft(self) -> str:
        return f"{self.brand}.onmicrosoft.com"


def new_prefix(rng: np.random.Generator, used: set[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A made-up public /24 not used yet in this tenant."""
    while True:
        p = (int(rng.choice(PUBLIC_FIRST_OCTETS)), int(rng.integers(1, 255)), int(rng.integers(0, 255)))
        if p not in used:
            used.add(p)
            return p


def _tenant_domains(rng: np.random.Generator) -> tuple[str, list[str]]:
    brand = str(rng.choice(TENANT_BRANDS))
    suffix = str(rng.choice(TENANT_SUFFIXES))
    tlds = list(rng.permutation(TENANT_TLDS))
    domains = [f"{brand}{suffix}{tlds[0]}"]
    n = int(rng.integers(1, 4))
    if n >= 2:
        domains.append(f"{brand}{tlds[1]}" if suffix else f"{brand}-mail{tlds[1]}")
    if n >= 3:
        domains.append(f"{brand}.onmicrosoft.com")
    return brand, domains


def _correspondents(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    """(domains, names) of *n* external organisations, e.g. ``bluepeak-logistics.de``, ``Bluepeak``."""
    domains: list[str] = []
    brands = [str(b) for b in rng.permutation(PARTNER_BRANDS)[:n]]
    for brand in brands:
        sector = str(rng.choice(PARTNER_SECTORS))
        tld = str(rng.choice(PARTNER_TLDS))
        joiner = "-" if rng.random() < 0.5 else ""
        domains.append(f"{brand}{joiner}{sector}{tld}")
    return domains, [b.title() for b in brands]


def _users(rng: np.random.Generator, n: int, domains: list[str]) -> tuple[pa.Array, pa.Array, pa.Array]:
    grid = len(FIRST_NAMES) * len(LAST_NAMES)
    combos = rng.permutation(grid)[np.arange(n) % grid]
    first = take(FIRST_NAMES, combos // len(LAST_NAMES))
    last = take(LAST_NAMES, combos % len(LAST_NAMES))
    suffix = [str(i // grid) if i >= grid else "" for i in range(n)]
    dom_p = [0.85, 0.15] if len(domains) >= 2 else [1.0]
    dom = take(domains, rng.choice(len(dom_p), size=n, p=dom_p))
    local = join(first, last, sep=".")
    local = join(local, pa.array(suffix, pa.string()), sep="")
    upns = join(local, dom, sep="@")
    display = join(
        pa.array([s.title() for s in first.to_pylist()]),
        pa.array([s.title() for s in last.to_pylist()]),
        sep=" ",
    )
    return upns, pa.array(guid_list(rng, n)), display


ADMIN_ROLES = ("usual", "spray_victim", "supply_actor", "slow_actor", "brute_target")


def build_tenant(rng: np.random.Generator, *, n_users: int, n_correspondents: int) -> Tenant:
    """Draw the tenant's facts: every name, address and location depends on *rng* only."""
    brand, domains = _tenant_domains(rng)
    country, city, isp, tz = HOME_LOCATIONS[int(rng.integers(len(HOME_LOCATIONS)))]
    used: set[tuple[int, int, int]] = set()
    office = Location(country, city, isp, new_prefix(rng, used))
    datacenter = Location(country, city, isp, new_prefix(rng, used))
    upns, oids, names = _users(rng, n_users, domains)
    correspondents, partner_names = _correspondents(rng, n_correspondents)
    customers = correspondents[: max(3, len(correspondents) // 2)]
    admins: dict[str, Admin] = {}
    combos = rng.choice(len(FIRST_NAMES) * len(LAST_NAMES), size=len(ADMIN_ROLES), replace=False)
    for role, combo, oid in zip(ADMIN_ROLES, combos, guid_list(rng, len(ADMIN_ROLES)), strict=True):
        first, last = FIRST_NAMES[combo // len(LAST_NAMES)], LAST_NAMES[combo % len(LAST_NAMES)]
        home = office if role == "usual" else Location(country, city, isp, new_prefix(rng, used))
        admins[role] = Admin(
            role=role,
            upn=f"adm-{first}.{last}@{domains[0]}",
            object_id=oid,
            display_name=f"{first.title()} {last.title()} (Admin)",
            home=home,
        )
    picks = rng.choice(len(FOREIGN_LOCATIONS), size=6, replace=False)
    foreign = [Location(*FOREIGN_LOCATIONS[int(i)], new_prefix(rng, used)) for i in picks]
    return Tenant(
        brand=brand,
        domains=domains,
        tenant_id=guid_list(rng, 1)[0],
        tz_offset=tz,
        office=office,
        datacenter=datacenter,
        user_upns=upns,
        user_oids=oids,
        user_names=names,
        correspondents=correspondents,
        partner_names=partner_names,
        customers=customers,
        admins=admins,
        foreign=foreign,
        prefixes_used=used,
    )


def add_hostile_payloads(rng: np.random.Generator, names: dict[str, str]) -> dict[str, str]:
    """Every payload in :data:`HOSTILE_PAYLOADS` appended to some connector's name (round robin
    over a seeded order, so fewer connectors than payloads carry two)."""
    keys = [str(k) for k in rng.permutation(sorted(names))]
    out = dict(names)
    for i, payload in enumerate(HOSTILE_PAYLOADS):
        key = keys[i % len(keys)]
        out[key] = f"{out[key]} {payload}"
    return out
