"""Bad input gives a clear message or an unknown verdict: never a crash, never a silent false positive."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grading.cli import main
from grading.cli.sweep import sweep_export
from grading.sources.base import QueryResult
from grading.sources.local import LocalSource
from grading.sweep import run_sweep

FIXTURE = Path(__file__).parent / "fixtures" / "small_tenant"
NEW_CONNECTOR_EVENT = {
    "Timestamp": "2026-03-12T11:05:00.000Z", "ActionType": "New-InboundConnector",
    "Application": "Microsoft Exchange Online", "AccountObjectId": "a2", "AccountId": "adm@contoso.com",
    "IPAddress": "203.0.113.77", "CountryCode": "NG", "ReportId": "r1",
    "RawEventData": {"Parameters": [{"Name": "Name", "Value": "Silent Relay"}, {"Name": "Enabled", "Value": "True"}]},
}


@pytest.fixture
def export(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(FIXTURE, folder)
    return folder


def _sweep(folder: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GRADER_CHANGE_LOOKBACK", "1d")
    monkeypatch.setenv("GRADER_BASELINE_LOOKBACK", "2d")
    return sweep_export(folder, now=None, window_start=None, policy_path=None)


def test_missing_optional_tables_are_reported_not_checked_and_the_sweep_still_grades(export, monkeypatch):
    for name in ("IdentityLogonEvents.csv", "EmailUrlInfo.csv", "AlertInfo.jsonl", "AlertEvidence.jsonl"):
        (export / name).unlink()
    result = _sweep(export, monkeypatch)
    assert result.sweep["complete"]
    notes = " ".join(result.sweep["notChecked"])
    assert "IdentityLogonEvents" in notes and "EmailUrlInfo" in notes and "AlertInfo" in notes
    v = next(v for v in result.verdicts if v["connector"] == "Inbound Relay Fix")
    not_run = {c["check"] for c in v["evidence"]["checksNotRun"]}
    assert "adminCompromise (logon bursts)" in not_run and "artifacts (URLs)" in not_run
    # Without logon data the compromise cannot be seen, but the relayed mail still condemns it.
    assert v["classification"] == "truePositive" and v["determination"] == "phishing"


def test_a_window_without_mail_is_incomplete_and_a_silent_new_connector_is_unknown(tmp_path, monkeypatch):
    folder = tmp_path / "empty"
    folder.mkdir()
    header = (FIXTURE / "EmailEvents.csv").read_text(encoding="utf-8").splitlines()[0]
    (folder / "EmailEvents.csv").write_text(header + "\n", encoding="utf-8")
    (folder / "CloudAppEvents.jsonl").write_text(json.dumps(NEW_CONNECTOR_EVENT) + "\n", encoding="utf-8")
    result = _sweep(folder, monkeypatch)
    assert not result.sweep["complete"]
    assert any("no EmailEvents" in e for e in result.sweep["errors"])
    [v] = result.verdicts
    assert v["connector"] == "Silent Relay"
    assert v["classification"] == "unknown" and "no EmailEvents" in v["reasonIfUnknown"]


def test_an_export_with_no_events_at_all_is_a_usage_error(tmp_path, capsys):
    folder = tmp_path / "nothing"
    folder.mkdir()
    header = (FIXTURE / "EmailEvents.csv").read_text(encoding="utf-8").splitlines()[0]
    (folder / "EmailEvents.csv").write_text(header + "\n", encoding="utf-8")
    (folder / "CloudAppEvents.csv").write_text("Timestamp,ActionType\n", encoding="utf-8")
    assert main(["sweep", "--data", str(folder), "--store", "memory"]) == 2
    assert "pass --now" in capsys.readouterr().err


def test_a_wrongly_typed_column_is_an_error_naming_the_file(export, capsys):
    lines = (export / "EmailEvents.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("UrlCount")] = "many"
    (export / "EmailEvents.csv").write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n", encoding="utf-8")
    assert main(["sweep", "--data", str(export), "--store", "memory"]) == 2
    err = capsys.readouterr().err
    assert "EmailEvents.csv" in err and "UrlCount" in err


def test_null_cells_are_typed_empties_not_crashes(export, monkeypatch):
    """Empty Connectors, domains and object ids in some rows: graded, no crash."""
    lines = (export / "EmailEvents.csv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    blanked = []
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        if i % 3 == 0:
            for col in ("SenderFromDomain", "SenderMailFromDomain", "RecipientEmailAddress", "SenderIPv4"):
                cells[header.index(col)] = ""
        blanked.append(",".join(cells))
    (export / "EmailEvents.csv").write_text("\n".join([lines[0], *blanked]) + "\n", encoding="utf-8")
    result = _sweep(export, monkeypatch)
    assert result.sweep["complete"]
    assert {v["connector"] for v in result.verdicts} == {
        "Inbound Relay Fix", "OnPrem Relay", "Fabrikam Partner Inbound"}


class _PartialSource:
    """Wraps a real source; one query comes back partial, as a throttled service would answer."""

    def __init__(self, inner: LocalSource, partial: str) -> None:
        self.inner, self.partial = inner, partial
        self.name, self.dialect = "partial", inner.dialect

    def tables(self):
        return self.inner.tables()

    def latest_event_time(self):
        return self.inner.latest_event_time()

    def run(self, query):
        result = self.inner.run(query)
        if query.name == self.partial:
            return QueryResult(result.name, result.columns, result.rows[:1], complete=False,
                               reason="partial result: the service stopped at its row limit", truncated=True)
        return result


@pytest.mark.parametrize("partial", ["connector_traffic", "recipient_profile", "connector_changes"])
def test_a_partial_query_never_yields_a_true_positive_or_a_confident_false_positive(partial):
    inner = LocalSource(FIXTURE)
    try:
        source = _PartialSource(inner, partial)
        result = run_sweep(source, now=inner.latest_event_time())
    finally:
        inner.close()
    assert not result.sweep["complete"]
    assert result.verdicts
    for v in result.verdicts:
        assert v["classification"] == "unknown", v["connector"]
        assert "row limit" in v["reasonIfUnknown"]


def test_hostile_connector_names_are_graded_by_their_exact_names_and_printed_safely(tmp_path):
    folder = tmp_path / "hostile"
    subprocess.run([sys.executable, "-m", "grading", "simulate", str(folder), "--seed", "3", "--days", "14",
                    "--emails-per-day", "300", "--connectors", "8", "--hostile-names"], check=True,
                   capture_output=True)
    labels = json.loads(folder.with_suffix(".labels.json").read_text(encoding="utf-8"))
    names = {s["connector"] for s in labels["scenarios"] if s["connector"]}
    assert any("\n" in n or '"' in n or "<" in n for n in names), "the simulator should have used payloads"
    out_json = tmp_path / "verdicts.json"
    proc = subprocess.run([sys.executable, "-m", "grading", "sweep", "--data", str(folder), "--store", "memory",
                           "--json", str(out_json)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    verdicts = {v["connector"]: v for v in json.loads(out_json.read_text(encoding="utf-8"))["verdicts"]}
    for s in labels["scenarios"]:
        if s["connector"]:
            assert verdicts[s["connector"]]["classification"] == s["expectedClassification"], s["id"]
    # The table printed for the analyst has one line per connector: no name broke a line.
    table = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("CONNECTOR"))
    assert len(table) - header - 2 == len(verdicts)
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
