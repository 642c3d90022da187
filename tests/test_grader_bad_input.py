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


@pytest.mark.parametrize("partial", ["connector_traffic", "connector_domains", "connector_changes"])
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


# -- Stray rows, absent or doubled columns, short exports, impossible windows ---------------
# Each through `python -m grading sweep --data` (the CLI's main, in process), as an operator runs it.

FIXTURE_NOW = "2026-03-13T00:00:01Z"  # one second after the fixture's latest event


def _rewrite_csv(path: Path, edit) -> None:
    """Rewrite a CSV file: *edit* takes (header, rows) as lists of cells and returns them."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header, rows = edit(lines[0].split(","), [line.split(",") for line in lines[1:]])
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


def _cli_sweep(folder: Path, tmp_path: Path, monkeypatch, capsys, *extra: str):
    """Exit code, the --json document (None unless it exited 0) and stderr."""
    monkeypatch.setenv("GRADER_CHANGE_LOOKBACK", "1d")
    monkeypatch.setenv("GRADER_BASELINE_LOOKBACK", "2d")
    out = tmp_path / "verdicts.json"
    code = main(["sweep", "--data", str(folder), "--store", "memory", "--json", str(out), *extra])
    err = capsys.readouterr().err
    return code, json.loads(out.read_text(encoding="utf-8")) if code == 0 else None, err


def _classes(doc) -> dict[str, str]:
    return {v["connector"]: v["classification"] for v in doc["verdicts"]}


def test_a_row_dated_2099_is_excluded_and_reported_and_moves_nothing(export, tmp_path, monkeypatch, capsys):
    code, before, _ = _cli_sweep(export, tmp_path, monkeypatch, capsys)
    assert code == 0 and "truePositive" in _classes(before).values()

    def stray(header, rows):
        row = list(rows[-1])
        row[header.index("Timestamp")] = "2099-01-01T00:00:00Z"
        row[header.index("NetworkMessageId")] = "f0000000-0000-4000-8000-000000002099"
        return header, [*rows, row]

    _rewrite_csv(export / "EmailEvents.csv", stray)
    code, after, err = _cli_sweep(export, tmp_path, monkeypatch, capsys)

    assert code == 0
    assert "EmailEvents.csv: 1 row(s) dated after" in err and "2099-01-01T00:00:00Z" in err
    assert f"--now {FIXTURE_NOW}: one second after the export's latest" in err  # said, and not moved
    assert after["sweep"]["windowEnd"] == FIXTURE_NOW
    assert after["sweep"]["excludedFutureRows"]["tables"] == {"EmailEvents": 1}
    assert _classes(after) == _classes(before)  # the true positives are still there


def test_an_infinite_timestamp_is_bad_input_naming_the_cell(export, tmp_path, monkeypatch, capsys):
    def infinite(header, rows):
        rows[0][header.index("Timestamp")] = "infinity"
        return header, rows

    _rewrite_csv(export / "EmailEvents.csv", infinite)
    code, _, err = _cli_sweep(export, tmp_path, monkeypatch, capsys)

    assert code == 2 and "EmailEvents.csv" in err and "'infinity'" in err and "datetime" in err


@pytest.mark.parametrize("column", ["Connectors", "NetworkMessageId"])
def test_an_email_column_nothing_can_be_graded_without_is_bad_input(export, tmp_path, monkeypatch, capsys, column):
    def drop(header, rows):
        i = header.index(column)
        return header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows]

    _rewrite_csv(export / "EmailEvents.csv", drop)
    code, _, err = _cli_sweep(export, tmp_path, monkeypatch, capsys)

    assert code == 2 and f"no {column} column" in err and "EmailEvents.csv" in err


def test_an_absent_action_type_makes_the_checks_not_checked_and_the_verdicts_unknown(
    export, tmp_path, monkeypatch, capsys
):
    lines = (export / "CloudAppEvents.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    for e in events:
        e.pop("ActionType", None)
    (export / "CloudAppEvents.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")

    code, doc, err = _cli_sweep(export, tmp_path, monkeypatch, capsys)

    assert code == 0 and "no ActionType column" in err
    assert not doc["sweep"]["complete"]
    assert any("CloudAppEvents has no ActionType column" in e for e in doc["sweep"]["errors"])
    assert doc["verdicts"] and set(_classes(doc).values()) == {"unknown"}
    assert all("ActionType" in v["reasonIfUnknown"] for v in doc["verdicts"])


def test_columns_that_differ_only_by_case_are_bad_input_naming_both(export, tmp_path, monkeypatch, capsys):
    def twin(header, rows):
        return [*header, "CONNECTORS"], [[*r, "Decoy"] for r in rows]

    _rewrite_csv(export / "EmailEvents.csv", twin)
    code, _, err = _cli_sweep(export, tmp_path, monkeypatch, capsys)

    assert code == 2 and "Connectors and CONNECTORS differ only by case" in err


def test_a_one_hour_export_gives_no_confident_verdict_either_way(export, tmp_path, monkeypatch, capsys):
    def last_hour(header, rows):
        return header, [r for r in rows if r[header.index("Timestamp")] >= "2026-03-12T23:00"]

    _rewrite_csv(export / "EmailEvents.csv", last_hour)
    code, doc, _ = _cli_sweep(export, tmp_path, monkeypatch, capsys)

    assert code == 0 and not doc["sweep"]["complete"]
    assert doc["verdicts"] and set(_classes(doc).values()) == {"unknown"}
    for v in doc["verdicts"]:
        assert "GRADER_EVALUATION_SPAN" in v["reasonIfUnknown"] and "data begins at" in v["reasonIfUnknown"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--now", "2026-03-12T00:00:00Z", "--window-start", "2026-03-12T06:00:00Z"), "is not before --now"),
        (("--window-start", "2026-03-14T00:00:00Z"), "is not before --now 2026-03-13T00:00:01Z"),
        (("--now", "9999-12-31T00:00:00Z"), "later than the clock plus GRADER_CLOCK_SKEW"),
    ],
)
def test_an_impossible_window_is_a_usage_error(export, tmp_path, monkeypatch, capsys, args, message):
    code, _, err = _cli_sweep(export, tmp_path, monkeypatch, capsys, *args)

    assert code == 2 and message in err
    assert "Traceback" not in err
