"""Record the queries a sweep runs, and replay their results to a later sweep.

Why record at the source: the benchmark needs each query's time range (for rows scanned) and
its result (to replay grading without the engine), exactly as the sweep ran them. Wrapping the
source, rather than re-deriving the plan, keeps the benchmark right when the sweep's plan
changes: it sees what :func:`grading.sweep.run_sweep` rendered and got back, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from grading.hunting.rendering import RenderedQuery
from grading.sources.base import QueryResult, TelemetrySource


@dataclass
class Run:
    """One query run: what was asked (file name, time range, tables) and what came back."""

    query: str
    start: datetime | None
    end: datetime | None
    tables: frozenset[str]
    result: QueryResult

    @property
    def key(self) -> tuple[str, datetime | None, datetime | None]:
        return (self.query, self.start, self.end)

    @property
    def label(self) -> str:
        """The sweep's name for the run (it renames each result to its plan label)."""
        return self.result.name


class RecordingSource:
    """A TelemetrySource that runs every query on *inner* and keeps a :class:`Run` of each."""

    def __init__(self, inner: TelemetrySource) -> None:
        self.inner = inner
        self.name = inner.name
        self.dialect = inner.dialect
        self.runs: list[Run] = []

    def run(self, query: RenderedQuery) -> QueryResult:
        result = self.inner.run(query)
        self.runs.append(Run(query.name, query.start, query.end, query.tables, result))
        return result

    def tables(self) -> frozenset[str] | None:
        return self.inner.tables()

    def latest_event_time(self) -> datetime | None:
        return self.inner.latest_event_time()

    def __getattr__(self, name: str) -> Any:  # folder, now, report...: the inner source's
        return getattr(self.inner, name)


class ReplaySource:
    """A TelemetrySource answering each query from recorded runs, in no time: the same file over
    the same time range gets the recorded result (a copy of its row list)."""

    name = "replay"

    def __init__(self, runs: Iterable[Run], dialect: Any) -> None:
        self.dialect = dialect
        self._results = {run.key: run.result for run in runs}

    def run(self, query: RenderedQuery) -> QueryResult:
        recorded = self._results[(query.name, query.start, query.end)]
        return replace(recorded, rows=list(recorded.rows), stats=dict(recorded.stats))

    def tables(self) -> frozenset[str] | None:
        return None

    def latest_event_time(self) -> datetime | None:
        return None
