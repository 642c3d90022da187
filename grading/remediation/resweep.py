"""An immediate sweep of all connectors, asked for by the remediation of a true positive.

Why a separate queue and not a call from the runner: a sweep runs hunting queries for minutes;
the remediation function must finish quickly and its retries must not re-run sweeps. The runner
puts a small request on SWEEP_REQUEST_QUEUE (:class:`grading.remediation.wiring.QueueSweepRequester`);
this function, behind its own queue trigger, grades the trailing GRADER_FIRST_WINDOW up to now
minus the ingestion delay (fresher than the timer's whole hours), stores it and enqueues any new TP
incident, exactly like the timer but outside the watermark. The window's end is rounded down to
:data:`GRAIN`, so the requests of one burst of incidents grade the same window, which the store
recognises as graded already: a burst costs one sweep.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from grading.baselines import floor_hour
from grading.hunting.sources.base import TelemetrySource
from grading.text import safe_text

log = logging.getLogger("grading.remediation")


GRAIN = timedelta(minutes=10)


def requested_window(now: datetime, services: Any) -> tuple[datetime, datetime]:
    ws = services.window_settings
    latest = (now - ws.ingestion_delay).astimezone(UTC)
    end = floor_hour(latest) + GRAIN * ((latest - floor_hour(latest)) // GRAIN)
    return end - ws.first_window, end


def run_requested_sweep(services: Any, source: Callable[[], TelemetrySource], body: str | bytes, *,
                        now: datetime | None = None) -> Any:
    """Grade the trailing window for a sweep request *body*; returns the scheduler's ``Graded``."""
    from grading.scheduler import grade_window, publish_incidents

    try:
        request = json.loads(body)
    except ValueError:
        request = {}
    start, end = requested_window(now or datetime.now(UTC), services)
    log.info("immediate sweep of all connectors for incident %s: %s .. %s",
             safe_text(request.get("incidentKey", "?") if isinstance(request, dict) else "?", 80),
             start.isoformat(), end.isoformat())
    graded = grade_window(services, source(), start=start, end=end)
    publish_incidents(services, graded)
    return graded
