"""What the Log Analytics and Defender sources share: typed values, error reading, identity.

Why shared: both services speak Kusto types (under different spellings) and both answer errors
as nested JSON; reading them the same way is what lets the grader not tell the sources apart
except by completeness (docs/architecture.md, "Telemetry sources").
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from grading.cloud.responses import parse_datetime
from grading.cloud.retry import RetryLog
from grading.hunting.live import ObservedTable, SchemaResolution, candidates, kql_name, resolve, view_sources
from grading.hunting.rendering import Dialect, RenderedQuery, la_views
from grading.sources.base import QueryResult

REQUIRED_TABLES = frozenset({"EmailEvents", "CloudAppEvents"})
"""Tables a sweep cannot do without (docs/architecture.md, "Export folder"); every other table is optional:
a check that needs an absent optional table is 'not checked', an absent required table fails."""

TIMESPAN_END_PAD = timedelta(minutes=1)
"""The service timespan is a coarse outer bound (the query's own parameters filter precisely);
its end is padded so an event stamped exactly at the end, which the query's inclusive
``between`` keeps, is not cut by an exclusive service bound."""


# ---------------------------------------------------------------------------------------------
# Kusto types and values

_TYPE_ALIASES = {
    # Kusto names (Log Analytics) and .NET names (Defender advanced hunting through Graph).
    "datetime": "datetime", "date": "datetime",
    "string": "string",
    "long": "long", "int64": "long",
    "int": "int", "int32": "int",
    "real": "real", "double": "real", "single": "real", "float": "real",
    "decimal": "decimal",
    "bool": "bool", "boolean": "bool", "sbyte": "bool",
    "timespan": "timespan", "time": "timespan",
    "guid": "guid", "uuid": "guid", "uniqueid": "guid",
    "dynamic": "dynamic", "object": "dynamic",
}


def kusto_type(name: str | None) -> str:
    """The Kusto type name for a service's column type (``Int64`` -> ``long``, ``Object`` -> ``dynamic``)."""
    low = (name or "").strip().lower()
    if low.startswith("system."):
        low = low[len("system."):]
    return _TYPE_ALIASES.get(low, low or "dynamic")


_SPAN = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")




def parse_timespan(text: str) -> timedelta:
    """Kusto's ``[-][d.]hh:mm:ss[.fffffff]`` -> timedelta."""
    m = _SPAN.match(text.strip())
    if not m:
        raise ValueError(f"not a timespan: {text[:40]!r}")
    neg, days, hours, minutes, seconds, frac = m.groups()
    value = timedelta(
        days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=int(seconds),
        microseconds=int((frac or "0")[:6].ljust(6, "0")),
    )
    return -value if neg else value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    raise ValueError(f"not a bool: {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"not a whole number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(f"not a whole number: {value!r}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        result = float(value.strip())  # also "NaN", "Infinity", "-Infinity" as Kusto writes them
        if math.isnan(result) and value.strip().lower() != "nan":
            raise ValueError(f"not a number: {value!r}")
        return result
    raise ValueError(f"not a number: {value!r}")


def _to_dynamic(value: Any) -> Any:
    if isinstance(value, str):
        if value == "":
            return None
        try:
            return json.loads(value)  # Log Analytics sends dynamic values as JSON text
        except ValueError:
            return value  # a dynamic holding a bare string
    return value


def _to_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        return None if value == "" else parse_datetime(value)
    raise ValueError(f"not a datetime: {value!r}")


def _to_timespan(value: Any) -> timedelta | None:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        return None if value == "" else parse_timespan(value)
    raise ValueError(f"not a timespan: {value!r}")


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


_CONVERTERS = {
    "datetime": _to_datetime,
    "long": _to_int,
    "int": _to_int,
    "real": _to_float,
    "decimal": _to_float,
    "bool": _to_bool,
    "timespan": _to_timespan,
    "dynamic": _to_dynamic,
    "string": _to_string,
    "guid": _to_string,
}


def to_python(ktype: str, value: Any) -> Any:
    """A service's JSON value for a column of Kusto type *ktype* as the typed Python value the
    grader expects (QueryResult's contract); ``None`` stays ``None``. Raises ValueError on a
    value that does not fit its type."""
    if value is None:
        return None
    convert = _CONVERTERS.get(ktype)
    return value if convert is None else convert(value)


# ---------------------------------------------------------------------------------------------
# Service error bodies














_UNRESOLVED = re.compile(
    r"Failed to resolve (?:table or column |table |tabular |scalar )?(?:expression|function) named '([^']+)'",
    re.IGNORECASE,
)


def unresolved_tables(messages: Iterable[str], tables: Iterable[str]) -> tuple[str, ...]:
    """Tables of *tables* that the service says it cannot resolve (the workspace or tenant does
    not have them). A name that is not one of the query's tables is a column: not returned."""
    wanted = {t.lower(): t for t in tables}
    # A table read from others (Log Analytics' sign-ins) is missing when the service misses one of them.
    wanted.update({s.lower(): t for t in tables if t in la_views() for s in la_views()[t].sources})
    found: list[str] = []
    for message in messages:
        for name in _UNRESOLVED.findall(message):
            table = wanted.get(name.lower())
            if table and table not in found:
                found.append(table)
    return tuple(found)


# ---------------------------------------------------------------------------------------------
# Time ranges


def utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime")
    return value.astimezone(UTC)


def iso_z(value: datetime) -> str:
    """``2024-02-01T08:00:00Z`` (whole seconds) for service timespans."""
    return utc(value).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_bounds(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime | None] | None:
    """The (start, end) to send as the service timespan: start floored to the second, end
    padded (:data:`TIMESPAN_END_PAD`) or None for "until now"; None when the query has no start."""
    if start is None:
        return None
    return utc(start).replace(microsecond=0), (utc(end) + TIMESPAN_END_PAD if end is not None else None)


# ---------------------------------------------------------------------------------------------
# The identity in use








def iter_rows(columns: list[tuple[str, str]], rows: Iterable[Iterable[Any]]) -> Iterator[dict[str, Any]]:
    """Positional rows -> typed dicts; a ValueError names the column and row."""
    for index, row in enumerate(rows):
        values = list(row)
        out: dict[str, Any] = {}
        for (name, ktype), value in zip(columns, values, strict=False):
            try:
                out[name] = to_python(ktype, value)
            except ValueError as exc:
                raise ValueError(f"row {index}, column {name} ({ktype}): {exc}") from None
        yield out


# ---------------------------------------------------------------------------------------------
# Results


def with_retries(reason: str, log: RetryLog) -> str:
    """*reason* plus what the retry policy did, when it did more than one attempt."""
    summary = log.summary()
    return f"{reason} [{summary}]" if summary else reason


def annotate(
    result: QueryResult, log: RetryLog, elapsed: float, size: int = 0, service: Any = None
) -> QueryResult:
    """Attach timing, attempts and response size to *result* (its ``stats``)."""
    result.elapsed_seconds = elapsed
    stats: dict[str, Any] = {
        "attempts": log.count,
        "retryWaitSeconds": round(log.waited, 3),
        "responseBytes": size,
    }
    if isinstance(service, dict) and isinstance(service.get("query"), dict):
        stats["serviceStatistics"] = service["query"]  # Log Analytics: execution time, resource usage
    result.stats = stats
    return result


def failed(query: RenderedQuery, reason: str, log: RetryLog, elapsed: float) -> QueryResult:
    return annotate(QueryResult.failed(query, with_retries(reason, log)), log, elapsed)


def not_checked(query: RenderedQuery, missing: tuple[str, ...], log: RetryLog, elapsed: float) -> QueryResult:
    return annotate(QueryResult.not_checked(query, missing), log, elapsed)


def missing_tables_outcome(query: RenderedQuery, messages: Iterable[str], log: RetryLog, elapsed: float,
                           required_reason: Callable[[str], str]) -> QueryResult | None:
    """The result of a failed query whose service says it lacks some of the query's tables: failed,
    naming the required ones (*required_reason* says where they come from), else "not checked" for
    optional ones; None when no table is missing."""
    required, optional = split_missing(unresolved_tables(messages, query.tables))
    if required:
        result = failed(query, required_reason(", ".join(required)), log, elapsed)
        result.missing_tables = required  # named, so a schema probe can tell "absent" from "failed"
        return result
    if optional:
        return not_checked(query, optional, log, elapsed)
    return None


def split_missing(missing: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) among tables a service says it does not have."""
    required = tuple(t for t in missing if t in REQUIRED_TABLES)
    return required, tuple(t for t in missing if t not in REQUIRED_TABLES)


# ---------------------------------------------------------------------------------------------
# The live schema

SCHEMA_TTL = timedelta(days=1)
"""How long a learnt table schema is trusted: tables change rarely, and a worker sweeping every
hour asks once a day."""


def schema_query(dialect: Dialect, table: str) -> RenderedQuery:
    """``Table | getschema``: one row per column (ColumnName, ColumnOrdinal, DataType, ColumnType)."""
    return RenderedQuery(f"schema:{table}", f"{kql_name(table)} | getschema", dialect, frozenset({table}))


def observed_table(table: str, rows: Iterable[dict[str, Any]]) -> ObservedTable:
    """A ``getschema`` answer as (column, Kusto type) pairs in column order. ``ColumnType`` is the
    Kusto type (``string``); ``DataType`` its .NET name (``System.String``), used where it is alone."""
    ordered = sorted(rows, key=lambda r: r.get("ColumnOrdinal") if isinstance(r.get("ColumnOrdinal"), int) else 0)
    columns = tuple(
        (str(r["ColumnName"]), kusto_type(r.get("ColumnType") or r.get("DataType")))
        for r in ordered
        if r.get("ColumnName")
    )
    return ObservedTable(table, columns)


class SchemaStore:
    """Where learnt schemas are kept: one per source instance by default; the app's wiring hands one
    store per workspace or tenant to the sources it builds for each run, so the hourly sweeps of one
    worker share a day's answers."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[datetime, ObservedTable | None]] = {}
        self.lock = threading.Lock()


class LiveSchemaCache:
    """Learns tables' live schemas through a source's own ``run`` and keeps them for a day.

    A table the service cannot resolve is remembered as missing (for a day too); a probe that fails
    otherwise (throttled, forbidden) is not remembered, and its table is reported as not learnt, so
    the queries fall back to the schema file's names."""

    def __init__(
        self,
        run: Callable[[RenderedQuery], QueryResult],
        dialect: Dialect,
        now: Callable[[], datetime],
        ttl: timedelta = SCHEMA_TTL,
        store: SchemaStore | None = None,
    ) -> None:
        self._run = run
        self._dialect = Dialect(dialect)
        self._now = now
        self._ttl = ttl
        self._store = store or SchemaStore()
        self.probes = 0
        """How many ``getschema`` queries were sent (for tests and the sweep's cost)."""

    def learn(self, tables: Iterable[str]) -> SchemaResolution:
        """The resolution for the canonical *tables*: each found under its name or an older one."""
        observed: dict[str, ObservedTable] = {}
        missing: list[str] = []
        unknown: dict[str, str] = {}
        sources: dict[str, tuple[str, ...]] = {}
        for canonical in sorted(set(tables)):
            parts = view_sources(self._dialect, canonical)
            if parts is not None:
                # Read from other tables (Log Analytics' sign-ins): each learnt on its own, the view
                # made of those the workspace has.
                present = []
                for part in parts:
                    found, why = self._lookup(part)
                    if found is not None:
                        observed[part] = found
                        present.append(part)
                    elif why is not None:
                        unknown[canonical] = why
                if present:
                    sources[canonical] = tuple(present)
                elif canonical not in unknown:
                    missing.append(canonical)
                continue
            for name in candidates(self._dialect, canonical):
                found, why = self._lookup(name)
                if found is not None:
                    observed[canonical] = found
                    break
                if why is not None:
                    unknown[canonical] = why
                    break
            else:
                missing.append(canonical)
        return resolve(self._dialect, observed, missing, unknown, learnt_at=self._now(), sources=sources)

    def _lookup(self, name: str) -> tuple[ObservedTable | None, str | None]:
        """(the table, None) when found, (None, None) when the tenant lacks it, (None, why) when the
        probe failed."""
        now = self._now()
        with self._store.lock:
            entry = self._store.entries.get(name)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1], None
        self.probes += 1
        result = self._run(schema_query(self._dialect, name))
        if result.missing_tables:
            with self._store.lock:
                self._store.entries[name] = (now, None)
            return None, None
        if not result.complete or not result.rows:
            return None, result.reason or "getschema returned no columns"
        table = observed_table(name, result.rows)
        with self._store.lock:
            self._store.entries[name] = (now, table)
        return table, None


class CloudSource:
    """The telemetry-source protocol as Log Analytics and Defender both answer it: tables are learnt
    per query (a missing one comes back as ``missing_tables``), the live schema through their
    :class:`LiveSchemaCache`, and there is no export to date. Subclasses set ``_client`` (closed
    with the source) and ``_schema``, and implement ``run``."""

    _client: Any
    _schema: LiveSchemaCache

    def tables(self) -> frozenset[str] | None:
        return None

    def live_schema(self, tables: Iterable[str]) -> SchemaResolution:
        """The tenant's schema of the canonical *tables* (``getschema``, cached for a day)."""
        return self._schema.learn(tables)

    def latest_event_time(self) -> datetime | None:
        return None

    def close(self) -> None:
        self._client.close()
