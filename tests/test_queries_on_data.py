"""The real query files, run by duckdb-kql, return what independent counts say they must.

Two kinds of truth: literal numbers counted by hand for the checked-in fixture
(tests/fixtures/small_tenant.md), and counts computed here in plain Python (pyarrow) over a
simulated export. Neither comes from the grader's or the simulator's own code.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from grading.cli.sweep import sweep_export
from grading.hunting.catalog import Windows, sweep_plan
from grading.hunting.rendering import load_queries, render
from grading.policy import Policy
from grading.settings import WindowSettings
from grading.sources.local import LocalSource
from grading.sweep import make_windows, run_sweep, split_domains

FIXTURE = Path(__file__).parent / "fixtures" / "small_tenant"
FIXTURE_NOW = datetime(2026, 3, 13, tzinfo=UTC)
# The fixture holds three days: a one-day change lookback leaves two days of admin history.
FIXTURE_WINDOWS = WindowSettings(change_lookback=timedelta(days=1), baseline_lookback=timedelta(days=2))

RELAY_FIX, ONPREM, FABRIKAM = "Inbound Relay Fix", "OnPrem Relay", "Fabrikam Partner Inbound"


def run_plan(source: LocalSource, w: Windows, tenant_domains: list[str]) -> dict[str, Any]:
    results = {}
    for planned in sweep_plan(w, tenant_domains):
        rendered = render(load_queries()[planned.query], planned.values, source.dialect)
        results[planned.label] = source.run(rendered)
    results.update(split_domains(results, tenant_domains, Policy()))
    return results


@pytest.fixture(scope="module")
def fixture_results():
    source = LocalSource(FIXTURE, now=FIXTURE_NOW)
    w = make_windows(FIXTURE_NOW, None, FIXTURE_WINDOWS)
    domains = source.run(
        render(load_queries()["tenant_domains"], {"historyStart": w.history_start, "windowEnd": w.window_end})
    )
    results = run_plan(source, w, ["contoso.com", "contoso.co.uk"])
    results["tenant_domains"] = domains
    yield results
    source.close()


def _by(rows, key):
    out = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


def test_fixture_tenant_domains_are_inferred(fixture_results):
    assert {r["Domain"] for r in fixture_results["tenant_domains"].rows} == {"contoso.com", "contoso.co.uk"}


def test_fixture_connector_traffic_matches_the_hand_counts(fixture_results):
    result = fixture_results["connector_traffic"]
    assert result.complete
    by = _by(result.rows, "Connector")
    assert set(by) == {RELAY_FIX, ONPREM, FABRIKAM}
    total = {name: sum(r["Messages"] for r in rows) for name, rows in by.items()}
    assert total == {FABRIKAM: 8, ONPREM: 5, RELAY_FIX: 12}
    assert {name: max(r["Messages"] for r in rows) for name, rows in by.items()} == {
        FABRIKAM: 1,
        ONPREM: 1,
        RELAY_FIX: 6,
    }
    assert {name: len(rows) for name, rows in by.items()} == {FABRIKAM: 8, ONPREM: 5, RELAY_FIX: 3}
    assert sum(r["Mismatched"] for r in by[RELAY_FIX]) == 12
    assert sum(r["Mismatched"] for r in by[ONPREM] + by[FABRIKAM]) == 0
    assert sum(r["NoSenderObjectId"] for r in by[RELAY_FIX]) == 12
    assert sum(r["NoSenderObjectId"] for r in by[FABRIKAM]) == 8
    assert sum(r["NoSenderObjectId"] for r in by[ONPREM]) == 0
    assert sum(r["ThreatMessages"] for r in by[RELAY_FIX]) == 3
    assert {ip for r in by[RELAY_FIX] for ip in r["SourceIPs"]} == {"203.0.113.77", "203.0.113.78"}
    assert {ip for r in by[ONPREM] for ip in r["SourceIPs"]} == {"192.0.2.25", "192.0.2.26"}
    assert {d for r in by[RELAY_FIX] for d in r["EnvelopeDomains"]} == {
        "xqzv-mail.top",
        "bulk-sender.xyz",
        "fastpost.click",
    }
    hours = sorted(r["Hour"].hour for r in by[RELAY_FIX])
    assert hours == [11, 12, 13]


def test_fixture_history_holds_only_long_standing_connectors(fixture_results):
    by = _by(fixture_results["connector_history"].rows, "Connector")
    assert {name: sum(r["Messages"] for r in rows) for name, rows in by.items()} == {FABRIKAM: 16, ONPREM: 10}
    assert {ip for r in by[ONPREM] for ip in r["SourceIPs"]} == {"192.0.2.25"}


def test_fixture_recipient_profile_splits_known_from_never_seen(fixture_results):
    rows = {(r["Connector"], r["Known"]): r for r in fixture_results["recipient_profile"].rows if not r["Internal"]}
    assert rows[(RELAY_FIX, False)]["Domains"] == 10
    assert rows[(RELAY_FIX, True)]["Domains"] == 1
    assert rows[(RELAY_FIX, True)]["SampleDomains"] == ["northwindtraders.com"]
    assert rows[(RELAY_FIX, True)]["Messages"] == 2
    assert rows[(ONPREM, True)]["Domains"] == 2
    assert (ONPREM, False) not in rows
    assert not any(c == FABRIKAM for c, _ in rows)


def test_fixture_sender_domains_outside_the_tenant(fixture_results):
    rows = {(r["Connector"], r["Part"]): r for r in fixture_results["sender_domains"].rows}
    assert rows[(RELAY_FIX, "Envelope")]["Domains"] == 3
    assert rows[(RELAY_FIX, "Envelope")]["Messages"] == 12
    assert (RELAY_FIX, "Header") not in rows
    assert rows[(FABRIKAM, "Header")]["Domains"] == 1 and rows[(FABRIKAM, "Header")]["Messages"] == 8
    assert (ONPREM, "Header") not in rows and (ONPREM, "Envelope") not in rows


def test_fixture_connector_changes_keep_name_and_parameters_on_one_row(fixture_results):
    rows = fixture_results["connector_changes"].rows
    assert [(r["Connector"], r["Operation"], r["ConnectorType"], r["CountryCode"]) for r in rows] == [
        (ONPREM, "Set", "Inbound", "FR"),
        (RELAY_FIX, "New", "Inbound", "NG"),
    ]
    new = rows[1]
    assert new["Enabled"] == "True" and new["IPAddress"] == "203.0.113.77"
    params = {p["Name"]: p["Value"] for p in new["Parameters"]}
    assert params["ConnectorType"] == "OnPremises"
    assert {p["Name"] for p in rows[0]["Parameters"]} >= {"Identity", "SenderIPAddresses", "TlsSenderCertificateName"}


def test_fixture_admin_logons(fixture_results):
    bursts = fixture_results["admin_logon_bursts"].rows
    assert len(bursts) == 1
    b = bursts[0]
    assert (b["AccountUpn"], b["Failures"], b["Succeeded"]) == ("adm-frank.olsen@contoso.com", 105, True)
    assert b["SuccessTime"] == datetime(2026, 3, 12, 8, 30, 57, tzinfo=UTC)
    locations = {(r["AccountUpn"], r["Location"]): r for r in fixture_results["admin_logon_locations"].rows}
    frank_ng = next(r for (upn, loc), r in locations.items() if upn.startswith("adm-frank") and "NG" in loc)
    assert frank_ng["Successes"] == 1 and frank_ng["SuccessesBeforeLookback"] == 0 and frank_ng["Failures"] == 105
    frank_fr = next(r for (upn, loc), r in locations.items() if upn.startswith("adm-frank") and "FR" in loc)
    assert frank_fr["SuccessesBeforeLookback"] == 2


def test_fixture_artifacts_and_alerts(fixture_results):
    urls = _by(fixture_results["connector_urls"].rows, "Connector")  # a row per connector and hour of the mail
    assert set(urls) == {RELAY_FIX}
    assert sum(r["Messages"] for r in urls[RELAY_FIX]) == 12
    assert {d for r in urls[RELAY_FIX] for d in r["SampleUrlDomains"]} == {urls[RELAY_FIX][0]["SampleUrlDomains"][0]}
    assert fixture_results["connector_attachments"].missing_tables == ("EmailAttachmentInfo",)
    alerts = fixture_results["connector_alerts"].rows
    assert [a["AlertId"] for a in alerts] == ["fa0000000000000000000000000000000001"]


def test_fixture_verdicts(monkeypatch):
    monkeypatch.setenv("GRADER_CHANGE_LOOKBACK", "1d")
    monkeypatch.setenv("GRADER_BASELINE_LOOKBACK", "2d")
    result = sweep_export(FIXTURE, now=None, window_start=None, policy_path=None)
    got = {v["connector"]: (v["classification"], v["determination"]) for v in result.verdicts}
    assert got == {
        RELAY_FIX: ("truePositive", "compromisedAccount"),
        ONPREM: ("informationalExpectedActivity", None),
        FABRIKAM: ("falsePositive", None),
    }
    fix = next(v for v in result.verdicts if v["connector"] == RELAY_FIX)
    assert fix["evidence"]["alertIds"] == ["fa0000000000000000000000000000000001"]
    assert fix["evidence"]["modifiedBy"] == "adm-frank.olsen@contoso.com"
    assert fix["evidence"]["checksNotRun"]  # EmailAttachmentInfo and EntraIdSignInEvents are absent


# ---------------------------------------------------------------------------------------------
# A simulated tenant, counted independently with pyarrow.


def _simulate(folder: Path, seed: int, emails: int) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grading",
            "simulate",
            str(folder),
            "--seed",
            str(seed),
            "--days",
            "5",
            "--emails-per-day",
            str(emails),
            "--connectors",
            "8",
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim") / "tenant"
    _simulate(folder, 5, 1500)
    return folder


def test_simulated_connector_traffic_matches_plain_python_counts(simulated):
    source = LocalSource(simulated)
    now = source.latest_event_time()
    w = make_windows(now, None, WindowSettings())
    results = run_plan(source, w, [])
    source.close()
    table = pq.read_table(
        simulated / "EmailEvents.parquet",
        columns=[
            "Timestamp",
            "NetworkMessageId",
            "Connectors",
            "SenderFromDomain",
            "SenderMailFromDomain",
            "SenderObjectId",
        ],
    ).to_pylist()
    messages: dict[str, set[str]] = defaultdict(set)
    mismatched: dict[str, set[str]] = defaultdict(set)
    no_object: dict[str, set[str]] = defaultdict(set)
    for r in table:
        ts = r["Timestamp"]
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
        if not r["Connectors"] or not (w.window_start <= ts < w.window_end):
            continue
        messages[r["Connectors"]].add(r["NetworkMessageId"])
        if (r["SenderFromDomain"] or "").lower() != (r["SenderMailFromDomain"] or "").lower():
            mismatched[r["Connectors"]].add(r["NetworkMessageId"])
        if not r["SenderObjectId"]:
            no_object[r["Connectors"]].add(r["NetworkMessageId"])
    by = _by(results["connector_traffic"].rows, "Connector")
    # A message is counted once per hour it appears in; the simulator writes all of a message's rows at once.
    assert {c: sum(r["Messages"] for r in rows) for c, rows in by.items()} == {c: len(m) for c, m in messages.items()}
    assert {c: sum(r["Mismatched"] for r in rows) for c, rows in by.items()} == {
        c: len(mismatched.get(c, ())) for c in messages
    }
    assert {c: sum(r["NoSenderObjectId"] for r in rows) for c, rows in by.items()} == {
        c: len(no_object.get(c, ())) for c in messages
    }


def test_queries_and_rows_do_not_grow_with_mail_volume(tmp_path):
    """Ten times the mail: the same number of queries, and rows that follow connectors x hours."""
    small, large = tmp_path / "small", tmp_path / "large"
    _simulate(small, 9, 500)
    _simulate(large, 9, 5000)
    sweeps = []
    for folder in (small, large):
        source = LocalSource(folder)
        sweeps.append(run_sweep(source, now=source.latest_event_time()).sweep)
        source.close()
    assert sweeps[0]["queryCount"] == sweeps[1]["queryCount"]
    rows_small, rows_large = sweeps[0]["rowsReturned"], sweeps[1]["rowsReturned"]
    bound = sweeps[1]["connectors"] * 24 * 5 * 3  # connectors x hours, a few rows each
    assert rows_large <= bound
    assert rows_large < 2 * rows_small, (rows_small, rows_large)


def test_partner_allow_list_makes_a_domain_known_in_the_query(tmp_path, monkeypatch):
    """A policy partner domain counts as a known correspondent for every connector, whatever the sample size."""
    policy = tmp_path / "policy.json"
    policy.write_text('{"protected_partner_domains": ["blueorbit-llc.com", "KESTRELHOLDINGS.NET"]}', encoding="utf-8")
    monkeypatch.setenv("GRADER_CHANGE_LOOKBACK", "1d")
    monkeypatch.setenv("GRADER_BASELINE_LOOKBACK", "2d")
    result = sweep_export(FIXTURE, now=None, window_start=None, policy_path=policy)
    rows = {(r["Connector"], r["Known"]): r for r in result.results["recipient_profile"].rows if not r["Internal"]}
    assert rows[(RELAY_FIX, True)]["Domains"] == 3
    assert rows[(RELAY_FIX, False)]["Domains"] == 8
    assert "blueorbit-llc.com" in rows[(RELAY_FIX, True)]["SampleDomains"]


def test_the_graders_own_changes_are_not_judged_as_configuration_changes(monkeypatch):
    """Its own Set-…Connector (a disable in enforce mode) must not look like an admin's change or a new incident."""
    monkeypatch.setenv("GRADER_CHANGE_LOOKBACK", "1d")
    monkeypatch.setenv("GRADER_BASELINE_LOOKBACK", "2d")
    before = {v["connector"]: v for v in sweep_export(FIXTURE, now=None, window_start=None, policy_path=None).verdicts}
    monkeypatch.setenv("GRADER_OWN_OBJECT_IDS", "0B1C2D3E-0000-4000-8000-0000000000A1")  # Erin's id, any case
    after = {v["connector"]: v for v in sweep_export(FIXTURE, now=None, window_start=None, policy_path=None).verdicts}
    assert before[ONPREM]["evidence"]["changes"] and not after[ONPREM]["evidence"]["changes"]
    assert after[ONPREM]["classification"] == "falsePositive"
    assert after[ONPREM]["incidentKey"] != before[ONPREM]["incidentKey"]
    assert after[RELAY_FIX]["evidence"]["changes"] == before[RELAY_FIX]["evidence"]["changes"]
