"""Grading time: the sweep's work after its queries, for the tenant's connectors and for 10,000.

Why replay rather than re-query: grading cost grows with connectors, not with mail, and no
simulated tenant has 10,000 connectors. So the query results of a real sweep are replayed
through :func:`grading.sweep.run_sweep` by a :class:`~bench.recording.ReplaySource` (a
TelemetrySource that answers each query from the recorded results), once as they are and once
with every connector's rows cloned under new names until there are *n* connectors. The clones keep the
real rows (hourly traffic and history, changes, recipients, sender domains, URLs,
attachments), so each clone costs what a real connector costs; tenant-wide results (admin
profiles, alerts, similar senders) stay as they are, as they would in a tenant.

Two figures: the whole grading phase (``run_sweep`` over the replayed results: baselines,
facts, ``grade()``, sorting) and ``grade()`` alone, timed by wrapping the function the sweep
calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import grading.sweep as sweep_module
from bench.recording import ReplaySource, Run
from grading.hunting.rendering import Dialect
from grading.sweep import run_sweep

# Results keyed by connector: these are cloned; every other result is tenant-wide.
PER_CONNECTOR = ("connector_changes", "connector_traffic", "connector_history", "connector_domains",
                 "connector_urls", "connector_attachments")


def connectors_of(runs: Iterable[Run]) -> list[str]:
    """Connector names the sweep grades: those with traffic in the window or a change."""
    names: set[str] = set()
    for run in runs:
        if run.label in ("connector_traffic", "connector_changes"):
            names |= {r["Connector"] for r in run.result.rows if r.get("Connector")}
    return sorted(names)


def scale_runs(runs: list[Run], n: int) -> list[Run]:
    """*runs* with the per-connector rows of their connectors cloned to *n* connectors in all.

    Clone ``k`` of connector ``c`` is named ``"c #k"``; the originals keep their names."""
    names = connectors_of(runs)
    if not names:
        raise ValueError("the sweep graded no connector: nothing to scale")
    clone_of: dict[str, list[str]] = {c: [c] for c in names}
    for k in range(max(0, n - len(names))):
        source = names[k % len(names)]
        clone_of[source].append(f"{source} #{k + 1}")
    out = []
    for run in runs:
        if run.label not in PER_CONNECTOR:
            out.append(run)
            continue
        rows = []
        for row in run.result.rows:
            connector = row.get("Connector") or ""
            for name in clone_of.get(connector, [connector]):
                rows.append({**row, "Connector": name})
        out.append(replace(run, result=replace(run.result, rows=rows)))
    return out


@contextmanager
def timed_grade() -> Iterator[list[float]]:
    """Time every ``grade()`` call the sweep makes; yields the list the durations go into."""
    original = sweep_module.grade
    durations: list[float] = []

    def timed(facts: Any, policy: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return original(facts, policy)
        finally:
            durations.append(time.perf_counter() - started)

    sweep_module.grade = timed
    try:
        yield durations
    finally:
        sweep_module.grade = original


@dataclass(frozen=True)
class GradingTime:
    connectors: int
    seconds: float
    """The whole grading phase: run_sweep over replayed results."""
    grade_seconds: float
    """grade() alone, summed over connectors."""
    classifications: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        per = self.seconds / self.connectors if self.connectors else 0.0
        return {"connectors": self.connectors, "seconds": round(self.seconds, 3),
                "gradeSeconds": round(self.grade_seconds, 3), "msPerConnector": round(1000 * per, 3),
                "counts": self.classifications}


def time_grading(runs: list[Run], dialect: Dialect, *, now: datetime, window_start: datetime,
                 connectors: int | None = None, **sweep_kwargs: Any) -> GradingTime:
    """Replay the recorded *runs* (scaled to *connectors* if given) through run_sweep and time it."""
    if connectors is not None:
        runs = scale_runs(runs, connectors)
    source = ReplaySource(runs, dialect)
    with timed_grade() as durations:
        started = time.perf_counter()
        replayed = run_sweep(source, now=now, window_start=window_start, **sweep_kwargs)  # type: ignore[arg-type]
        seconds = time.perf_counter() - started
    return GradingTime(len(replayed.verdicts), seconds, sum(durations), dict(replayed.sweep["counts"]))
