"""The simulated tenant: deterministic, schema-exact, and each labelled scenario really in the data.

Every check reads the written files back (pyarrow, DuckDB SQL, the csv and json modules) and
compares them with the labels, so a label that lies about the data fails here, not in a
grader test that trusts it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from devtools.simulate import Labels, add_simulate_parser, labels_path, simulate
from devtools.simulate.tenant import HOSTILE_PAYLOADS, build_tenant
from grading.hunting.rendering import Dialect, load_schema

TABLES = (
    "EmailEvents",
    "CloudAppEvents",
    "IdentityLogonEvents",
    "EmailUrlInfo",
    "EmailAttachmentInfo",
    "AlertInfo",
    "AlertEvidence",
)
ARROW = {
    "string": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "long": pa.int64(),
    "int": pa.int32(),
    "bool": pa.bool_(),
    "real": pa.float64(),
    "dynamic": pa.string(),
}
SMALL = {"days": 4, "emails_per_day": 300, "connectors": 8}
HOUR = 3600


def _sim(root: Path, seed: int, **kw: object) -> Labels:
    args = {**SMALL, **kw}
    return simulate(root / "export", seed=seed, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim")


@pytest.fixture(scope="module")
def lab(root: Path) -> Labels:
    return _sim(root / "a", 11)


@pytest.fixture(scope="module")
def db(lab: Labels) -> duckdb.DuckDBPyConnection:
    """The parquet export as DuckDB views, times as epoch seconds in column ``t``."""
    con = duckdb.connect()
    folder = lab.path.parent / "export"
    for table in TABLES:
        path = (folder / f"{table}.parquet").as_posix()
        con.execute(f"CREATE VIEW {table} AS SELECT *, epoch(Timestamp) AS t FROM read_parquet('{path}')")
    return con


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _rows(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> list[tuple]:
    return con.execute(sql, list(params)).fetchall()


def _one(con: duckdb.DuckDBPyConnection, sql: str, *params: object) -> object:
    return con.execute(sql, list(params)).fetchone()[0]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _window(lab: Labels) -> tuple[float, float]:
    return _epoch(lab.data["window"]["start"]), _epoch(lab.data["window"]["end"])


# ---------------------------------------------------------------------------------------------
# Determinism, layout, schema


def test_same_seed_and_arguments_give_identical_bytes(root: Path, lab: Labels) -> None:
    again = _sim(root / "b", 11)
    assert _digest(lab.path.parent / "export") == _digest(again.path.parent / "export")
    assert lab.path.read_bytes() == again.path.read_bytes()


def test_different_seeds_give_different_tenants_times_and_counts(root: Path, lab: Labels) -> None:
    other = _sim(root / "c", 12)
    assert _digest(lab.path.parent / "export") != _digest(other.path.parent / "export")
    names = {c["name"] for c in lab.data["connectors"]}
    other_names = {c["name"] for c in other.data["connectors"]}
    assert names != other_names
    assert lab.tenant_domains != other.tenant_domains
    assert lab.known_domains != other.known_domains
    for sid in ("compromised_admin_spray", "slow_abuse", "supply_chain"):
        assert lab.scenario(sid)["times"] != other.scenario(sid)["times"]
        assert lab.scenario(sid)["mail"]["messagesInWindow"] != other.scenario(sid)["mail"]["messagesInWindow"]
    assert (
        lab.scenario("compromised_admin_spray")["attackerIp"] != other.scenario("compromised_admin_spray")["attackerIp"]
    )


def test_seeds_vary_countries_and_domains_of_tenant_and_attackers() -> None:
    homes, attackers, domains = set(), set(), set()
    for seed in range(12):
        t = build_tenant(np.random.default_rng([seed, 1]), n_users=20, n_correspondents=12)
        homes.add(t.office.country)
        attackers.add(t.foreign[0].country)
        domains.add(t.primary_domain)
        assert t.office.country not in {loc.country for loc in t.foreign}, "attackers must come from abroad"
    assert len(homes) >= 4 and len(attackers) >= 4 and len(domains) >= 8


def test_every_table_has_every_schema_column_with_its_type(lab: Labels) -> None:
    schema = load_schema(Dialect.ADVANCED_HUNTING)
    folder = lab.path.parent / "export"
    for table in TABLES:
        got = pq.read_schema(folder / f"{table}.parquet")
        want = [(c["name"], ARROW[c["type"]]) for c in schema[table]]
        assert [(f.name, f.type) for f in got] == want, table
        assert pq.read_metadata(folder / f"{table}.parquet").num_rows == lab.data["tables"][table] > 0, table


def test_strings_are_never_null_and_dynamic_columns_hold_json(db: duckdb.DuckDBPyConnection) -> None:
    schema = load_schema(Dialect.ADVANCED_HUNTING)
    for table in ("EmailEvents", "CloudAppEvents", "IdentityLogonEvents", "AlertEvidence"):
        for col in schema[table]:
            if col["type"] == "string":
                assert _one(db, f'SELECT count(*) FROM {table} WHERE "{col["name"]}" IS NULL') == 0
    raw = [json.loads(r[0]) for r in _rows(db, "SELECT RawEventData FROM CloudAppEvents WHERE IsAdminOperation")]
    assert raw and all(isinstance(r["Parameters"], list) for r in raw)
    assert all(
        isinstance(json.loads(r[0]), dict)
        for r in _rows(
            db, "SELECT AdditionalFields FROM IdentityLogonEvents WHERE Application <> 'Active Directory' LIMIT 50"
        )
    )


def test_labels_sit_beside_the_folder_never_inside(lab: Labels) -> None:
    folder = lab.path.parent / "export"
    assert lab.path == labels_path(folder) and lab.path.parent == folder.parent and lab.path.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    assert Labels.load(lab.path).data == lab.data


def test_graded_window_is_the_last_24_hours_ending_at_the_latest_event(
    db: duckdb.DuckDBPyConnection, lab: Labels
) -> None:
    start, end = _window(lab)
    assert end - start == 24 * HOUR
    assert _one(db, "SELECT max(t) FROM EmailEvents") == end == _epoch(lab.data["latestEvent"])
    assert _one(db, "SELECT max(t) FROM CloudAppEvents") < end
    assert _one(db, "SELECT min(t) FROM EmailEvents") >= end - SMALL["days"] * 24 * HOUR


def test_one_row_per_message_and_recipient(db: duckdb.DuckDBPyConnection) -> None:
    multi = _one(db, "SELECT count(*) FROM (SELECT NetworkMessageId FROM EmailEvents GROUP BY 1 HAVING count(*) > 1)")
    assert multi > 0
    dup = _one(
        db,
        "SELECT count(*) FROM (SELECT NetworkMessageId, RecipientEmailAddress FROM EmailEvents "
        "GROUP BY ALL HAVING count(*) > 1)",
    )
    assert dup == 0
    varies = _one(
        db,
        "SELECT count(*) FROM (SELECT NetworkMessageId FROM EmailEvents GROUP BY 1 HAVING "
        "count(DISTINCT Subject) > 1 OR count(DISTINCT Timestamp) > 1 OR count(DISTINCT Connectors) > 1)",
    )
    assert varies == 0


def test_label_counts_match_the_files(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    start, _ = _window(lab)
    names = {c["name"] for c in lab.data["connectors"]}
    assert names == {r[0] for r in _rows(db, "SELECT DISTINCT Connectors FROM EmailEvents WHERE Connectors <> ''")}
    assert len(names) == SMALL["connectors"]
    for c in lab.data["connectors"]:
        n = _one(
            db,
            "SELECT count(DISTINCT NetworkMessageId) FROM EmailEvents WHERE Connectors = ? AND t >= ?",
            c["name"],
            start,
        )
        assert n == c["mail"]["messagesInWindow"] > 0, c["name"]
        mm = _one(
            db,
            "SELECT count(DISTINCT NetworkMessageId) FROM EmailEvents WHERE Connectors = ? AND t >= ? "
            "AND SenderFromDomain <> SenderMailFromDomain",
            c["name"],
            start,
        )
        assert mm == c["mail"]["p1p2MismatchMessagesInWindow"], c["name"]
    for table, rows in lab.data["tables"].items():
        assert _one(db, f"SELECT count(*) FROM {table}") == rows


# ---------------------------------------------------------------------------------------------
# Scenarios as described


def _hourly(db: duckdb.DuckDBPyConnection, connector: str, lo: float, hi: float) -> list[int]:
    """Distinct messages per clock hour, zero hours included, for hours wholly inside [lo, hi)."""
    counts = dict(
        _rows(
            db,
            "SELECT floor(t / 3600)::BIGINT, count(DISTINCT NetworkMessageId) FROM EmailEvents "
            "WHERE Connectors = ? GROUP BY 1",
            connector,
        )
    )
    first, last = int(-(-lo // HOUR)), int(hi // HOUR)
    return [counts.get(h, 0) for h in range(first, last)]


def _history_domains(db: duckdb.DuckDBPyConnection, before: float) -> set[str]:
    rows = _rows(
        db,
        "SELECT DISTINCT lower(split_part(RecipientEmailAddress, '@', 2)) FROM EmailEvents WHERE t < ? "
        "UNION SELECT DISTINCT SenderFromDomain FROM EmailEvents WHERE t < ? "
        "UNION SELECT DISTINCT SenderMailFromDomain FROM EmailEvents WHERE t < ?",
        before,
        before,
        before,
    )
    return {r[0] for r in rows}


def _params(raw: str) -> dict[str, str]:
    return {p["Name"]: p["Value"] for p in json.loads(raw)["Parameters"]}


def test_compromised_admin_spray(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("compromised_admin_spray")
    assert (s["expectedClassification"], s["expectedDetermination"], s["connectorType"]) == (
        "truePositive",
        "compromisedAccount",
        "Inbound",
    )
    upn, ip, name = s["admin"]["upn"], s["attackerIp"], s["connector"]
    assert upn != lab.usual_admin["upn"]
    start, end = _window(lab)
    # >= 150 failures in one 60 s bin, then a success within 10 s of the last one, same IP and ISP.
    bins = _rows(
        db,
        "SELECT floor(t / 60), count(*), max(t), any_value(Isp), count(DISTINCT Application) "
        "FROM IdentityLogonEvents WHERE AccountUpn = ? AND IPAddress = ? AND ActionType = 'LogonFailed' "
        "GROUP BY 1",
        upn,
        ip,
    )
    assert len(bins) == 1 and bins[0][1] >= 150 and bins[0][1] == s["counts"]["logonFailures"]
    last_fail, isp = bins[0][2], bins[0][3]
    ok = _rows(
        db,
        "SELECT t, Isp, Application, Location FROM IdentityLogonEvents WHERE AccountUpn = ? "
        "AND ActionType = 'LogonSuccess' AND IPAddress = ?",
        upn,
        ip,
    )
    assert len(ok) == 1 and 0 < ok[0][0] - last_fail <= 10 and ok[0][1] == isp
    assert ok[0][2] in ("Microsoft 365", "Exchange Online") and ok[0][3] == s["location"]["countryCode"]
    seen = _rows(
        db,
        "SELECT count(*) FROM IdentityLogonEvents WHERE t < ? AND (Isp = ? OR Location = ? OR IPAddress = ?)",
        bins[0][2] - 60,
        isp,
        ok[0][3],
        ip,
    )
    assert seen[0][0] == 0, "the attacker's country, ISP and IP must never have been seen before"
    # The connector is created from the same place 1-3 h later, inside the window.
    created = _rows(
        db,
        "SELECT t, IPAddress, CountryCode, Isp, RawEventData, AccountObjectId FROM CloudAppEvents "
        "WHERE ActionType = 'New-InboundConnector' AND ObjectName = ?",
        name,
    )
    assert len(created) == 1
    t_created, c_ip, c_country, c_isp, raw, oid = created[0]
    assert (c_ip, c_country, c_isp, oid) == (ip, s["location"]["countryCode"], isp, s["admin"]["objectId"])
    assert start <= t_created and HOUR <= t_created - ok[0][0] <= 3 * HOUR
    params = _params(raw)
    assert params["Name"] == name and params["Enabled"] == "True" and params["ConnectorType"] == "OnPremises"
    assert json.loads(raw)["Operation"] == "New-InboundConnector"
    # The spray: outbound, P2 a tenant domain, P1 foreign, no object id, never-seen recipients.
    mail = _rows(
        db,
        "SELECT EmailDirection, SenderFromDomain, SenderMailFromDomain, SenderObjectId, "
        "lower(split_part(RecipientEmailAddress, '@', 2)), SenderIPv4, t, ThreatTypes, NetworkMessageId "
        "FROM EmailEvents WHERE Connectors = ?",
        name,
    )
    assert {r[0] for r in mail} == {"Outbound"}
    assert {r[1] for r in mail} <= set(lab.tenant_domains)
    assert all(r[2] != r[1] and r[3] == "" for r in mail)
    assert min(r[6] for r in mail) > t_created
    assert all(r[5].startswith(s["location"]["ipRange"].rsplit(".", 1)[0] + ".") for r in mail)
    history = _history_domains(db, start)
    recipient_domains = {r[4] for r in mail}
    assert len(recipient_domains) > 100 and not recipient_domains & history
    assert not recipient_domains & set(lab.known_domains)
    hourly = _hourly(db, name, min(r[6] for r in mail), end)
    assert min(hourly) >= 150, "hundreds to thousands of messages an hour"
    assert any(r[7] == "Phish" for r in mail)
    per_msg = Counter(r[8] for r in mail)
    assert set(per_msg.values()) <= {1, 2, 3}
    urls = _one(
        db,
        "SELECT count(DISTINCT u.NetworkMessageId) FROM EmailUrlInfo u JOIN EmailEvents e USING "
        "(NetworkMessageId) WHERE e.Connectors = ?",
        name,
    )
    assert urls == len(per_msg)
    # The alert names the connector and the admin.
    alerts = _rows(db, "SELECT AlertId, Title, ServiceSource FROM AlertInfo WHERE AlertId IN ?", s["alertIds"])
    assert alerts and alerts[0][1] == "Suspicious connector activity" and "Office 365" in alerts[0][2]
    evidence = _rows(
        db,
        "SELECT EntityType, AccountUpn, AdditionalFields, NetworkMessageId, RemoteIP "
        "FROM AlertEvidence WHERE AlertId = ?",
        alerts[0][0],
    )
    assert any(r[0] == "User" and r[1] == upn for r in evidence)
    assert any(r[2] and json.loads(r[2]).get("ConnectorName") == name for r in evidence)
    assert any(r[0] == "Ip" and r[4] == ip for r in evidence)
    msg_ids = {r[3] for r in evidence if r[0] == "MailMessage"}
    assert msg_ids and msg_ids <= set(per_msg)


def test_supply_chain(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("supply_chain")
    assert (s["expectedClassification"], s["expectedDetermination"]) == ("truePositive", "phishing")
    name = s["connector"]
    start, end = _window(lab)
    change = _rows(
        db,
        "SELECT t, RawEventData, CountryCode, Isp, AccountObjectId FROM CloudAppEvents "
        "WHERE ActionType LIKE '%Connector' AND ObjectName = ?",
        name,
    )
    assert len(change) == 1, "a long-standing connector: only the scenario's change is in range"
    t_change, raw, country, isp, oid = change[0]
    assert json.loads(raw)["Operation"] == "Set-InboundConnector" and _params(raw)["Identity"] == name
    assert start < t_change < end and oid == s["admin"]["objectId"]
    assert country == s["location"]["countryCode"] != lab.data["tenant"]["office"]["countryCode"]
    before_admin = _one(
        db,
        "SELECT count(*) FROM IdentityLogonEvents WHERE (Location = ? OR Isp = ?) AND t < ?",
        country,
        isp,
        t_change - HOUR,
    )
    assert before_admin == 0, "the change comes from a never-seen country and ISP"
    known = set(lab.known_domains)
    tenant = set(lab.tenant_domains)
    before = _rows(
        db,
        "SELECT SenderFromDomain, SenderMailFromDomain, SenderObjectId, SenderIPv4, "
        "lower(split_part(RecipientEmailAddress, '@', 2)), t FROM EmailEvents WHERE Connectors = ? "
        "AND t < ?",
        name,
        t_change,
    )
    assert min(r[5] for r in before) < start - 2 * 24 * HOUR, "steady traffic for the whole history"
    assert all(r[0] == r[1] and r[0] in tenant and r[2] != "" for r in before)
    assert {r[4] for r in before} <= known | tenant
    old_ips = {r[3] for r in before}
    after = _rows(
        db,
        "SELECT SenderFromDomain, SenderMailFromDomain, SenderObjectId, SenderIPv4, "
        "lower(split_part(RecipientEmailAddress, '@', 2)) FROM EmailEvents WHERE Connectors = ? "
        "AND t >= ? AND SenderFromDomain <> SenderMailFromDomain",
        name,
        t_change,
    )
    assert len(after) >= 20
    assert all(r[0] in tenant and r[2] == "" and r[3] not in old_ips for r in after)
    assert {r[4] for r in after} <= known, "phishing goes to the tenant's known customers and vendors"
    assert {r[3] for r in after} <= set(s["newSourceIps"]) and set(s["newSourceIps"]) <= set(
        _params(raw)["SenderIPAddresses"].split(";")
    )


def test_slow_abuse_never_reaches_100_an_hour(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("slow_abuse")
    assert (s["expectedClassification"], s["expectedDetermination"]) == ("truePositive", "phishing")
    name = s["connector"]
    _, end = _window(lab)
    created = _rows(
        db, "SELECT t, ActionType, AccountObjectId, CountryCode FROM CloudAppEvents WHERE ObjectName = ?", name
    )
    assert len(created) == 1
    t_created, action, oid, country = created[0]
    assert action == f"New-{s['connectorType']}Connector"
    assert 2 * 24 * HOUR <= end - t_created <= 5 * 24 * HOUR
    assert oid == s["admin"]["objectId"] != lab.usual_admin["objectId"]
    assert country != lab.data["tenant"]["office"]["countryCode"]
    assert (
        _one(
            db,
            "SELECT count(*) FROM IdentityLogonEvents WHERE AccountUpn = ? AND ActionType = 'LogonFailed' "
            "AND Location = ?",
            s["admin"]["upn"],
            country,
        )
        == 0
    ), "no failure burst"
    first = _one(db, "SELECT min(t) FROM EmailEvents WHERE Connectors = ?", name)
    hourly = _hourly(db, name, first, end)
    assert len(hourly) >= 40 and max(hourly) < 100 and min(hourly) >= 10
    rows = _rows(
        db,
        "SELECT SenderFromDomain, SenderMailFromDomain, SenderObjectId, "
        "lower(split_part(RecipientEmailAddress, '@', 2)) FROM EmailEvents WHERE Connectors = ?",
        name,
    )
    assert all(r[0] != r[1] and r[2] == "" for r in rows)
    assert not {r[3] for r in rows} & (set(lab.known_domains) | _history_domains(db, t_created))


def test_busy_partner_is_always_above_100_an_hour(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("busy_partner")
    assert s["expectedClassification"] == "falsePositive" and s["connectorType"] == "Inbound"
    name = s["connector"]
    start, end = _window(lab)
    assert _one(db, "SELECT count(*) FROM CloudAppEvents WHERE ObjectName = ?", name) == 0
    history = _hourly(db, name, end - SMALL["days"] * 24 * HOUR, start)
    window = _hourly(db, name, start, end)
    assert min(history) > 100 and min(window) > 100 and max(window) > 500
    rows = _rows(
        db,
        "SELECT DISTINCT EmailDirection, SenderFromDomain = SenderMailFromDomain, SenderFromDomain, "
        "RecipientObjectId <> '' FROM EmailEvents WHERE Connectors = ?",
        name,
    )
    assert rows == [("Inbound", True, s["partnerDomain"], True)]


def test_bulk_mailer_always_mismatches(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("bulk_mail_service")
    assert s["expectedClassification"] == "falsePositive" and s["connectorType"] == "Outbound"
    name = s["connector"]
    start, _ = _window(lab)
    assert _one(db, "SELECT count(*) FROM CloudAppEvents WHERE ObjectName = ?", name) == 0
    for lo, hi in ((0, start), (start, 1e12)):
        total, mismatch, no_oid, known = _rows(
            db,
            "SELECT count(DISTINCT NetworkMessageId), count(DISTINCT NetworkMessageId) FILTER "
            "(SenderFromDomain <> SenderMailFromDomain), count(DISTINCT NetworkMessageId) FILTER "
            "(SenderObjectId = ''), avg((lower(split_part(RecipientEmailAddress, '@', 2)) IN ?)::INT) "
            "FROM EmailEvents WHERE Connectors = ? AND t >= ? AND t < ?",
            lab.known_domains,
            name,
            lo,
            hi,
        )[0]
        assert total > 50 and mismatch == total == no_oid
        assert known > 0.6
    senders = {r[0] for r in _rows(db, "SELECT DISTINCT SenderFromDomain FROM EmailEvents WHERE Connectors = ?", name)}
    assert senders <= set(lab.tenant_domains)


def test_migration_is_the_usual_admin_from_the_usual_place(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("migration")
    assert s["expectedClassification"] == "informationalExpectedActivity" and s["connector"].startswith("Migration")
    usual = lab.usual_admin
    _, end = _window(lab)
    t_created, action, oid, ip, country, isp = _rows(
        db,
        "SELECT t, ActionType, AccountObjectId, IPAddress, CountryCode, Isp FROM CloudAppEvents WHERE ObjectName = ?",
        s["connector"],
    )[0]
    assert action == "New-InboundConnector" and oid == usual["objectId"]
    assert 24 * HOUR <= end - t_created <= 3 * 24 * HOUR
    assert (country, isp) == (usual["location"]["countryCode"], usual["location"]["isp"])
    assert ip.startswith(usual["location"]["ipRange"].rsplit(".", 1)[0] + ".")
    routine = _one(
        db,
        "SELECT count(DISTINCT floor(t / 86400)) FROM CloudAppEvents WHERE AccountObjectId = ? "
        "AND IPAddress = ? AND ActionType IN ('Set-Mailbox', 'Add-MailboxPermission', "
        "'Set-CASMailbox', 'Add-DistributionGroupMember', 'Set-MailboxAutoReplyConfiguration', "
        "'Set-DistributionGroup')",
        oid,
        ip,
    )
    assert routine >= 2, "the usual admin's routine comes from the same place"
    rows = _rows(
        db,
        "SELECT DISTINCT SenderFromDomain = SenderMailFromDomain, SenderObjectId <> '', "
        "SenderFromDomain IN ? FROM EmailEvents WHERE Connectors = ?",
        lab.tenant_domains,
        s["connector"],
    )
    assert rows == [(True, True, True)]


def test_brute_force_without_success_changes_nothing(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    s = lab.scenario("brute_force_no_success")
    assert s["connector"] is None and s["expectedClassification"] is None
    upn, ip = s["admin"]["upn"], s["attackerIp"]
    by_action = dict(
        _rows(
            db,
            "SELECT ActionType, count(*) FROM IdentityLogonEvents WHERE AccountUpn = ? AND IPAddress = ? GROUP BY 1",
            upn,
            ip,
        )
    )
    assert by_action == {"LogonFailed": s["counts"]["logonFailures"]}
    bursts = _rows(
        db,
        "SELECT floor(t / 60), count(*) FROM IdentityLogonEvents WHERE AccountUpn = ? AND IPAddress = ? GROUP BY 1",
        upn,
        ip,
    )
    assert len(bursts) == s["counts"]["bursts"] and all(n > 100 for _, n in bursts)
    assert (
        _one(
            db,
            "SELECT count(*) FROM CloudAppEvents WHERE AccountObjectId = ? AND ActionType LIKE '%Connector'",
            s["admin"]["objectId"],
        )
        == 0
    )


def test_naive_rules_fail_on_the_background(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    """The traps the grader must not fall into are really in the data."""
    noise = {n["id"]: n for n in lab.data["noise"]}
    ad = _rows(
        db,
        "SELECT count(*) FROM IdentityLogonEvents WHERE AccountUpn = ? AND Application = "
        "'Active Directory' AND ActionType = 'LogonFailed'",
        noise["active_directory_lockout"]["account"],
    )
    assert ad[0][0] == noise["active_directory_lockout"]["logonFailures"] > 100
    azure = _rows(
        db,
        "SELECT count(*) FILTER (ActionType = 'LogonFailed'), count(*) FILTER (ActionType = "
        "'LogonSuccess') FROM IdentityLogonEvents WHERE Isp = 'Microsoft Azure'",
    )
    assert azure[0][0] > 100 and azure[0][1] >= 1
    # Inbound newsletters mismatch P1/P2 without any connector; users mail never-seen domains too.
    assert (
        _one(
            db,
            "SELECT count(*) FROM EmailEvents WHERE Connectors = '' AND EmailDirection = 'Inbound' "
            "AND SenderFromDomain <> SenderMailFromDomain",
        )
        > 0
    )
    kinds = _rows(db, "SELECT DISTINCT EmailDirection FROM EmailEvents WHERE Connectors = ''")
    assert {r[0] for r in kinds} == {"Inbound", "Outbound", "Intra-org"}
    ordinary = [c for c in lab.data["connectors"] if c["role"] == "ordinary"]
    assert len(ordinary) == SMALL["connectors"] - 6
    for c in ordinary:
        assert c["longStanding"]
        assert _one(db, "SELECT count(*) FROM CloudAppEvents WHERE ObjectName = ?", c["name"]) == 0
    new_contacts = _one(
        db,
        "SELECT count(DISTINCT lower(split_part(RecipientEmailAddress, '@', 2))) FROM EmailEvents "
        "WHERE Connectors = '' AND EmailDirection = 'Outbound' AND "
        "lower(split_part(RecipientEmailAddress, '@', 2)) NOT IN ?",
        lab.known_domains,
    )
    assert new_contacts > 7, "users also mail freemail and brand-new contacts"


def test_known_correspondents_are_seen_in_history(db: duckdb.DuckDBPyConnection, lab: Labels) -> None:
    start, _ = _window(lab)
    first_day = start - (SMALL["days"] - 1) * 24 * HOUR
    for lo, hi in ((first_day, first_day + 24 * HOUR), (start - 24 * HOUR, start)):
        seen = {
            r[0]
            for r in _rows(
                db,
                "SELECT DISTINCT lower(split_part(RecipientEmailAddress, '@', 2)) FROM "
                "EmailEvents WHERE Connectors = '' AND t >= ? AND t < ?",
                lo,
                hi,
            )
        }
        assert set(lab.known_domains) <= seen


# ---------------------------------------------------------------------------------------------
# Other formats, hostile names, command line


def _csv_table(path: Path, table: str) -> pa.Table:
    schema = load_schema(Dialect.ADVANCED_HUNTING)[table]
    types = {c["name"]: ARROW[c["type"]] for c in schema}
    return pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False),
    )


def test_csv_export_holds_the_same_data_as_parquet(root: Path, lab: Labels) -> None:
    other = _sim(root / "csv", 11, fmt="csv")
    folder = other.path.parent / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.csv" for t in TABLES)
    assert other.data["scenarios"] == lab.data["scenarios"]
    for table in TABLES:
        got = _csv_table(folder / f"{table}.csv", table)
        want = pq.read_table(lab.path.parent / "export" / f"{table}.parquet")
        dynamic = {c["name"] for c in load_schema(Dialect.ADVANCED_HUNTING)[table] if c["type"] == "dynamic"}
        want = want.select(got.column_names)
        for name in dynamic:  # an empty CSV cell in a JSON column reads back as '' instead of null
            i = want.column_names.index(name)
            want = want.set_column(i, name, pa.compute.fill_null(want[name], ""))
        assert got.equals(want), table


def test_jsonl_export_holds_the_same_data_as_parquet(root: Path, lab: Labels) -> None:
    other = _sim(root / "jsonl", 11, fmt="jsonl")
    folder = other.path.parent / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.jsonl" for t in TABLES)
    for table in ("CloudAppEvents", "IdentityLogonEvents", "AlertInfo", "AlertEvidence"):
        lines = (folder / f"{table}.jsonl").read_text(encoding="utf-8").splitlines()
        want = pq.read_table(lab.path.parent / "export" / f"{table}.parquet").to_pylist()
        kinds = {c["name"]: c["type"] for c in load_schema(Dialect.ADVANCED_HUNTING)[table]}
        assert len(lines) == len(want)
        for line, row in zip(lines, want, strict=True):
            got = json.loads(line)
            assert list(got) == list(kinds)
            for name, kind in kinds.items():
                value = row[name]
                if kind == "datetime":
                    value = value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                elif kind == "dynamic" and value is not None:
                    value = json.loads(value)
                assert got[name] == value, (table, name)
    con = duckdb.connect()
    sql = "SELECT NetworkMessageId::VARCHAR, RecipientEmailAddress, Connectors FROM {}"
    got = con.execute(
        sql.format(f"read_json('{(folder / 'EmailEvents.jsonl').as_posix()}', format='newline_delimited')")
    ).fetchall()
    parquet = (lab.path.parent / "export" / "EmailEvents.parquet").as_posix()
    want = con.execute(sql.format(f"read_parquet('{parquet}')")).fetchall()
    assert got == want


@pytest.fixture(scope="module")
def hostile(root: Path) -> dict[str, Labels]:
    return {fmt: _sim(root / f"hostile-{fmt}", 5, fmt=fmt, hostile_names=True) for fmt in ("csv", "jsonl")}


def test_hostile_connector_names_carry_every_payload(hostile: dict[str, Labels]) -> None:
    names = [c["name"] for c in hostile["csv"].data["connectors"]]
    assert len(set(names)) == len(names) == SMALL["connectors"]
    for payload in HOSTILE_PAYLOADS:
        assert any(payload in n for n in names), payload
    for ch in "\"\n\\/#?<>{}'":
        assert any(ch in n for n in names), repr(ch)
    assert hostile["csv"].data["scenarios"] == hostile["jsonl"].data["scenarios"]


def test_hostile_names_survive_csv_round_trip_exactly(hostile: dict[str, Labels]) -> None:
    lab = hostile["csv"]
    folder = lab.path.parent / "export"
    names = {c["name"] for c in lab.data["connectors"]}
    with open(folder / "EmailEvents.csv", newline="", encoding="utf-8") as f:
        counts = Counter(row["Connectors"] for row in csv.DictReader(f))
    assert set(counts) == names | {""}
    with open(folder / "CloudAppEvents.csv", newline="", encoding="utf-8") as f:
        changes = [r for r in csv.DictReader(f) if r["ActionType"].endswith("Connector")]
    for row in changes:
        params = _params(row["RawEventData"])
        assert row["ObjectName"] in names
        assert params.get("Name", params.get("Identity")) == row["ObjectName"]
    assert len(changes) == 4  # spray and slow abuse created, supply chain changed, migration created
    start, _ = _window(lab)
    spray = lab.scenario("compromised_admin_spray")
    in_window = Counter()
    with open(folder / "EmailEvents.csv", newline="", encoding="utf-8") as f:
        seen: set[str] = set()
        for row in csv.DictReader(f):
            mine = row["Connectors"] == spray["connector"] and _epoch(row["Timestamp"]) >= start
            if mine and row["NetworkMessageId"] not in seen:
                seen.add(row["NetworkMessageId"])
                in_window[row["Connectors"]] += 1
    assert in_window[spray["connector"]] == spray["mail"]["messagesInWindow"]


def test_hostile_names_survive_jsonl_round_trip_exactly(hostile: dict[str, Labels]) -> None:
    lab = hostile["jsonl"]
    folder = lab.path.parent / "export"
    names = {c["name"] for c in lab.data["connectors"]}
    with open(folder / "EmailEvents.jsonl", encoding="utf-8") as f:
        got = {json.loads(line)["Connectors"] for line in f}
    assert got == names | {""}
    with open(folder / "CloudAppEvents.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    created = {r["ObjectName"]: r["RawEventData"] for r in rows if r["ActionType"].endswith("Connector")}
    assert set(created) <= names and len(created) == 4
    for name, raw in created.items():
        params = {p["Name"]: p["Value"] for p in raw["Parameters"]}
        assert params.get("Name", params.get("Identity")) == name


def test_command_line_writes_an_export_and_rejects_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="grading")
    add_simulate_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "cli-export"
    args = parser.parse_args(
        [
            "simulate",
            str(out),
            "--seed",
            "3",
            "--days",
            "4",
            "--emails-per-day",
            "150",
            "--connectors",
            "6",
            "--end",
            "2027-01-05T12:30:00Z",
        ]
    )
    assert args.func(args) == 0
    lab = Labels.load(labels_path(out))
    assert lab.data["window"]["end"] == "2027-01-05T12:30:00.000000Z"
    assert lab.data["parameters"]["format"] == "parquet" and len(lab.data["connectors"]) == 6
    assert (out / "EmailEvents.parquet").exists() and str(labels_path(out)) in capsys.readouterr().out
    bad = parser.parse_args(["simulate", str(tmp_path / "bad"), "--days", "2", "--connectors", "3"])
    assert bad.func(bad) == 2
    err = capsys.readouterr().err
    assert "days must be at least" in err and "connectors must be at least" in err
    assert not (tmp_path / "bad").exists()


def test_default_end_is_a_fixed_instant(lab: Labels) -> None:
    assert lab.data["parameters"]["end"] == lab.data["window"]["end"] == "2026-11-20T00:00:00.000000Z"
    created = datetime.fromisoformat(lab.scenario("compromised_admin_spray")["times"]["created"])
    assert timedelta(0) < datetime(2026, 11, 20, tzinfo=UTC) - created < timedelta(hours=24)


# ---------------------------------------------------------------------------------------------
# The hand-made fixture (tests/fixtures/small_tenant.md): the files are what the script writes,
# and the numbers written in the .md hold.

FIXTURE = Path(__file__).parent / "fixtures"


def _fixture_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    folder = FIXTURE / "small_tenant"
    for table in ("EmailEvents", "EmailUrlInfo", "IdentityLogonEvents"):
        path = (folder / f"{table}.csv").as_posix()
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_csv('{path}', all_varchar = true, header = true)")
    for table in ("CloudAppEvents", "AlertInfo", "AlertEvidence"):
        path = (folder / f"{table}.jsonl").as_posix()
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_json('{path}', format = 'newline_delimited')")
    return con


def test_small_tenant_files_are_what_the_script_writes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_small_tenant", FIXTURE / "make_small_tenant.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    assert _digest(tmp_path) == _digest(FIXTURE / "small_tenant")


def test_small_tenant_numbers(tmp_path: Path) -> None:
    con = _fixture_db()
    rows = {
        t: _one(con, f"SELECT count(*) FROM {t}")
        for t in ("EmailEvents", "EmailUrlInfo", "IdentityLogonEvents", "CloudAppEvents", "AlertInfo", "AlertEvidence")
    }
    assert rows == {
        "EmailEvents": 83,
        "EmailUrlInfo": 12,
        "IdentityLogonEvents": 112,
        "CloudAppEvents": 5,
        "AlertInfo": 1,
        "AlertEvidence": 3,
    }
    assert _one(con, "SELECT max(Timestamp) FROM EmailEvents") == "2026-03-13T00:00:00.000Z"
    w = "Timestamp >= '2026-03-12T00:00:00.000Z'"
    ext = "lower(split_part(RecipientEmailAddress, '@', 2))"
    tenant = "('contoso.com', 'contoso.co.uk')"
    history = {
        r[0]
        for r in _rows(
            con,
            f"SELECT {ext} FROM EmailEvents WHERE NOT ({w}) UNION SELECT "
            f"SenderFromDomain FROM EmailEvents WHERE NOT ({w}) UNION SELECT "
            f"SenderMailFromDomain FROM EmailEvents WHERE NOT ({w})",
        )
    }
    assert history == {
        "contoso.com",
        "contoso.co.uk",
        "fabrikam.com",
        "northwindtraders.com",
        "adatum.net",
        "gmail.com",
        "linkedin.com",
        "bounce.linkedin.com",
    }
    expected = {
        # connector: (msgs all, rows all, msgs history, msgs window, rows window, mismatch, empty oid,
        #             internal rows, external rows, external domains, known, max per hour, phish msgs)
        "Fabrikam Partner Inbound": (24, 30, 16, 8, 10, 0, 8, 10, 0, 0, 0, 1, 0),
        "OnPrem Relay": (15, 18, 10, 5, 6, 0, 0, 1, 5, 2, 2, 1, 0),
        "Inbound Relay Fix": (12, 16, 0, 12, 16, 12, 12, 0, 16, 11, 1, 6, 3),
        "": (16, 19, 10, 6, 7, 1, 2, 5, 2, 2, 2, 1, 0),
    }
    for connector, want in expected.items():
        got = _rows(
            con,
            f"""
            SELECT count(DISTINCT NetworkMessageId), count(*),
                   count(DISTINCT NetworkMessageId) FILTER (NOT ({w})),
                   count(DISTINCT NetworkMessageId) FILTER ({w}), count(*) FILTER ({w}),
                   count(DISTINCT NetworkMessageId) FILTER ({w} AND SenderFromDomain <> SenderMailFromDomain),
                   count(DISTINCT NetworkMessageId) FILTER ({w} AND SenderObjectId IS NULL),
                   count(*) FILTER ({w} AND {ext} IN {tenant}), count(*) FILTER ({w} AND {ext} NOT IN {tenant}),
                   count(DISTINCT {ext}) FILTER ({w} AND {ext} NOT IN {tenant}),
                   count(DISTINCT {ext}) FILTER ({w} AND {ext} NOT IN {tenant} AND {ext} IN ?),
                   count(DISTINCT NetworkMessageId) FILTER (ThreatTypes = 'Phish')
            FROM EmailEvents WHERE coalesce(Connectors, '') = ?""",
            sorted(history),
            connector,
        )[0]
        hourly = _one(
            con,
            f"SELECT max(n) FROM (SELECT count(DISTINCT NetworkMessageId) n FROM EmailEvents WHERE "
            f"{w} AND coalesce(Connectors, '') = ? GROUP BY left(Timestamp, 13))",
            connector,
        )
        assert (*got[:11], hourly, got[11]) == want, connector
    never_seen = {
        r[0] for r in _rows(con, f"SELECT DISTINCT {ext} FROM EmailEvents WHERE Connectors = 'Inbound Relay Fix'")
    } - history
    assert never_seen == {
        "blueorbit-llc.com",
        "kestrelholdings.net",
        "pinnacle-dental.org",
        "riverbendfarms.com",
        "suncrest-media.io",
        "tallpine.co",
        "lumenworks.biz",
        "greyharbor.net",
        "oakvale-law.com",
        "zephyr-ai.dev",
    }
    ips = _rows(
        con,
        f"SELECT Connectors, SenderIPv4, count(DISTINCT NetworkMessageId) FROM EmailEvents WHERE {w} "
        "AND Connectors IS NOT NULL GROUP BY ALL ORDER BY ALL",
    )
    assert ips == [
        ("Fabrikam Partner Inbound", "192.0.2.10", 4),
        ("Fabrikam Partner Inbound", "192.0.2.11", 4),
        ("Inbound Relay Fix", "203.0.113.77", 6),
        ("Inbound Relay Fix", "203.0.113.78", 6),
        ("OnPrem Relay", "192.0.2.25", 1),
        ("OnPrem Relay", "192.0.2.26", 4),
    ]
    # Frank: 105 failures in the 08:30 minute from the attacker, then a success 5 s after the last one.
    logons = _rows(con, "SELECT AccountUpn, ActionType, count(*) FROM IdentityLogonEvents GROUP BY ALL ORDER BY ALL")
    assert logons == [
        ("adm-erin.lee@contoso.com", "LogonSuccess", 4),
        ("adm-frank.olsen@contoso.com", "LogonFailed", 105),
        ("adm-frank.olsen@contoso.com", "LogonSuccess", 3),
    ]
    burst = _rows(
        con,
        "SELECT min(Timestamp), max(Timestamp), count(DISTINCT left(Timestamp, 16)), any_value(ISP), "
        "any_value(Location), any_value(IPAddress) FROM IdentityLogonEvents WHERE ActionType = "
        "'LogonFailed'",
    )
    assert burst == [
        ("2026-03-12T08:30:00.000Z", "2026-03-12T08:30:52.000Z", 1, "MainOne Cable Company", "NG", "203.0.113.77")
    ]
    assert _rows(
        con,
        "SELECT Timestamp FROM IdentityLogonEvents WHERE IPAddress = '203.0.113.77' AND ActionType = 'LogonSuccess'",
    ) == [("2026-03-12T08:30:57.000Z",)]
    changes = _rows(
        con,
        "SELECT strftime(Timestamp, '%Y-%m-%dT%H:%M'), ActionType, ObjectName, AccountDisplayName, IPAddress, "
        "CountryCode FROM CloudAppEvents WHERE ActionType LIKE '%Connector' ORDER BY Timestamp",
    )
    assert changes == [
        ("2026-03-12T09:15", "Set-InboundConnector", "OnPrem Relay", "Erin Lee (Admin)", "198.51.100.20", "FR"),
        (
            "2026-03-12T11:05",
            "New-InboundConnector",
            "Inbound Relay Fix",
            "Frank Olsen (Admin)",
            "203.0.113.77",
            "NG",
        ),
    ]
    evidence = _rows(con, "SELECT EntityType FROM AlertEvidence ORDER BY EntityType")
    assert evidence == [("CloudApplication",), ("Ip",), ("User",)]
