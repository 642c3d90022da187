"""Azure Functions entry points (Python v2 programming model): bindings only.

Each trigger is a few lines that call into :mod:`grading`; the logic, its settings and its tests
live there. Settings are read on the first invocation, not at import, so the host can index the
functions (and tests can list them) without any app setting.

Everything a trigger runs comes from :mod:`grading.wiring` (imported on first use).

* ``sweep_timer``: on %SWEEP_SCHEDULE% (hourly by default), grade the hours since the stored
  watermark (:func:`grading.scheduler.run_scheduled_sweep`); a late run (``past_due``) simply
  finds more hours to grade. A failed sweep makes the invocation fail, after it was recorded.
* ``maintenance_timer``: daily, retention cleanup and re-sending stranded incidents
  (:func:`grading.scheduler.run_maintenance`).
* ``remediation_queue`` and the sweep-request queue trigger, and the daily connector inventory
  timer: below the timers.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import azure.functions as func

app = func.FunctionApp()
log = logging.getLogger("grading.functions")
# The Azure SDKs log every HTTP request at INFO; keep the app's own logs readable.
logging.getLogger("azure").setLevel(logging.WARNING)

MAINTENANCE_SCHEDULE = "0 30 3 * * *"  # daily at 03:30 UTC, away from the hourly sweep at minute 5

_lock = threading.Lock()
_services: dict[tuple[tuple[str, str], ...], Any] = {}


def scheduler_services() -> Any:
    """The scheduler's clients, built once per set of storage/grader settings (the host reuses
    the process across invocations; tests change the settings between cases)."""
    from grading.wiring import sweep_services

    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AzureWebJobsStorage", "GRADER_",
                                                                                "REMEDIATION_"))))
    with _lock:
        if key not in _services:
            _services.clear()
            _services[key] = sweep_services()
        return _services[key]


def telemetry_source() -> Any:
    """The source GRADER_SOURCE names (built per run: a cloud source holds a credential)."""
    from grading.wiring import telemetry_source as build

    return build()


@app.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def sweep_timer(timer: func.TimerRequest) -> None:
    from grading.wiring import run_scheduled_sweep

    if timer.past_due:
        log.warning("sweep timer is past due; grading every hour since the watermark")
    report = run_scheduled_sweep(scheduler_services(), telemetry_source)
    if report.status == "failed":
        raise RuntimeError(f"scheduled sweep failed and was recorded as {report.sweep_id}: {report.error}")


@app.timer_trigger(schedule=MAINTENANCE_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def maintenance_timer(timer: func.TimerRequest) -> None:
    from grading.wiring import run_maintenance

    run_maintenance(scheduler_services())


# --- remediation: the remediation queue, immediate sweeps, the connector inventory ---

REMEDIATION_SETTINGS = ("AzureWebJobsStorage", "GRADER_", "REMEDIATION_", "EXCHANGE_", "GRAPH_", "SWEEP_REQUEST_")
INVENTORY_SCHEDULE = "0 45 2 * * *"  # daily at 02:45 UTC, before the maintenance run
_runners: dict[tuple[tuple[str, str], ...], Any] = {}


def remediation_runner() -> Any:
    """The remediation runner, built once per set of settings (clients hold a token cache)."""
    from grading.wiring import build_runner

    key = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(REMEDIATION_SETTINGS)))
    with _lock:
        if key not in _runners:
            _runners.clear()
            _runners[key] = build_runner()
        return _runners[key]


@app.queue_trigger(arg_name="msg", queue_name="%REMEDIATION_QUEUE%", connection="AzureWebJobsStorage")
def remediation_queue(msg: func.QueueMessage) -> None:
    """One TP incident. A bad message or a retryable failure raises after being recorded, so the
    host retries it and, after host.json's maxDequeueCount, moves it to the poison queue."""
    remediation_runner().handle(msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1)


@app.queue_trigger(arg_name="msg", queue_name="%SWEEP_REQUEST_QUEUE%", connection="AzureWebJobsStorage")
def sweep_request_queue(msg: func.QueueMessage) -> None:
    """An immediate sweep of all connectors, asked for by a remediation."""
    from grading.wiring import run_requested_sweep

    run_requested_sweep(scheduler_services(), telemetry_source, msg.get_body())


@app.timer_trigger(schedule=INVENTORY_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def connector_inventory_timer(timer: func.TimerRequest) -> None:
    """Daily read-only Get-Inbound/OutboundConnector snapshot (skipped until Exchange is configured)."""
    from grading.wiring import refresh_inventory

    if not os.environ.get("EXCHANGE_TENANT_ID") or not os.environ.get("EXCHANGE_ORGANIZATION_DOMAIN"):
        log.warning("connector inventory skipped: set EXCHANGE_TENANT_ID and EXCHANGE_ORGANIZATION_DOMAIN")
        return
    summary = refresh_inventory()
    log.info("connector inventory: %d connectors, %d changed, %d removed", summary.connectors, summary.changed,
             summary.removed)


# --- many tenants: the hourly fan-out, one tenant's sweep, one tenant's incident ---
# (docs/architecture.md, "Many tenants"). With no tenant registered the fan-out sends nothing and
# the two queue triggers never fire: the deployment grades only its own tenant, as above.

@app.timer_trigger(schedule="%SWEEP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def tenant_fanout_timer(timer: func.TimerRequest) -> None:
    """One message per due registered tenant on %TENANT_SWEEP_QUEUE%, on the sweep schedule."""
    from grading.wiring import fan_out_tenants

    result = fan_out_tenants()
    if result.failed:
        raise RuntimeError(f"tenant fan-out: {len(result.failed)} tenant(s) not queued; the next run sends them")


@app.queue_trigger(arg_name="msg", queue_name="%TENANT_SWEEP_QUEUE%", connection="AzureWebJobsStorage")
def tenant_sweep_queue(msg: func.QueueMessage) -> None:
    """One tenant's sweep on its own tables, watermark and lease. A failed sweep is recorded in that
    tenant's tables and fails this invocation only: the host retries it, the other tenants go on."""
    from grading.wiring import run_tenant_sweep_message

    run = run_tenant_sweep_message(msg.get_body())
    if run.status == "failed":
        raise RuntimeError(f"tenant {run.tenant_id}: sweep failed and was recorded as {run.sweep_id}")


@app.queue_trigger(arg_name="msg", queue_name="%TENANT_REMEDIATION_QUEUE%", connection="AzureWebJobsStorage")
def tenant_remediation_queue(msg: func.QueueMessage) -> None:
    """One registered tenant's TP incident, remediated inside that tenant only (its tables, its
    Exchange organisation and Graph tenant)."""
    from grading.wiring import handle_tenant_incident

    handle_tenant_incident(msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 1)


@app.timer_trigger(schedule=MAINTENANCE_SCHEDULE, arg_name="timer", run_on_startup=False, use_monitor=True)
def tenant_maintenance_timer(timer: func.TimerRequest) -> None:
    """Daily, for every registered tenant on its own tables: retention cleanup, stranded incidents
    re-sent, and its connector inventory when it has an Exchange organisation."""
    from grading.wiring import run_tenant_maintenance

    failed = [tenant for tenant, entry in run_tenant_maintenance().items() if entry.get("error")]
    if failed:
        raise RuntimeError(f"tenant maintenance failed for {len(failed)} tenant(s): {', '.join(failed[:10])}")
