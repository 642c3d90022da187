"""A connector's domains split into the tenant's own, its correspondents and never-seen ones
(grading/grader/domains.py), from ``connector_domains.kql``'s hourly rows: what the recipients and
origins checks read, over any span of hours, stored or read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from grading.grader.domains import correspondent_domains, recipient_profile, sender_domains

H0 = datetime(2026, 11, 19, 10, tzinfo=UTC)


def row(part: str, hour: int, domains: dict[str, tuple[int, int, int]], *, connector: str = "Relay",
        unlisted: tuple[int, int] = (0, 0)) -> dict:
    """One hourly row as the query returns it; *unlisted*: domains and messages beyond its listing cap."""
    return {
        "Connector": connector, "Hour": H0 + timedelta(hours=hour), "Part": part,
        "DomainCount": len(domains) + unlisted[0],
        "Messages": sum(c[0] for c in domains.values()) + unlisted[1],
        "Mismatched": sum(c[1] for c in domains.values()),
        "ThreatMessages": sum(c[2] for c in domains.values()),
        "Domains": [f"{d} {m} {x} {t}" for d, (m, x, t) in domains.items()],
    }


def test_recipients_split_into_own_known_and_never_seen_over_several_hours() -> None:
    rows = [
        row("Recipient", 0, {"contoso.com": (4, 0, 0), "northwind.com": (2, 1, 0), "new1.example": (1, 0, 1)}),
        row("Recipient", 1, {"northwind.com": (3, 0, 0), "new2.example": (5, 5, 0)}),
    ]
    got = {(r["Internal"], r["Known"]): r for r in recipient_profile(
        rows, tenant_domains=["Contoso.com"], correspondents={"northwind.com"}, partner_domains=["partner.example"])}
    assert got[(True, False)]["Domains"] == 1 and got[(True, False)]["Messages"] == 4
    known = got[(False, True)]
    assert (known["Domains"], known["Messages"], known["Mismatched"]) == (1, 5, 1)  # one domain, two hours added up
    never = got[(False, False)]
    assert (never["Domains"], never["Messages"], never["Mismatched"], never["ThreatMessages"]) == (2, 6, 5, 1)
    assert never["SampleDomains"] == ["new2.example", "new1.example"]  # the busiest first


def test_a_policy_partner_is_a_known_recipient_but_not_a_known_sender() -> None:
    rows = [row("Recipient", 0, {"partner.example": (2, 0, 0)}), row("Header", 0, {"partner.example": (2, 0, 0)})]
    recipients = recipient_profile(rows, tenant_domains=[], correspondents=set(), partner_domains=["PARTNER.example"])
    assert [(r["Known"], r["Domains"]) for r in recipients] == [(True, 1)]
    senders = sender_domains(rows, tenant_domains=[], correspondents=set())
    assert [(r["Part"], r["Domains"], r["KnownDomains"]) for r in senders] == [("Header", 1, 0)]


def test_domains_beyond_the_hourly_listing_cap_count_as_never_seen() -> None:
    """A spray to more domains than an hour lists cannot be looked up: counted, as never seen."""
    rows = [row("Recipient", 0, {"northwind.com": (1, 0, 0), "spray-1.example": (1, 0, 0)}, unlisted=(998, 998))]
    got = {r["Known"]: r for r in recipient_profile(rows, tenant_domains=[], correspondents={"northwind.com"})}
    assert got[False]["Domains"] == 999 and got[False]["Messages"] == 999
    assert got[True]["Domains"] == 1


def test_sender_domains_leave_out_the_tenant_and_count_correspondents() -> None:
    rows = [
        row("Header", 0, {"contoso.com": (3, 0, 0)}),
        row("Envelope", 0, {"contoso.com": (1, 0, 0), "bounces.esp.example": (2, 2, 0), "northwind.com": (1, 0, 0)}),
    ]
    got = sender_domains(rows, tenant_domains=["contoso.com"], correspondents={"northwind.com"})
    assert [(r["Part"], r["Domains"], r["Messages"], r["KnownDomains"]) for r in got] == [("Envelope", 2, 3, 1)]


def test_a_hostile_domain_with_spaces_keeps_its_counts() -> None:
    """Domains come from message headers (the sender's choice): the counts are the last three fields."""
    rows = [row("Recipient", 0, {'evil.example 9 9 9 "; drop': (1, 0, 0)})]
    [never] = recipient_profile(rows, tenant_domains=[], correspondents=set())
    assert (never["Domains"], never["Messages"], never["ThreatMessages"]) == (1, 1, 0)
    assert never["SampleDomains"] == ['evil.example 9 9 9 "; drop']


def test_correspondents_leave_out_the_tenants_own_domains() -> None:
    rows = [{"Domain": "Northwind.com"}, {"Domain": "contoso.com"}, {"Domain": ""}]
    assert correspondent_domains(rows, ["contoso.com"]) == {"northwind.com"}


def test_a_spray_of_the_longest_domains_is_stored_in_pieces_that_add_up_to_it(
        storage_connection_string: str, unique_name: str) -> None:
    """1,000 domains of 253 characters (the sender's choice) in one hourly row: over what a stored part
    holds, so the row is cut; the pieces fit the entity limits and split exactly as the whole row."""
    from grading.grader.domains import split_listing
    from grading.storage.aggregates import PART_CHARS, HourlyAggregates
    from grading.storage.connection import StorageConnection
    from grading.storage.tables import GraderTables

    long = {f"{i:04d}" + "x" * 241 + ".example": (2, 1, 0) for i in range(1000)}
    whole = row("Recipient", 0, {"northwind.com": (3, 0, 0), **long}, unlisted=(500, 700))
    pieces = split_listing([whole], PART_CHARS // 2)
    assert len(pieces) > 1 and all(len(json_text(p)) < PART_CHARS for p in pieces)
    known = {"northwind.com"}
    assert recipient_profile(pieces, tenant_domains=[], correspondents=known) == recipient_profile(
        [whole], tenant_domains=[], correspondents=known)
    store = HourlyAggregates(GraderTables.open(StorageConnection(storage_connection_string), unique_name).aggregates)
    store.write_hour("connector_domains", H0, pieces, final=True, context="")
    stored, hours = store.rows("connector_domains", H0, H0 + timedelta(hours=1))
    assert hours == {H0}
    assert recipient_profile(stored, tenant_domains=[], correspondents=known) == recipient_profile(
        [whole], tenant_domains=[], correspondents=known)


def json_text(value: dict) -> str:
    import json

    return json.dumps(value, default=str)
