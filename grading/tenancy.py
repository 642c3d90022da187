"""Many tenants from one deployment: the hourly fan-out, one tenant's sweep, the cross-tenant summary.

Why the Functions scale-out as the engine: the timer puts one message per due tenant on the
tenant-sweep queue (TENANT_SWEEP_QUEUE) and returns in seconds; a queue trigger sweeps one tenant
per message, so the host spreads tenants over instances as the queue grows, retries a failed
tenant on its own and moves a tenant that keeps failing to the poison queue, while the others go
on. Each tenant's sweep is :func:`grading.scheduler.run_scheduled_sweep` on that tenant's own
services (its tables, watermark and lease, report folder and incident queue: built by
:func:`grading.wiring.tenant_sweep_services`), so everything the scheduler guarantees for one
tenant holds for each.

Concurrency: host.json's ``batchSize: 1`` and ``newBatchThreshold: 0`` make each instance sweep
one tenant at a time, and :class:`~grading.storage.tenants.SweepSlots` bounds the sweeps running
across all instances to TENANT_MAX_CONCURRENT_SWEEPS: a message that finds every slot held is put
back on the queue for :data:`DEFER` and acknowledged. Throttling stays per tenant: each tenant has
its own source client and retry budget, and a tenant whose service answers 429 slows only its own
sweep (and holds only its own slot).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from grading.classification import Classification
from grading.scheduler import (
    LEASE_BEYOND_DEADLINE,
    RunReport,
    SweepServices,
    run_requested_sweep,
    run_scheduled_sweep,
)
from grading.sources.base import TelemetrySource
from grading.storage.tenant_queues import TenantSweepQueue, TenantSweepRequest
from grading.storage.tenants import SweepSlots, Tenant, TenantRegistry
from grading.text import safe_text

log = logging.getLogger("grading.tenancy")

DEFER = timedelta(minutes=1)
"""How long a tenant sweep that found every slot held waits on the queue before its next try."""


@dataclass
class FanOut:
    """What one fan-out did: the tenants put on the queue, those skipped (disabled) and those whose
    message could not be sent (logged; the next run sends them)."""

    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def fan_out(registry: TenantRegistry, queue: TenantSweepQueue, *, now: datetime | None = None) -> FanOut:
    """One message per due tenant (every enabled one: a tenant with no whole hour left to grade finds
    that out from its watermark in one read). One tenant's failed send does not stop the others."""
    started = time.perf_counter()
    stamp = (now or datetime.now(UTC)).isoformat()
    out = FanOut()
    for tenant in registry.tenants():
        if not tenant.enabled:
            out.skipped.append(tenant.tenant_id)
            continue
        try:
            queue.send(TenantSweepRequest(tenant.tenant_id, "scheduled", stamp))
        except Exception:
            log.error("tenant fan-out: could not put tenant %s on queue %s; the next run sends it",
                      tenant.tenant_id, queue.name, exc_info=True)
            out.failed.append(tenant.tenant_id)
            continue
        out.sent.append(tenant.tenant_id)
    out.seconds = time.perf_counter() - started
    log.info("tenant fan-out: %d tenant sweep(s) queued on %s, %d disabled, %d failed, in %.2f s",
             len(out.sent), queue.name, len(out.skipped), len(out.failed), out.seconds)
    return out


@dataclass
class TenantRun:
    """One tenant-sweep message handled: ``graded`` | ``caught-up`` | ``busy`` | ``failed`` (the
    scheduler's statuses) or ``deferred`` (no slot free: the message was put back)."""

    tenant_id: str
    status: str
    report: RunReport | None = None
    sweep_id: str | None = None


def run_tenant_sweep(tenant: Tenant, services: SweepServices, source: Callable[[], TelemetrySource],
                     request: TenantSweepRequest, *, slots: SweepSlots | None = None,
                     requeue: Callable[[TenantSweepRequest, timedelta], Any] | None = None,
                     now: datetime | None = None) -> TenantRun:
    """Sweep *tenant* for *request* on its own *services*, holding a concurrency slot if *slots*."""
    now = now or datetime.now(UTC)
    slot = None
    if slots is not None:
        slot = slots.acquire(f"{tenant.tenant_id}/{uuid.uuid4().hex[:8]}", now=now)
        if slot is None:
            if requeue is not None:
                requeue(request, DEFER)
            log.info("tenant %s: every one of the %d sweep slots is held; tried again in %s", tenant.tenant_id,
                     slots.limit, DEFER)
            return TenantRun(tenant.tenant_id, "deferred")
    try:
        if request.kind == "requested":
            graded = run_requested_sweep(services, source, "{}", now=now)
            return TenantRun(tenant.tenant_id, "graded", sweep_id=graded.sweep_id)
        report = run_scheduled_sweep(services, source, now=now)
        if report.status == "failed":
            # The scheduler logged "sweep failed" (what the alert keys on); this line names the tenant.
            log.error("tenant sweep failed: tenant %s (%s): %s", tenant.tenant_id,
                            safe_text(tenant.display_name, 80), safe_text(report.error, 500))
        return TenantRun(tenant.tenant_id, report.status, report, report.sweep_id)
    finally:
        if slot is not None and slots is not None:
            slots.release(slot)


def slot_lease(services: SweepServices) -> timedelta:
    """A slot outlasts the sweep it guards as the watermark lease does."""
    return services.window_settings.sweep_deadline + LEASE_BEYOND_DEADLINE


# ---------------------------------------------------------------------------------------------
# The cross-tenant summary


def tenant_summary(tenant: Tenant, services: SweepServices) -> dict[str, Any]:
    """One row of the summary page: counts per classification of the connectors' latest verdicts,
    the last sweep (its status, completeness, window) and where its report is. Reads the tenant's
    own tables only; a tenant whose tables cannot be read gets a row saying why."""
    row: dict[str, Any] = {"tenantId": tenant.tenant_id, "displayName": tenant.display_name,
                           "enabled": tenant.enabled, "source": tenant.source, "mode": tenant.remediation_mode,
                           "counts": {c.value: 0 for c in Classification}, "connectors": 0,
                           "lastSweep": None, "error": None}
    try:
        for verdict in services.store.latest_verdicts():
            row["connectors"] += 1
            key = str(verdict.get("classification"))
            row["counts"][key] = row["counts"].get(key, 0) + 1
        mark = services.watermark.read() or {}
        last_id = mark.get("LastSweepId")
        record = services.store.get_sweep(str(last_id)) if last_id else None
        if mark.get("LastRunAt") or record:
            report = (record or {}).get("report") or {}
            row["lastSweep"] = {
                "sweepId": last_id, "status": mark.get("LastStatus") or (record or {}).get("status"),
                "ranAt": _iso(mark.get("LastRunAt")), "complete": (record or {}).get("complete"),
                "windowStart": (record or {}).get("windowStart"), "windowEnd": (record or {}).get("windowEnd"),
                "errors": list((record or {}).get("errors") or ([mark["LastError"]] if mark.get("LastError") else [])),
                "report": {"url": report.get("url"), "blob": report.get("blob"), "error": report.get("error")},
            }
    except Exception as exc:
        row["error"] = safe_text(f"{type(exc).__name__}: {exc}", 300)
    return row


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value) if value else None
