"""From telemetry to response: a simulated tenant with hostile connector names is swept by the timer
function, its true positives reach the remediation queue as the sweep writes them, and the queue
function, in enforce mode, disables exactly the malicious connectors, revokes the sprayed admin's
sessions and asks for one immediate sweep of all connectors."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from fakes.tenant import ORGANIZATION, TENANT_ID, FakeTenant, StaticCredential
from remediation_support import fake_tenant, queue_for

from grading.cli import main
from grading.wiring import sweep_services

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeTenant]:
    yield from fake_tenant(tmp_path)


@pytest.fixture
def registered() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("function_app_e2e", ROOT / "function_app.py")
    assert spec and spec.loader
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {f.get_function_name(): f.get_user_function() for f in module.app.get_functions()}


def drain(connection_string: str, queue_name: str, function: Any) -> int:
    """Hand every message of *queue_name* to *function* as the host would; returns how many."""
    queue = queue_for(connection_string, queue_name)
    count = 0
    while (received := queue.receive_message()) is not None:
        function(QueueMessage(id=received.id, body=received.content.encode(), dequeue_count=received.dequeue_count))
        queue.delete_message(received)
        count += 1
    return count


@pytest.mark.slow
def test_a_swept_tenant_is_remediated_end_to_end(
    registered: dict[str, Any],
    fake: FakeTenant,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    storage_connection_string: str,
    unique_name: str,
) -> None:
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
                "--hostile-names",
                "--end",
                end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                str(folder),
            ]
        )
        == 0
    )
    labels = json.loads(folder.with_name("tenant.labels.json").read_text())
    scenarios = [s for s in labels["scenarios"] if s.get("connector")]
    for s in scenarios:
        fake.exchange.add(s["connectorType"], s["connector"])
    for admin in labels["admins"]:
        fake.graph.add_user(admin["objectId"], admin["upn"])
    for name, value in {
        "AzureWebJobsStorage": storage_connection_string,
        "GRADER_TABLE_PREFIX": unique_name,
        "REMEDIATION_QUEUE": f"{unique_name}-remediation",
        "SWEEP_REQUEST_QUEUE": f"{unique_name}-sweeps",
        "SWEEP_SCHEDULE": "0 5 * * * *",
        "GRADER_SOURCE": "local",
        "GRADER_DATA_DIR": str(folder),
        "REMEDIATION_MODE": "enforce",
        "REMEDIATION_MAX_DISABLES_PER_HOUR": "10",
        "EXCHANGE_TENANT_ID": TENANT_ID,
        "EXCHANGE_ORGANIZATION_DOMAIN": ORGANIZATION,
        "EXCHANGE_ENDPOINT": fake.server.origin,
        "GRAPH_ENDPOINT": fake.server.origin,
        "REMEDIATION_WEBHOOK_URL": fake.webhook_url,
        "REQUESTS_CA_BUNDLE": str(fake.server.ca_file),
        "NO_PROXY": "127.0.0.1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("grading.wiring.default_credential", StaticCredential)

    registered["sweep_timer"](TimerRequest(past_due=False))
    handled = drain(storage_connection_string, f"{unique_name}-remediation", registered["remediation_queue"])

    malicious = {s["connector"] for s in scenarios if s["expectedClassification"] == "truePositive"}
    assert handled == len(malicious)
    for s in scenarios:
        item = fake.exchange.connector(s["connectorType"], s["connector"])
        assert item is not None
        assert item["Enabled"] is (s["connector"] not in malicious), s["id"]
    touched = {params["Identity"] for cmdlet, params in fake.exchange.mutations()}
    assert touched == malicious
    sprayed = next(s for s in scenarios if s["id"] == "compromised_admin_spray")["admin"]["objectId"]
    revoked = {path.split("/")[3] for path in fake.graph.revocations()}
    assert sprayed in revoked
    tp_admins = {s["admin"]["objectId"] for s in scenarios if s["connector"] in malicious and s.get("admin")}
    assert revoked <= tp_admins
    assert len(fake.webhook.posts) == handled

    # The immediate sweeps asked for grade the trailing day up to now once (the requests of one burst
    # share a window; it is the timer's own window only when the clock is just past the hour) and
    # find no incident that was not already handled.
    timer_sweep = sweep_services().store.sweeps()[0]
    requests = drain(storage_connection_string, f"{unique_name}-sweeps", registered["sweep_request_queue"])
    assert requests == handled
    sweeps = sweep_services().store.sweeps()
    assert len(sweeps) in (1, 2) and all(s["complete"] for s in sweeps)
    assert max(s["windowEnd"] for s in sweeps) >= timer_sweep["windowEnd"]
    assert drain(storage_connection_string, f"{unique_name}-remediation", registered["remediation_queue"]) == 0
