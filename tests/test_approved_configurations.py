"""Approved configurations against Azurite and the stateful Exchange fake: ``approve-config`` records the
inventory's configuration with who and why, ``drift`` lists what moved property by property (with the
grader's reading of its risk), a sweep is handed the approvals and the inventory, and a revert restores
the approved configuration, never a value of the message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fakes.tenant import FakeTenant
from remediation_support import app_environment, fake_tenant, message, record_incident

from grading.cli import main
from grading.errors import InputError
from grading.storage.approved import ApprovalConflict, ApprovedConfigurations
from grading.storage.connection import StorageConnection
from grading.wiring import build_runner, configuration_tables, sweep_services


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, fake: FakeTenant, storage_connection_string: str, unique_name: str) -> str:
    app_environment(monkeypatch, fake, storage_connection_string, unique_name)
    fake.exchange.add("Inbound", "Partner relay", addresses=["203.0.113.0/28"])
    fake.exchange.add("Outbound", "To partner", addresses=["mail.partner.example"])
    fake.exchange.add("Inbound", "Scanner/relay #2", addresses=["192.0.2.10"])
    return unique_name


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_approve_config_records_the_inventory_s_configuration_with_who_and_why(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = cli(capsys, "approve-config", "Partner relay", "--reason", "reviewed")
    assert code == 2 and "inventory" in out  # nothing approved before the inventory is read
    assert cli(capsys, "inventory")[0] == 0

    code, out = cli(capsys, "approve-config", "partner RELAY", "--reason", "reviewed in CAB-12", "--by", "soc-lead")
    assert code == 0 and "approved Inbound connector 'Partner relay'" in out, out
    code, out = cli(capsys, "approve-config", "--all", "--reason", "baseline", "--by", "soc-lead")
    assert code == 0 and out.count("approved ") == 3, out  # a name with / and # is a safe key too

    _, approvals = configuration_tables()
    record = approvals.get("Inbound", "Scanner/relay #2")
    assert record is not None and record.approved_by == "soc-lead" and record.reason == "baseline"
    assert record.configuration["senderipaddresses"] == "192.0.2.10"
    assert cli(capsys, "approve-config", "--reason", "x")[0] == 2  # a connector or --all


def test_drift_lists_each_moved_property_with_its_risk(
    app: str, fake: FakeTenant, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "inventory")
    cli(capsys, "approve-config", "--all", "--reason", "baseline", "--by", "soc-lead")
    assert cli(capsys, "drift") == (0, "no approved connector has drifted\n")

    relay = fake.exchange.connector("Inbound", "Partner relay")
    assert relay is not None
    relay["SenderIPAddresses"] = ["203.0.113.0/28", "45.77.0.0/16"]  # a hosting provider's range
    relay["WhenChangedUTC"] = "2030-01-01T00:00:00Z"
    del fake.exchange.connectors[("Outbound", "to partner")]
    cli(capsys, "inventory")

    code, out = cli(capsys, "drift", "--json")
    assert code == 0
    found = {d["connector"]: d for d in json.loads(out)}
    assert set(found) == {"Partner relay", "To partner"}
    assert found["Partner relay"]["drift"] == [{"parameter": "senderipaddresses", "before": "203.0.113.0/28",
                                                "after": "203.0.113.0/28;45.77.0.0/16"}]
    assert [r["kind"] for r in found["Partner relay"]["risks"]] == ["sender_ips_widened_broad"]
    assert found["To partner"]["present"] is False
    code, out = cli(capsys, "drift")
    assert "senderipaddresses" in out and "203.0.113.0/28" in out and "sender_ips_widened_broad" in out


def test_two_approvals_that_race_do_not_overwrite_each_other(storage_connection_string: str,
                                                             unique_name: str) -> None:
    approvals = ApprovedConfigurations.open(StorageConnection(connection_string=storage_connection_string),
                                            unique_name)
    now = datetime(2026, 11, 1, tzinfo=UTC)
    first = approvals.approve("Inbound", "C", {"enabled": "True"}, by="a", reason="r", now=now)
    approvals.approve("Inbound", "C", {"enabled": "False"}, by="b", reason="r", now=now, etag=first.etag)
    with pytest.raises(ApprovalConflict):
        approvals.approve("Inbound", "C", {"enabled": "True"}, by="c", reason="r", now=now, etag=first.etag)
    with pytest.raises(InputError):
        approvals.approve("Sideways", "C", {}, by="a", reason="r", now=now)
    stored = approvals.get("Inbound", "C")
    assert stored is not None and stored.approved_by == "b" and stored.configuration == {"enabled": "False"}
    big = {"comment": "x" * 100_000}  # split across properties: one Table property holds 32 K characters
    approvals.approve("Outbound", "Big", big, by="a", reason="r", now=now)
    assert approvals.get("Outbound", "Big").configuration == big  # type: ignore[union-attr]


def test_a_sweep_is_handed_the_approvals_and_the_inventory(app: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "inventory")
    cli(capsys, "approve-config", "Partner relay", "--reason", "baseline", "--by", "soc-lead")
    services = sweep_services()
    assert services.configurations is not None
    known = services.configurations.read()
    assert set(known["approved"]) == {"partner relay"}
    assert known["approved"]["partner relay"]["approvedBy"] == "soc-lead"
    assert set(known["inventory"]) == {"partner relay", "to partner", "scanner/relay #2"}
    assert known["inventory"]["to partner"]["configuration"]["smarthosts"] == "mail.partner.example"


def test_revert_restores_the_approved_configuration_not_the_message_s(
    app: str, fake: FakeTenant, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(capsys, "inventory")
    relay = fake.exchange.connector("Inbound", "Partner relay")
    assert relay is not None
    # A change nobody has approved yet, then the approval of the intended configuration (a migration),
    # then the attacker's change: the inventory's "before the last change" would be the unapproved one.
    relay["SenderIPAddresses"], relay["WhenChangedUTC"] = ["198.18.0.0/28"], "2029-06-01T00:00:00Z"
    cli(capsys, "inventory")
    cli(capsys, "approve-config", "Partner relay", "--reason", "migration to the new DC", "--by", "soc-lead")
    relay["SenderIPAddresses"], relay["WhenChangedUTC"] = ["45.77.0.0/16"], "2030-01-01T00:00:00Z"
    cli(capsys, "inventory")

    monkeypatch.setenv("REMEDIATION_ALLOW_REVERT", "true")
    monkeypatch.setenv("REMEDIATION_MAX_DISABLES_PER_HOUR", "5")
    msg = message("Partner relay", actions=("revertConnectorChange",),
                  summary={"lastModified": "2030-01-01T00:00:05Z",
                           "previousConfiguration": {"SenderIPAddresses": ["0.0.0.0/0"]}})
    runner = build_runner()
    stored = record_incident(runner.truth.store, msg, window_end=datetime.now(UTC) - timedelta(hours=1))
    runner.handle(stored.to_json(), message_id="m1")

    assert relay["SenderIPAddresses"] == ["198.18.0.0/28"]
    [line] = [t for t in fake.webhook.texts() if "revertConnectorChange" in t]
    assert "approved configuration" in line and "soc-lead" in line


def test_drift_also_lists_what_the_latest_sweep_saw_in_recent_changes(
    app: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from store_fakes import make_result, make_verdict

    cli(capsys, "inventory")
    cli(capsys, "approve-config", "Partner relay", "--reason", "baseline", "--by", "soc-lead")
    _, approvals = configuration_tables()
    approval = approvals.get("Inbound", "Partner relay")
    assert approval is not None
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    verdict = make_verdict("Partner relay", "truePositive", window_start=end - timedelta(hours=1), window_end=end)
    verdict["evidence"]["approvedConfiguration"] = {
        "approvedBy": "soc-lead", "approvedAt": approval.approved_at.isoformat().replace("+00:00", "Z"),
        "reason": "baseline",
        "drift": [{"parameter": "senderipaddresses", "before": "203.0.113.0/28", "after": "45.77.0.0/16"}]}
    verdict["findings"].append({"check": "configuration", "severity": "high", "summary": "drifted",
                                "kind": "maliciousAct", "rule": "approved_drift",
                                "evidence": {"risks": ["sender_ips_widened_broad"]}})
    sweep_services().store.persist_sweep(make_result([verdict], window_start=end - timedelta(hours=1),
                                                     window_end=end))

    code, out = cli(capsys, "drift", "--json")
    [found] = json.loads(out)
    assert code == 0 and found["source"] == "latest sweep" and found["present"] is True
    assert found["drift"][0]["after"] == "45.77.0.0/16" and found["risks"][0]["kind"] == "sender_ips_widened_broad"
