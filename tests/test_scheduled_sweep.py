"""Scheduled sweeps against a real Azurite: watermark catch-up, failures, one queue message per
incident, suppressions; and the remediation queue message schema.

The grader is scripted here (``store_fakes.ScriptedSweep``) so each test can run many hourly sweeps
in seconds; storage, queue and concurrency are real. ``test_end_to_end_*`` use the real grader.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from store_fakes import Connector, FakeSource, ScriptedSweep, make_verdict

from grading.hunting.rendering import Dialect
from grading.incident import (
    DISABLE_CONNECTOR,
    MAX_WIRE_BYTES,
    REVOKE_ADMIN_SESSIONS,
    MessageError,
    RemediationMessage,
    build_message,
    parse_message,
)
from grading.report import DATA_ELEMENT_ID, HTML_CONTENT_TYPE
from grading.scheduler import SweepServices, plan_window, run_maintenance, run_scheduled_sweep
from grading.settings import SettingsError, StorageSettings, WindowSettings, load_section
from grading.sources.base import QueryResult
from grading.sources.local import LocalSource
from grading.storage.connection import StorageConnection
from grading.storage.incidents import IncidentLedger
from grading.storage.reports import RETRY_TOTAL, ReportError, ReportStore, report_blob_name, report_retry_policy
from grading.sweep import run_sweep
from grading.wiring import sweep_services

H = timedelta(hours=1)
DAY0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)


def at(hour: float) -> datetime:
    """A wall-clock time on DAY0 (hour may exceed 24 for later days)."""
    return DAY0 + timedelta(hours=hour)


def make_services(
    connection_string: str, name: str, *, window: WindowSettings | None = None, retries: int = 3
) -> SweepServices:
    settings = StorageSettings(
        connection_string=connection_string,
        table_prefix=name,
        remediation_queue=f"q-{name}",
        report_container=f"r-{name}",
        incomplete_retries=retries,
    )
    services = SweepServices.connect(
        StorageConnection.from_settings(settings), settings, window_settings=window or WindowSettings()
    )
    services.sweep = ScriptedSweep()
    return services


@pytest.fixture
def services(storage_connection_string: str, unique_name: str) -> SweepServices:
    return make_services(storage_connection_string, unique_name)


def queued(services: SweepServices) -> list[RemediationMessage]:
    """Every message on the remediation queue, decoded as the Functions host would (base64)."""
    return [
        parse_message(base64.b64decode(m.content).decode("ascii"))
        for m in services.queue.client.peek_messages(max_messages=32)
    ]


def run(services: SweepServices, when: datetime, **kwargs: Any) -> Any:
    return run_scheduled_sweep(services, FakeSource(), now=when, **kwargs)


# ---------------------------------------------------------------------------------------------
# Windows


def test_plan_window_grades_whole_hours_behind_the_ingestion_delay() -> None:
    ws = WindowSettings(
        ingestion_delay=timedelta(minutes=30), first_window=timedelta(hours=24), max_window=timedelta(hours=6)
    )
    # First run: GRADER_FIRST_WINDOW back from the last whole hour before now - delay, capped by max window.
    assert plan_window(None, at(10 + 5 / 60), ws) == (at(9 - 24), at(9 - 24 + 6))
    # 10:20 minus 30 minutes is 09:50: the 09:00 hour is not complete yet.
    assert plan_window(at(8), at(10 + 20 / 60), ws) == (at(8), at(9))
    assert plan_window(at(9), at(10 + 20 / 60), ws) is None
    assert plan_window(at(9), at(10 + 35 / 60), ws) == (at(9), at(10))
    # Far behind: one max window at a time.
    assert plan_window(at(0), at(30), ws) == (at(0), at(6))


def test_missed_hours_are_graded_once_by_the_next_run(services: SweepServices) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Partner relay": Connector()}
    statuses = []
    # Hourly at minute 5; the 12:05 run never happens (host restart); 13:20 is a late, doubled run.
    for when in (at(10 + 5 / 60), at(11 + 5 / 60), at(13 + 5 / 60), at(13 + 20 / 60), at(14 + 5 / 60)):
        statuses.append(run(services, when).status)

    assert statuses == ["graded", "graded", "graded", "caught-up", "graded"]
    assert sweep.windows == [(at(9 - 24), at(9)), (at(9), at(10)), (at(10), at(12)), (at(12), at(13))]
    hours = sweep.hours_graded()
    assert len(hours) == len(set(hours)) == 28  # every hour from 09:00 the day before to 13:00, once
    assert hours == [at(9 - 24) + i * H for i in range(28)]
    assert services.watermark.watermark() == at(13)
    assert [s["status"] for s in services.store.sweeps()] == ["complete"] * 4


def test_a_long_outage_is_caught_up_in_max_window_steps(storage_connection_string: str, unique_name: str) -> None:
    services = make_services(
        storage_connection_string,
        unique_name,
        window=WindowSettings(max_window=timedelta(hours=12), first_window=timedelta(hours=2)),
    )
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    run(services, at(10.5))
    for when in (at(48.5), at(49.5), at(50.5), at(51.5), at(52.5)):  # two days later
        run(services, when)
    assert sweep.windows == [
        (at(8), at(10)),
        (at(10), at(22)),
        (at(22), at(34)),
        (at(34), at(46)),
        (at(46), at(51)),
        (at(51), at(52)),
    ]


def test_a_run_holding_the_window_blocks_others_until_its_lease_expires(services: SweepServices) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    held = services.watermark.claim(
        now=at(10),
        plan=lambda wm: plan_window(wm, at(10), services.window_settings),
        run_id="a-run-that-died",
        lease=timedelta(minutes=30),
    )
    assert held.start == at(9 - 24)  # type: ignore[union-attr]

    assert run(services, at(10 + 10 / 60)).status == "busy"
    assert sweep.windows == []
    report = run(services, at(10 + 45 / 60))  # the lease expired: the window is taken over
    assert report.status == "graded" and sweep.windows == [(at(10 - 24), at(10))]


def test_racing_runs_grade_a_window_once(services: SweepServices) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    start = threading.Barrier(4)
    reports: list[Any] = []

    def go() -> None:
        start.wait()
        reports.append(run(services, at(10 + 5 / 60)))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in reports).count("graded") == 1
    assert {r.status for r in reports} <= {"graded", "busy", "caught-up"}
    assert sweep.windows == [(at(9 - 24), at(9))]


def test_a_failed_sweep_is_recorded_logged_and_its_hours_retried(
    services: SweepServices, caplog: pytest.LogCaptureFixture
) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.fail_next = 1
    with caplog.at_level(logging.INFO, logger="grading"):
        report = run(services, at(10 + 5 / 60))

    assert report.status == "failed" and "unreachable" in report.error
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].name == "grading.sweep" and errors[0].getMessage().startswith("sweep failed")
    [record] = services.store.sweeps()
    assert record["status"] == "failed"
    assert "ConnectionError: the telemetry service is unreachable" in record["errors"][0]
    assert services.watermark.watermark() == at(9 - 24)  # nothing graded, nothing skipped

    assert run(services, at(11 + 5 / 60)).status == "graded"
    assert sweep.windows == [(at(9 - 24), at(10))]  # the failed hours are in the retry
    assert {s["status"] for s in services.store.sweeps()} == {"failed", "complete"}


def test_an_incomplete_sweep_is_retried_then_moved_past(
    storage_connection_string: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    services = make_services(
        storage_connection_string, unique_name, retries=1, window=WindowSettings(first_window=timedelta(hours=1))
    )
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Relay": Connector()}
    sweep.incomplete_next = 2
    with caplog.at_level(logging.INFO, logger="grading"):
        first = run(services, at(10.5))
        second = run(services, at(11.5))
        third = run(services, at(12.5))

    assert (first.complete, first.advanced) == (False, False)  # held for a retry
    assert (second.complete, second.advanced) == (False, True)  # retries used up: moved on
    assert (third.complete, third.advanced) == (True, True)
    assert sweep.windows == [(at(9), at(10)), (at(9), at(11)), (at(11), at(12))]
    incomplete = [s for s in services.store.sweeps() if s["status"] == "incomplete"]
    assert len(incomplete) == 2 and incomplete[0]["errors"] == ["mail_coverage: the query timed out"]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum(m.startswith("sweep incomplete") for m in messages) == 3 and any("moving on" in m for m in messages)


class SlowSource:
    """Answers every query empty, but only after *delay* seconds: a large tenant's slow service."""

    name = "slow"
    dialect = Dialect.ADVANCED_HUNTING

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.sent: list[str] = []

    def tables(self) -> frozenset[str] | None:
        return None

    def run(self, query: Any) -> QueryResult:
        self.sent.append(query.name)
        time.sleep(self.delay)
        return QueryResult(query.name, (), [])

    def latest_event_time(self) -> datetime | None:
        return None


def test_a_sweep_past_its_deadline_stops_querying_is_recorded_incomplete_and_frees_its_window(
    storage_connection_string: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    window = WindowSettings(first_window=timedelta(hours=1), sweep_deadline=timedelta(seconds=0.2))
    services = make_services(storage_connection_string, unique_name, window=window)
    services.sweep = run_sweep  # the real grader
    source = SlowSource(delay=0.3)  # the first query alone outlasts the deadline

    with caplog.at_level(logging.ERROR, logger="grading.sweep"):
        report = run_scheduled_sweep(services, source, now=at(10.5))

    assert source.sent == ["tenant_domains"], "no query is sent past the deadline"
    assert report.status == "graded" and report.complete is False and not report.advanced
    record = services.store.get_sweep(report.sweep_id)
    assert record["status"] == "incomplete" and record["deadlineReached"] is True
    assert any(e.startswith("connector_traffic: not run") and "GRADER_SWEEP_DEADLINE" in e for e in record["errors"])
    assert any(r.getMessage().startswith("sweep incomplete") for r in caplog.records)
    # The lease is given back: the next run retries the window at once instead of finding it busy.
    again = run_scheduled_sweep(services, SlowSource(delay=0.0), now=at(10.6))
    assert again.status == "graded" and again.window == report.window


def test_the_lease_outlasts_the_sweep_deadline(services: SweepServices) -> None:
    services.window_settings = WindowSettings(sweep_deadline=timedelta(hours=2))
    scripted: ScriptedSweep = services.sweep  # type: ignore[assignment]
    seen = []

    def slow_sweep(*args: Any, **kwargs: Any) -> Any:
        # 90 minutes into a sweep allowed 2 hours, the next run still finds the window held.
        seen.append(run(services, at(12), run_id="next").status)
        return scripted(*args, **kwargs)

    services.sweep = slow_sweep
    assert run(services, at(10.5), run_id="long").status == "graded"
    assert seen == ["busy"]


# ---------------------------------------------------------------------------------------------
# The remediation queue


def test_one_queue_message_per_true_positive_incident_across_sweeps(services: SweepServices) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {
        "Evil relay/#1": Connector("truePositive", change_time=at(-3), compromised_admin=True),
        "Partner relay": Connector("falsePositive"),
    }
    first = run(services, at(10 + 5 / 60))
    second = run(services, at(11 + 5 / 60))
    third = run(services, at(12 + 5 / 60))

    [message] = queued(services)
    assert first.enqueued == [message.incident_key] and second.enqueued == third.enqueued == []
    assert message.connector == "Evil relay/#1" and message.sweep_id == first.sweep_id
    assert message.classification == "truePositive" and message.determination == "compromisedAccount"
    assert message.admins[0].upn == "adm@contoso.com" and message.admins[0].compromised
    assert DISABLE_CONNECTOR in message.requested_actions and REVOKE_ADMIN_SESSIONS in message.requested_actions
    assert services.store.get_sweep(first.sweep_id)["enqueued"] == 1

    # The attacker changes the connector again: a new configuration is a new incident.
    sweep.connectors["Evil relay/#1"].change_time = at(12.5)
    fourth = run(services, at(13 + 5 / 60))
    messages = queued(services)
    assert len(messages) == 2 and fourth.enqueued == [messages[1].incident_key]
    assert messages[1].incident_key != message.incident_key


def test_racing_sweeps_enqueue_an_incident_once_and_a_stranded_claim_is_resent(services: SweepServices) -> None:
    verdict = make_verdict("Evil", "truePositive", window_start=at(9), window_end=at(10), change_time=at(8))
    message = build_message(verdict, "sweep-1")
    clock = {"now": at(10)}
    ledgers = [IncidentLedger(services.store.tables.incidents, clock=lambda: clock["now"]) for _ in range(4)]
    start = threading.Barrier(4)
    claims: list[Any] = []

    def claim(ledger: IncidentLedger) -> None:
        start.wait()
        claims.append(ledger.claim(message))

    threads = [threading.Thread(target=claim, args=(ledger,)) for ledger in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(c is not None for c in claims) == 1
    # The winner dies before sending. The daily maintenance re-sends it once it is stale, once.
    services.ledger = ledgers[0]
    services.store.clock = lambda: clock["now"]
    assert run_maintenance(services)["resent"] == []  # still fresh: its sender may be alive
    clock["now"] = at(10.5)
    assert run_maintenance(services)["resent"] == [message.incident_key]
    assert run_maintenance(services)["resent"] == []
    assert [m.incident_key for m in queued(services)] == [message.incident_key]
    assert services.ledger.get(message.incident_key)["State"] == "enqueued"


def test_a_suppression_is_honoured_then_lifted_by_a_configuration_change(services: SweepServices) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Scanner relay": Connector("truePositive", change_time=at(-2))}
    first = run(services, at(10 + 5 / 60))
    assert len(queued(services)) == 1

    services.store.suppress("Scanner relay", reason="our vulnerability scanner's mail relay", by="ana")
    second = run(services, at(11 + 5 / 60))

    [v] = services.store.sweep_verdicts(second.sweep_id)
    assert v["classification"] == "falsePositive" and v["determination"] is None
    assert v["findings"][0]["check"] == "suppression" and "ana" in v["findings"][0]["summary"]
    assert v["evidence"]["suppression"]["reason"] == "our vulnerability scanner's mail relay"
    assert v["evidence"]["suppression"]["gradedClassification"] == "truePositive"
    assert second.counts["truePositive"] == 0 and second.counts["falsePositive"] == 1
    assert len(queued(services)) == 1
    latest = services.store.latest_verdicts()[0]
    assert latest["classification"] == "falsePositive" and latest["suppressionActive"]

    # The connector's configuration changes: the analyst's decision no longer covers it.
    sweep.connectors["Scanner relay"].change_time = at(11.5)
    third = run(services, at(12 + 5 / 60))
    [v] = services.store.sweep_verdicts(third.sweep_id)
    assert v["classification"] == "truePositive" and v["incidentKey"] != first.enqueued[0]
    assert v["evidence"]["suppressionLifted"]["by"] == "ana"
    assert len(queued(services)) == 2 and third.enqueued == [v["incidentKey"]]
    latest = services.store.latest_verdicts()[0]
    assert latest["classification"] == "truePositive" and not latest["suppressionActive"]


def test_an_incident_stays_one_after_its_change_leaves_the_lookback(
    storage_connection_string: str, unique_name: str
) -> None:
    services = make_services(
        storage_connection_string,
        unique_name,
        window=WindowSettings(change_lookback=timedelta(hours=3), first_window=timedelta(hours=1)),
    )
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Evil": Connector("truePositive", change_time=at(8.5))}
    reports = [run(services, at(h + 0.6)) for h in range(10, 16)]

    keys = {v["incidentKey"] for r in reports for v in services.store.sweep_verdicts(r.sweep_id)}
    assert len(keys) == 1
    assert len(queued(services)) == 1


# ---------------------------------------------------------------------------------------------
# The message schema


def _tp(**changes: Any) -> dict[str, Any]:
    v = make_verdict(
        "Evil\n/#?",
        "truePositive",
        window_start=at(9),
        window_end=at(10),
        change_time=at(8),
        compromised_admin=True,
        alert_ids=("da-1", "da-2"),
    )
    v.update(changes)
    return v


def test_message_round_trips_through_the_wire_format() -> None:
    message = build_message(_tp(), "20261120T100000Z-abcd1234")
    wire = message.to_base64()
    assert json.loads(base64.b64decode(wire))["schemaVersion"] == 1
    assert parse_message(wire) == message == parse_message(message.to_json())
    doc = message.to_dict()
    assert set(doc) == {
        "schemaVersion",
        "sweepId",
        "incidentKey",
        "connector",
        "connectorType",
        "classification",
        "determination",
        "score",
        "admins",
        "alertIds",
        "requestedActions",
        "evidenceSummary",
    }
    assert doc["connector"] == "Evil\n/#?" and doc["alertIds"] == ["da-1", "da-2"]
    assert doc["admins"] == [
        {"objectId": "oid-adm", "upn": "adm@contoso.com", "compromiseSignals": ["failedLogonBurstThenSuccess"]}
    ]


def test_only_the_compromise_the_grader_weighed_makes_an_admin_a_remediation_target() -> None:
    """The admin evidence lists every burst and new place; the message's compromise signals come from
    the findings the grader weighed for this incident: a compromise after the admin's change, or travel
    it explained, makes no signal, so the runner revokes nobody for them."""
    after_the_change = {"check": "adminCompromise", "severity": "low",
                        "rule": "admin_compromised_at_another_time", "summary": "burst then success, after the change",
                        "evidence": {"admin": "adm@contoso.com"}}
    v = _tp(findings=[f for f in _tp()["findings"] if f["check"] != "adminCompromise"] + [after_the_change])
    v["evidence"]["admins"][0]["newLogonLocations"] = ["Lisbon, PT"]  # travel the grader explained: no finding
    [admin] = build_message(v, "s").admins
    assert admin.compromise_signals == ("failedLogonBurst",) and not admin.compromised  # evidence, not compromise
    assert REVOKE_ADMIN_SESSIONS not in build_message(v, "s").requested_actions

    token = {"check": "adminCompromise", "severity": "medium", "rule": "change_without_sign_in",
             "summary": "Set by adm@contoso.com from NG, where this admin never signed in", "evidence": {
                 "by": "adm@contoso.com", "country": "NG"}}
    v["findings"].append(token)
    [admin] = build_message(v, "s").admins
    assert admin.compromise_signals == ("changeWithoutInteractiveSignIn", "failedLogonBurst") and admin.compromised
    assert REVOKE_ADMIN_SESSIONS in build_message(v, "s").requested_actions


def test_only_a_true_positive_makes_a_message() -> None:
    with pytest.raises(MessageError, match="only a true positive"):
        build_message(_tp(classification="falsePositive"), "s")


def test_a_huge_verdict_still_makes_a_message_within_the_queue_limit() -> None:
    v = _tp()
    v["findings"] = [{"check": "volume", "severity": "high", "summary": "s" * 10_000, "evidence": {}}] * 500
    v["evidence"]["sourceIPs"] = [f"198.51.100.{i % 256}/{i}" for i in range(50_000)]
    v["evidence"]["alertIds"] = [f"alert-{i}" for i in range(5_000)]
    wire = build_message(v, "s").to_base64()
    assert len(wire) <= MAX_WIRE_BYTES
    parsed = parse_message(wire)
    assert len(parsed.alert_ids) == 50 and parsed.evidence_summary["findingsOmitted"] == 490


def _doc(**changes: Any) -> str:
    doc = build_message(_tp(), "s").to_dict()
    for key, value in changes.items():
        if value is KeyError:
            del doc[key]
        else:
            doc[key] = value
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("not json at all", "neither a JSON object nor base64"),
        ('{"schemaVersion": 1,', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (_doc(schemaVersion=KeyError), "schemaVersion is missing"),
        (_doc(schemaVersion=2), "unknown schemaVersion 2"),
        (_doc(schemaVersion="1"), "schemaVersion must be a whole number"),
        (_doc(connector=KeyError), "missing fields: connector"),
        (_doc(extra=1), "unknown fields"),
        (_doc(classification="falsePositive"), "classification must be truePositive"),
        (_doc(requestedActions=["disableConnector", "deleteMailbox"]), "unknown requestedActions deleteMailbox"),
        (_doc(requestedActions=[]), "requestedActions must not be empty"),
        (_doc(score=101), "score must be a whole number from 0 to 100"),
        (_doc(score=True), "score must be a whole number"),
        (_doc(incidentKey="../../etc"), "incidentKey must be"),
        (_doc(connector=""), "connector must not be empty"),
        (_doc(connectorType="Sideways"), "connectorType must be one of"),
        (_doc(admins=[{"objectId": "", "upn": "", "compromiseSignals": []}]), "neither objectId nor upn"),
        (_doc(evidenceSummary="text"), "evidenceSummary must be a JSON object"),
    ],
)
def test_a_malformed_message_is_refused_with_its_reason(text: str, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        parse_message(text)
    encoded = base64.b64encode(text.encode()).decode()
    if text.strip():
        with pytest.raises(MessageError):
            parse_message(encoded)


# ---------------------------------------------------------------------------------------------
# End to end with the real grader over a simulated tenant


@pytest.fixture(scope="module")
def simulated_tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    from grading.cli import main

    folder = tmp_path_factory.mktemp("tenant") / "export"
    assert main(["simulate", "--days", "4", "--emails-per-day", "300", "--connectors", "6", str(folder)]) == 0
    labels = json.loads(folder.with_name("export.labels.json").read_text())
    return folder, labels


def test_end_to_end_cli_sweeps_persist_enqueue_once_and_honour_a_suppression(
    simulated_tenant: tuple[Path, dict[str, Any]],
    storage_connection_string: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from grading.cli import main

    folder, _labels = simulated_tenant
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setenv("GRADER_TABLE_PREFIX", unique_name)
    monkeypatch.setenv("REMEDIATION_QUEUE", f"q-{unique_name}")
    services = sweep_services()

    assert main(["sweep", "--data", str(folder), "--json", "-"]) == 0
    out = capsys.readouterr().out
    assert "stored sweep" in out
    printed = json.loads(out[out.index("{") :])  # the JSON carries the stored sweep's id
    record = services.store.get_sweep(printed["sweep"]["sweepId"])
    assert record["status"] == "complete"
    assert f"report: {record['report']['url']}" in out and printed["sweep"]["report"] == record["report"]
    latest = services.store.latest_verdicts()
    tps = [v for v in latest if v["classification"] == "truePositive"]
    assert tps, "the simulated tenant holds true positives"
    messages = queued(services)
    assert sorted(m.incident_key for m in messages) == sorted({v["incidentKey"] for v in tps})

    # The same window again: nothing written, nothing enqueued.
    assert main(["sweep", "--data", str(folder)]) == 0
    assert "already graded completely" in capsys.readouterr().out
    assert len(queued(services)) == len(messages)

    assert main(["verdicts"]) == 0
    listing = capsys.readouterr().out
    assert all(v["connector"][:20] in listing for v in latest if v["connector"].isprintable())

    target = tps[0]["connector"]
    assert main(["suppress", target, "--reason", "known partner", "--by", "ana"]) == 0
    assert "suppressed" in capsys.readouterr().out
    # Another window (an hour shorter) graded later: the suppressed connector is a false positive now.
    end = datetime.fromisoformat(tps[0]["windowEnd"].replace("Z", "+00:00"))
    assert (
        main(["sweep", "--data", str(folder), "--now", end.isoformat(), "--window-start", (end - 23 * H).isoformat()])
        == 0
    )
    capsys.readouterr()
    later = [h for h in services.store.history(target) if h["windowStart"] == (end - 23 * H).isoformat()[:19] + "Z"]
    assert len(later) == 1 and later[0]["classification"] == "falsePositive" and later[0]["suppressed"]
    assert next(v for v in services.store.latest_verdicts() if v["connector"] == target)["suppressionActive"]
    assert len(queued(services)) == len(messages)
    assert main(["verdicts", "--history", target]) == 0
    assert "suppressed" in capsys.readouterr().out
    assert main(["suppress", "No such connector", "--reason", "x"]) == 2


# ---------------------------------------------------------------------------------------------
# Each stored sweep's HTML report in Blob Storage, linked from the sweep record


class BlobOutage(RequestsTransport):
    """A real HTTP transport to Azurite whose first *failures* PUTs (blob or container writes) fail
    as a dropped connection would; counts the writes tried."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.puts = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        if request.method == "PUT":
            self.puts += 1
            if self.puts <= self.failures:
                raise ServiceRequestError("connection reset (simulated blob outage)")
        return super().send(request, **kwargs)


def reports_through(outage: BlobOutage, connection_string: str, container: str) -> tuple[ReportStore, list[float]]:
    """A report store whose requests go through *outage*, with the store's own retry policy; the
    back-offs that policy chooses are recorded instead of slept."""
    policy = report_retry_policy()
    backoffs: list[float] = []
    policy.sleep = lambda settings, transport: backoffs.append(policy.get_backoff_time(settings))  # type: ignore[method-assign]
    store = ReportStore.open(StorageConnection(connection_string=connection_string), container, transport=outage,
                             retry_policy=policy)
    return store, backoffs


def stored_page(connection_string: str, link: dict[str, str]) -> tuple[str, Any]:
    """The report blob the sweep record links: its text and its properties."""
    blob = BlobServiceClient.from_connection_string(connection_string).get_blob_client(link["container"],
                                                                                        link["blob"])
    return blob.download_blob().readall().decode("utf-8"), blob.get_blob_properties()


def embedded_sweep(page: str) -> dict[str, Any]:
    """The page's machine-readable copy of the sweep (its JSON data block)."""
    block = re.search(rf'<script type="application/json" id="{DATA_ELEMENT_ID}">(.*?)</script>', page, re.S)
    assert block, "the report has no embedded sweep data"
    return json.loads(block.group(1))


def test_a_scheduled_sweep_writes_its_report_to_blob_storage_and_links_it(
    simulated_tenant: tuple[Path, dict[str, Any]],
    storage_connection_string: str,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _labels = simulated_tenant
    services = make_services(storage_connection_string, unique_name)
    services.sweep = run_sweep  # the real grader
    with LocalSource(folder) as source:
        report = run_scheduled_sweep(services, source, now=at(0.75))  # grades the export's last 24 h

    assert report.status == "graded" and report.complete
    record = services.store.get_sweep(report.sweep_id)
    link = record["report"]
    assert link["container"] == f"r-{unique_name}"
    assert link["blob"] == f"2026/11/{report.sweep_id}.html"  # by the window's end, 2026-11-20T00:00Z
    assert link["url"].endswith(f"/r-{unique_name}/2026/11/{report.sweep_id}.html")
    assert report.report == link

    page, properties = stored_page(storage_connection_string, link)
    assert properties.content_settings.content_type == HTML_CONTENT_TYPE
    verdicts = services.store.sweep_verdicts(report.sweep_id)
    assert len(verdicts) >= 6, "the simulated tenant has six connectors with mail"
    for verdict in verdicts:
        assert html.escape(verdict["connector"]) in page
    assert report.sweep_id in page
    embedded = embedded_sweep(page)
    assert embedded["sweep"]["sweepId"] == report.sweep_id
    assert embedded["sweep"]["windowEnd"] == record["windowEnd"] == "2026-11-20T00:00:00Z"
    assert {v["connector"]: (v["classification"], v["score"]) for v in embedded["verdicts"]} == {
        v["connector"]: (v["classification"], v["score"]) for v in verdicts
    }

    # The analyst finds it from the CLI.
    from grading.cli import main

    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setenv("GRADER_TABLE_PREFIX", unique_name)
    monkeypatch.setenv("REMEDIATION_QUEUE", f"q-{unique_name}")
    monkeypatch.setenv("GRADER_REPORT_CONTAINER", f"r-{unique_name}")
    assert main(["verdicts", "--sweeps"]) == 0
    assert link["blob"] in capsys.readouterr().out


def test_the_report_is_the_stored_sweep_suppressions_included(services: SweepServices) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Scanner <relay> & co": Connector("truePositive", change_time=at(-2))}
    run(services, at(10 + 5 / 60))
    services.store.suppress("Scanner <relay> & co", reason="our scanner", by="ana")
    second = run(services, at(11 + 5 / 60))

    record = services.store.get_sweep(second.sweep_id)
    page, _ = stored_page(services.storage_settings.connection_string or "", record["report"])
    assert "Scanner &lt;relay&gt; &amp; co" in page and "Scanner <relay>" not in page
    # The page holds the verdicts as stored: the suppression applied, under the stored sweep's id.
    embedded = embedded_sweep(page)
    assert embedded["verdicts"] == services.store.sweep_verdicts(second.sweep_id)
    assert embedded["verdicts"][0]["classification"] == "falsePositive"
    assert embedded["sweep"]["sweepId"] == second.sweep_id


def test_a_report_that_cannot_be_written_costs_the_sweep_nothing(
    services: SweepServices, storage_connection_string: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Partner relay": Connector()}
    outage = BlobOutage(failures=1000)
    services.reports, backoffs = reports_through(outage, storage_connection_string, f"r-{unique_name}")
    with caplog.at_level(logging.INFO, logger="grading"):
        report = run(services, at(10 + 5 / 60))

    # Retried by the storage SDK's policy with short back-offs (recorded, not slept here), then given up.
    assert outage.puts == 1 + RETRY_TOTAL and len(backoffs) == RETRY_TOTAL
    assert backoffs == sorted(backoffs) and max(backoffs) <= 10 and sum(backoffs) <= 20
    assert report.status == "graded" and report.complete and report.advanced
    record = services.store.get_sweep(report.sweep_id)
    assert record["status"] == "complete"
    assert set(record["report"]) == {"error"} and "simulated blob outage" in record["report"]["error"]
    assert [v["connector"] for v in services.store.sweep_verdicts(report.sweep_id)] == ["Partner relay"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].getMessage().startswith("sweep report failed")
    assert report.sweep_id in errors[0].getMessage()


def test_a_transient_blob_failure_is_retried_and_the_container_created(
    services: SweepServices, storage_connection_string: str, unique_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Partner relay": Connector()}
    outage = BlobOutage(failures=1)
    container = f"fresh-{unique_name}"  # not created by anyone yet
    services.reports, backoffs = reports_through(outage, storage_connection_string, container)
    with caplog.at_level(logging.INFO, logger="grading"):
        report = run(services, at(10 + 5 / 60))

    assert len(backoffs) == 1
    link = services.store.get_sweep(report.sweep_id)["report"]
    assert link["container"] == container and link["blob"].endswith(f"/{report.sweep_id}.html")
    page, _ = stored_page(storage_connection_string, link)
    assert embedded_sweep(page)["sweep"]["sweepId"] == report.sweep_id
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_blob_names_keep_to_safe_characters_whatever_the_sweep_id() -> None:
    def name(sweep_id: str) -> str:
        return report_blob_name({"sweepId": sweep_id, "windowEnd": "2026-01-31T23:00:00Z"})

    assert name("20260131T230000Z-0badcafe") == "2026/01/20260131T230000Z-0badcafe.html"
    hostile = ["../../secrets", "a/b", "a?b", "a#b", "..", "\u202eevil\n", "x" * 500, "a b"]
    names = [name(h) for h in hostile]
    for blob in names:
        assert re.fullmatch(r"2026/01/[A-Za-z0-9][A-Za-z0-9_-]{0,127}\.html", blob), blob
    assert len(set(names)) == len(hostile)
    assert name("a/b") != name("a?b")


class StaticToken:
    """A token credential that is never asked for a token (no request is sent)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise AssertionError("no request expected")


def test_report_settings_name_the_container_and_the_blob_service() -> None:
    assert StorageSettings().report_container == "sweep-reports"
    for bad in ("Sweep_Reports", "ab", "a--b", "-reports", "x" * 64):
        with pytest.raises(SettingsError, match="GRADER_REPORT_CONTAINER"):
            load_section(StorageSettings, {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                           "GRADER_REPORT_CONTAINER": bad})
    credential = StaticToken()
    by_account = StorageConnection.from_settings(StorageSettings(account_name="stgrader1"), credential=credential)
    assert by_account.blob_uri == "https://stgrader1.blob.core.windows.net"
    service = by_account.blob_service()
    assert service.url.startswith("https://stgrader1.blob.core.windows.net") and service.credential is credential
    # Identity-based without a Blob URI: the tables work, and a report says what to set.
    without_blob = StorageConnection.from_settings(
        StorageSettings(table_service_uri="https://st.table.core.windows.net",
                        queue_service_uri="https://st.queue.core.windows.net"), credential=credential)
    store = ReportStore.open(without_blob, "sweep-reports")
    with pytest.raises(ReportError, match="AzureWebJobsStorage__blobServiceUri"):
        store.save([], {"sweepId": "s", "windowEnd": "2026-01-01T00:00:00Z"})


# ---------------------------------------------------------------------------------------------
# Storage faults: a failed record, a lost message


@pytest.mark.parametrize("release_fails", [False, True])
def test_storage_down_while_a_failed_sweep_is_recorded_is_logged_first_and_the_lease_released(
    services: SweepServices, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, release_fails: bool
) -> None:
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.fail_next = 1

    def storage_down(*args: Any, **kwargs: Any) -> Any:
        raise ServiceRequestError("https://acct.table.core.windows.net/Sweeps?sig=t0pS3cret unreachable")

    monkeypatch.setattr(services.store, "record_failed_sweep", storage_down)
    if release_fails:
        real_release = services.watermark.release
        monkeypatch.setattr(services.watermark, "release", storage_down)
    with caplog.at_level(logging.INFO, logger="grading"):
        report = run(services, at(10 + 5 / 60))  # nothing escapes

    assert report.status == "failed"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith("sweep failed") and "unreachable" in errors[0]  # logged before recording
    assert any("could not be recorded" in m for m in errors)
    assert "t0pS3cret" not in caplog.text
    if release_fails:
        assert any("could not release the lease" in m for m in errors)
        assert run(services, at(10 + 10 / 60)).status == "busy"  # the lease lapses on its own
        monkeypatch.setattr(services.watermark, "release", real_release)
    else:
        assert run(services, at(11 + 5 / 60)).status == "graded"  # released: the next run is not blocked
        assert sweep.windows == [(at(9 - 24), at(10))]


def test_an_incident_claimed_but_never_sent_is_resent_by_the_next_sweep(
    services: SweepServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": at(10.1)}
    services.ledger = IncidentLedger(services.store.tables.incidents, clock=lambda: clock["now"])
    sweep: ScriptedSweep = services.sweep  # type: ignore[assignment]
    sweep.connectors = {"Evil relay": Connector("truePositive", change_time=at(8))}
    real_send, real_release = services.queue.send, services.ledger.release

    def queue_down(*args: Any, **kwargs: Any) -> Any:
        raise ServiceRequestError("the queue service is unreachable")

    monkeypatch.setattr(services.queue, "send", queue_down)
    monkeypatch.setattr(services.ledger, "release", queue_down)  # and the claim cannot be given back
    first = run(services, at(10 + 5 / 60))
    assert first.status == "graded" and first.enqueued == [] and queued(services) == []
    [pending] = [e for e in services.ledger.all() if e["State"] == "pending"]

    monkeypatch.setattr(services.queue, "send", real_send)
    monkeypatch.setattr(services.ledger, "release", real_release)
    sweep.connectors["Evil relay"].classification = "falsePositive"  # not graded again: no fresh claim
    clock["now"] = at(11.1)
    second = run(services, at(11 + 5 / 60))

    [message] = queued(services)
    assert second.enqueued == [message.incident_key] == [pending["IncidentKey"]]
    assert services.ledger.get(message.incident_key)["State"] == "enqueued"
