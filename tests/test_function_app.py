"""The Functions entry points: their bindings as the host indexes them, and the decorated functions
called directly against Azurite with the real local source and grader."""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from grading.incident import parse_message
from grading.scheduler import SweepServices
from grading.settings import StorageSettings, all_settings, parse_ncrontab, parse_timespan
from grading.storage.watermark import DEFAULT_LEASE

ROOT = Path(__file__).resolve().parents[1]
PORTAL_EXPORT = ROOT / "tests" / "data" / "exports" / "portal"


def load_function_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("function_app", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def function_app() -> ModuleType:
    return load_function_app()


_indexed: dict[int, dict[str, Any]] = {}


def functions(module: ModuleType) -> dict[str, Any]:
    """The functions as the host indexes them (``get_functions`` may be called once per app)."""
    if id(module) not in _indexed:
        _indexed[id(module)] = {f.get_function_name(): f for f in module.app.get_functions()}
    return _indexed[id(module)]


def only_binding(function: Any) -> dict[str, Any]:
    [binding] = function.get_bindings_dict()["bindings"]
    return binding


@pytest.fixture
def app_settings(monkeypatch: pytest.MonkeyPatch, storage_connection_string: str, unique_name: str) -> str:
    """The app settings of a local Functions host, on Azurite; returns the table prefix."""
    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    monkeypatch.setenv("GRADER_TABLE_PREFIX", unique_name)
    monkeypatch.setenv("REMEDIATION_QUEUE", f"q-{unique_name}")
    monkeypatch.setenv("SWEEP_SCHEDULE", "0 5 * * * *")
    monkeypatch.setenv("GRADER_SOURCE", "local")
    return unique_name


# ---------------------------------------------------------------------------------------------
# Bindings and host.json


def test_the_sweep_timer_runs_on_the_sweep_schedule_setting(function_app: ModuleType) -> None:
    binding = only_binding(functions(function_app)["sweep_timer"])
    assert binding["type"] == "timerTrigger" and binding["name"] == "timer"
    assert binding["schedule"] == "%SWEEP_SCHEDULE%"
    assert "SWEEP_SCHEDULE" in all_settings()  # so the deployment must set it
    assert binding["useMonitor"] is True and binding["runOnStartup"] is False
    assert parse_ncrontab(StorageSettings().sweep_schedule) == "0 5 * * * *"  # hourly by default


def test_the_maintenance_timer_runs_daily(function_app: ModuleType) -> None:
    binding = only_binding(functions(function_app)["maintenance_timer"])
    assert binding["type"] == "timerTrigger" and binding["runOnStartup"] is False
    second, minute, hour, *rest = parse_ncrontab(binding["schedule"]).split()
    assert second.isdigit() and minute.isdigit() and hour.isdigit() and rest == ["*", "*", "*"]


def test_host_json_sets_the_bundle_queue_retries_encoding_and_timeout() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == 5 and queues["messageEncoding"] == "base64"
    assert parse_timespan(queues["visibilityTimeout"]) > timedelta(0)
    # A sweep must end before its watermark lease expires, or another run could take its window over:
    # the host stops an invocation at functionTimeout, no later than the lease (the sweep's own
    # deadline, GRADER_SWEEP_DEADLINE, ends it well before; tests/test_infra.py checks that).
    assert parse_timespan(host["functionTimeout"]) <= DEFAULT_LEASE
    assert host["logging"]["logLevel"]["default"] in {"Information", "Warning"}


# ---------------------------------------------------------------------------------------------
# The decorated functions, called directly


def test_a_sweep_whose_source_cannot_be_built_is_recorded_logged_and_fails_the_invocation(
    function_app: ModuleType,
    app_settings: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GRADER_DATA_DIR", str(tmp_path / "no-such-export"))
    sweep_timer = functions(function_app)["sweep_timer"].get_user_function()
    with caplog.at_level(logging.INFO, logger="grading"), pytest.raises(RuntimeError, match="failed and was recorded"):
        sweep_timer(TimerRequest(past_due=False))

    services: SweepServices = function_app.scheduler_services()
    [record] = services.store.sweeps()
    assert record["status"] == "failed" and "no-such-export" in record["errors"][0]
    assert any(r.levelno == logging.ERROR and r.getMessage().startswith("sweep failed") for r in caplog.records)


def test_a_sweep_over_hours_without_mail_is_recorded_incomplete_at_error_level(
    function_app: ModuleType, app_settings: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GRADER_DATA_DIR", str(PORTAL_EXPORT))  # its mail is days older than the clock
    sweep_timer = functions(function_app)["sweep_timer"].get_user_function()
    with caplog.at_level(logging.INFO, logger="grading"):
        sweep_timer(TimerRequest(past_due=True))

    services: SweepServices = function_app.scheduler_services()
    [record] = services.store.sweeps()
    assert record["status"] == "incomplete" and any("no EmailEvents" in e for e in record["errors"])
    assert any(
        r.levelno == logging.ERROR and r.name == "grading.sweep" and r.getMessage().startswith("sweep incomplete")
        for r in caplog.records
    )
    assert any(r.levelno == logging.WARNING and "past due" in r.getMessage() for r in caplog.records)
    # Held for a retry: the watermark stays at the window's start.
    assert services.watermark.watermark() == datetime.fromisoformat(record["windowStart"].replace("Z", "+00:00"))


def test_timers_sweep_a_live_looking_tenant_enqueue_once_and_clean_up(
    function_app: ModuleType, app_settings: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from grading.cli import main

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    folder = tmp_path / "tenant"
    assert (
        main(
            [
                "simulate",
                "--days",
                "4",
                "--emails-per-day",
                "300",
                "--connectors",
                "6",
                "--end",
                end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                str(folder),
            ]
        )
        == 0
    )
    monkeypatch.setenv("GRADER_DATA_DIR", str(folder))
    registered = functions(function_app)

    registered["sweep_timer"].get_user_function()(TimerRequest(past_due=False))
    services: SweepServices = function_app.scheduler_services()
    [record] = services.store.sweeps()
    assert record["status"] == "complete"
    verdicts = services.store.sweep_verdicts(record["sweepId"])
    incidents = {v["incidentKey"] for v in verdicts if v["classification"] == "truePositive"}
    assert incidents, "the simulated tenant holds true positives"
    wire = [m.content for m in services.queue.client.peek_messages(max_messages=32)]
    assert {parse_message(base64.b64decode(w).decode()).incident_key for w in wire} == incidents
    assert record["enqueued"] == len(incidents) == len(wire)

    # The next invocation within the same hour finds nothing to grade and enqueues nothing.
    registered["sweep_timer"].get_user_function()(TimerRequest(past_due=False))
    assert len(services.store.sweeps()) == 1
    assert len(list(services.queue.client.peek_messages(max_messages=32))) == len(wire)

    registered["maintenance_timer"].get_user_function()(TimerRequest(past_due=False))
    assert len(services.store.sweep_verdicts(record["sweepId"])) == len(verdicts)  # nothing was old enough
