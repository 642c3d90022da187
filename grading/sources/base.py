"""The protocol every telemetry source implements, and the typed result it returns.

Why a result object rather than rows alone: the grader must never grade a partial answer as
complete. Every source says whether what it returns is complete, and if not, why (the
service's own reason), so a check can report ``unknown`` with that reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from grading.errors import ConfigurationError
from grading.hunting.rendering import Dialect, RenderedQuery


class TelemetrySourceError(ConfigurationError):
    """A source cannot run at all (bad configuration, unreadable export); names what to fix."""


@dataclass(frozen=True)
class Column:
    """A result column: its name and its Kusto type (string, long, int, real, bool, datetime,
    timespan, dynamic, guid)."""

    name: str
    type: str


@dataclass
class QueryResult:
    """What one rendered query returned.

    ``rows`` hold typed Python values: ``datetime`` (timezone-aware UTC) for datetime, ``int``
    for long/int, ``float`` for real, ``bool``, ``str``, ``timedelta`` for timespan, and parsed
    JSON (``list``/``dict``/scalars) for dynamic; ``None`` for a null.
    """

    name: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    complete: bool = True
    reason: str | None = None
    """Why the result is not complete (partial, truncated, timed out, failed), in words."""
    truncated: bool = False
    missing_tables: tuple[str, ...] = ()
    """Optional tables the query needs that the source does not have: its check is 'not checked'."""
    elapsed_seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    absent_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Optional columns (by table) the query reads that the tenant lacks: read as typed empties, so
    what they would show is not checked."""

    @property
    def checked(self) -> bool:
        """False where a table the query needs is absent: nothing was looked at."""
        return not self.missing_tables

    @classmethod
    def failed(cls, query: RenderedQuery, reason: str, *, elapsed: float = 0.0) -> QueryResult:
        return cls(name=query.name, columns=(), rows=[], complete=False, reason=reason,
                   elapsed_seconds=elapsed)

    @classmethod
    def not_checked(cls, query: RenderedQuery, missing: tuple[str, ...], *, reason: str | None = None) -> QueryResult:
        return cls(
            name=query.name,
            columns=(),
            rows=[],
            complete=True,
            missing_tables=missing,
            reason=reason or "not checked: table " + ", ".join(missing) + " is not available in this source",
        )


@runtime_checkable
class TelemetrySource(Protocol):
    """Runs rendered hunting queries for a time window.

    ``dialect`` tells the sweep which rendering to ask for. ``tables()`` returns the tables the
    source holds where it can know (a local export), or ``None`` where it learns only by asking
    (a cloud service: a missing table then comes back as ``missing_tables``).
    """

    name: str
    dialect: Dialect

    def tables(self) -> frozenset[str] | None: ...

    def run(self, query: RenderedQuery) -> QueryResult: ...

    def latest_event_time(self) -> datetime | None:
        """The newest event time the source holds (for ``--now`` on an export), else None."""
        ...
