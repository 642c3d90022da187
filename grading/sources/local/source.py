"""The local telemetry source: the very same ``.kql`` files, run by duckdb-kql over an export.

Why: the grader must be testable, demonstrable and benchmarkable without a tenant. Running the
real query files (not a Python re-implementation of them) on exported telemetry means what is
tested here is what runs in Defender, within duckdb-kql's subset of KQL, which refuses what it
lacks instead of answering wrongly. Every refusal or error becomes a failed result with its
reason, never an exception into the grader and never a "complete" answer.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb_kql
from duckdb_kql.engine import schema as duckdb_schema
from duckdb_kql.params import as_datetime, bind
from duckdb_kql.translate import CLOCK_SLOT
from duckdb_kql.types import kusto_type

from grading.hunting.live import SchemaResolution, TableResolution
from grading.hunting.rendering import (
    PARAMS_END,
    PARAMS_START,
    Dialect,
    RenderedQuery,
    load_schema,
    optional_columns,
)
from grading.sources.base import Column, QueryResult
from grading.sources.local.caps import Cap, list_caps
from grading.sources.local.export import ExportError, ExportReport, LoadedExport, check_gradable, load_export

FETCH_ROWS = 2048
"""Rows converted at a time: bounds the raw (uncapped) DuckDB values held in memory."""

TRANSLATIONS_KEPT = 64
"""Translations a source keeps (:func:`declared_datetimes`): every query of a sweep, several times over."""

_DATETIME_LET = re.compile(r"^let ([A-Za-z_][A-Za-z0-9_]*) = datetime\(([0-9T:.Z+-]+)\);$")


def declared_datetimes(text: str) -> tuple[str, dict[str, str]] | None:
    """The rendered query with the datetime literals of its parameter block made declared query
    parameters (``declare query_parameters(windowStart:datetime, ...)``), and their values; None when
    it has none.

    Why: duckdb-kql translates KQL to SQL with a parser written in Python, which costs more than
    running most of the sweep's queries. The rendered text of a query differs from one sweep (or one
    backfill day) to the next only in its window's datetimes; declared, they are bound as values, so
    one translation serves every window (:meth:`LocalSource.run`). The query's meaning is the same:
    a declared datetime parameter is a datetime value, as the ``let`` was."""
    lines = text.split("\n")
    try:
        start = lines.index(PARAMS_START)
        end = lines.index(PARAMS_END, start)
    except ValueError:
        return None
    values: dict[str, str] = {}
    kept = []
    for line in lines[start + 1:end]:
        m = _DATETIME_LET.match(line)
        if m:
            values[m[1]] = m[2]
        else:
            kept.append(line)
    if not values:
        return None
    declare = "declare query_parameters(" + ", ".join(f"{name}:datetime" for name in values) + ");"
    return "\n".join([*lines[:start + 1], declare, *kept, *lines[end:]]), values


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise TypeError(f"expected a datetime, got {type(value).__name__}")


def _to_dynamic(value: Any) -> Any:
    # DuckDB hands JSON columns over as their text; nested native types arrive as Python values.
    return json.loads(value) if isinstance(value, str) else value


def _to_real(value: Any) -> float:
    return float(value)


def _to_int(value: Any) -> int:
    return int(value)


def _to_timespan(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    raise TypeError(f"expected a timespan, got {type(value).__name__}")


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "datetime": _to_datetime,
    "dynamic": _to_dynamic,
    "long": _to_int,
    "int": _to_int,
    "real": _to_real,
    "decimal": _to_real,
    "bool": bool,
    "timespan": _to_timespan,
    "string": str,
    "guid": str,
}


def result_column(name: str, duckdb_type: object) -> Column:
    """A result column named in Kusto's types; DuckDB's JSON type is what marks ``dynamic``.

    duckdb-kql gives every dynamic value (``make_set``, ``pack``, a dynamic table column) the
    JSON type, while plain strings are VARCHAR, so the type alone tells the two apart.
    """
    ktype = kusto_type(duckdb_type)
    if ktype == "decimal":
        # sum() of a long is DECIMAL(38,0) in DuckDB: a whole number, as Kusto's sum() of a long is.
        ktype = "long" if str(duckdb_type).replace(" ", "").endswith(",0)") else "real"
    return Column(name, ktype)


def _json_items(duckdb_type: object) -> bool:
    """A LIST whose items are JSON (``make_list(bag_pack(...))``): DuckDB hands the items over as text."""
    return str(duckdb_type).upper() == "JSON[]"


def convert_row(
    columns: tuple[Column, ...],
    row: tuple[Any, ...],
    json_items: frozenset[str] = frozenset(),
    caps: Mapping[str, Cap] | None = None,
) -> dict[str, Any]:
    """One DuckDB row as typed Python values keyed by column name (None stays None).

    *json_items* names the list columns whose items are JSON text, parsed item by item; *caps*
    cuts list columns to the size the query's ``make_set(..., N)`` allows (see ``caps.py``)."""
    out: dict[str, Any] = {}
    for column, value in zip(columns, row, strict=True):
        if value is None:
            out[column.name] = None
        elif column.name in json_items:
            out[column.name] = [json.loads(v) if isinstance(v, str) else v for v in value]
        else:
            out[column.name] = _CONVERTERS.get(column.type, str)(value)
        if caps and column.name in caps and isinstance(out[column.name], list):
            out[column.name] = caps[column.name].apply(out[column.name])
    return out


MEMORY_LIMIT_MB = 2560
"""DuckDB's memory for one export, at most (half the machine's memory where that is less)."""


def default_memory_limit_mb() -> int:
    """:data:`MEMORY_LIMIT_MB`, or half the physical memory where that is less.

    Why a limit: duckdb-kql runs ``dcount`` as an exact distinct count and ``make_set`` as a full
    list, so an hourly aggregate over a tenant whose mail all flows through connectors held every
    message id of 14 days in memory (11.7 GB for 11M rows and 500 connectors). With a limit DuckDB
    spills to disk and the same sweep stays within a few GB, somewhat slower."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError, AttributeError):
        return MEMORY_LIMIT_MB
    return max(256, min(MEMORY_LIMIT_MB, physical // 2))


class LocalSource:
    """Runs rendered advanced-hunting queries over an export folder (docs/architecture.md, "Export folder").

    *now*, if given, is what ``now()`` and ``ago()`` mean in every query (an export is a
    snapshot; its "now" is usually its latest event, see :meth:`latest_event_time`). Without
    it they mean the clock.
    """

    name = "local"
    dialect = Dialect.ADVANCED_HUNTING

    def __init__(self, folder: Path | str, now: datetime | None = None, *,
                 memory_limit_mb: int | None = None, not_after: datetime | None = None) -> None:
        """*not_after*: rows dated later (the clock plus GRADER_CLOCK_SKEW) are excluded and reported."""
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        self.folder = Path(folder)
        self.now = now
        self._export: LoadedExport = load_export(self.folder, not_after=not_after)
        try:
            check_gradable(self._export.report)
        except ExportError:
            self._export.close()
            raise
        # DuckDB would take 80% of the machine; past the limit it spills to the loader's
        # temporary folder instead (bench/RESULTS.md, "Memory").
        limit = memory_limit_mb or default_memory_limit_mb()
        self._export.connection.execute(f"SET memory_limit = '{int(limit)}MiB'")
        self._translations: OrderedDict[str, Any] = OrderedDict()
        self.translations = {"made": 0, "reused": 0}

    @property
    def report(self) -> ExportReport:
        """What the loader did with the folder (tables, filled and ignored columns)."""
        return self._export.report

    def tables(self) -> frozenset[str]:
        return frozenset(self._export.report.tables)

    def latest_event_time(self) -> datetime | None:
        return self._export.report.latest_event_time

    def live_schema(self, tables: Iterable[str]) -> SchemaResolution:
        """What the loader found for the canonical *tables*: the file each came from (an older table
        name included), the spellings it matched and the columns it filled. Only recorded: the
        loader already gave every table its canonical shape, so no query is rewritten."""
        schema = load_schema(self.dialect)
        found: dict[str, TableResolution] = {}
        missing = []
        for table in sorted(set(tables)):
            report = self._export.report.tables.get(table)
            if report is None:
                missing.append(table)
                continue
            kinds = {c["name"]: c["type"] for c in schema[table]}
            renamed = {canonical: spelt for spelt, canonical in report.columns_renamed
                       if canonical != "Timestamp" or spelt.lower() == "timestamp"}
            found[table] = TableResolution(
                canonical=table,
                live=report.live_name or report.file.stem,
                renamed=renamed,
                absent={c: kinds[c] for c in report.columns_filled},
                extra=report.columns_ignored,
                optional=optional_columns(self.dialect, table),
            )
        return SchemaResolution(self.dialect, found, tuple(missing), normalised=True)

    def earliest_event_time(self) -> datetime | None:
        """Where the export's mail begins: a sweep whose evaluation span starts earlier cannot judge."""
        return self._export.report.earliest_mail_time

    def run(self, query: RenderedQuery) -> QueryResult:
        """Run *query*; an absent table gives "not checked", any error a failed result."""
        if query.dialect is not self.dialect:
            return QueryResult.failed(
                query, f"query {query.name} is rendered for {query.dialect.value}; the local source "
                f"runs {self.dialect.value} queries"
            )
        missing = tuple(sorted(query.tables - self.tables()))
        if missing:
            return QueryResult.not_checked(query, missing)
        tables = self._export.report.tables
        lacking = tuple(sorted(t for t in query.tables if tables[t].key_columns_missing))
        if lacking:
            return QueryResult.not_checked(query, lacking, reason="not checked: " + "; ".join(
                f"{t} has no {', '.join(tables[t].key_columns_missing)} column" for t in lacking))
        started = time.perf_counter()
        # A cursor per query: its own connection to the same database, so queries from
        # several threads never share one half-read result.
        cursor = self._export.connection.cursor()
        try:
            result = self._execute(cursor, query.text)
            columns = tuple(result_column(d[0], d[1]) for d in result.description or ())
            json_items = frozenset(d[0] for d in result.description or () if _json_items(d[1]))
            # duckdb-kql ignores make_set's size: keep Kusto's caps (caps.py). Fetched in batches,
            # so uncapped lists are never all held as JSON text at once.
            names = {c.name for c in columns}
            caps = {k: v for k, v in list_caps(query.text).items() if k in names}
            rows = []
            while batch := result.fetchmany(FETCH_ROWS):
                rows.extend(convert_row(columns, row, json_items, caps) for row in batch)
        except Exception as exc:  # every failure becomes a failed result, never an exception
            elapsed = time.perf_counter() - started
            failed = QueryResult.failed(
                query, f"query {query.name} failed on the local export: {type(exc).__name__}: {exc}",
                elapsed=elapsed,
            )
            failed.stats.update(elapsed_seconds=elapsed, rows=0, engine=f"duckdb-kql {_version()}")
            return failed
        finally:
            cursor.close()
        elapsed = time.perf_counter() - started
        return QueryResult(
            name=query.name,
            columns=columns,
            rows=rows,
            elapsed_seconds=elapsed,
            stats={"elapsed_seconds": elapsed, "rows": len(rows), "engine": f"duckdb-kql {_version()}"},
        )

    def _execute(self, cursor: Any, text: str) -> Any:
        """Run *text* on *cursor* as ``duckdb_kql.execute`` does, translating it once per shape: a query
        whose datetimes are its only difference from one run before reuses that run's SQL, with the
        datetimes bound as values (:func:`declared_datetimes`). Without a fixed *now* (``now()`` would
        be the clock at translation) or with a ``query_now`` of its own, every run is translated."""
        declared = declared_datetimes(text) if self.now is not None and "query_now" not in text else None
        if declared is None:
            return duckdb_kql.execute(cursor, text, query_now=self.now)
        shape, values = declared
        translated = self._translations.get(shape)
        if translated is None:
            translated = duckdb_kql.to_sql(shape, schema=duckdb_schema(cursor), query_now=self.now)
            self._translations[shape] = translated
            if len(self._translations) > TRANSLATIONS_KEPT:
                self._translations.popitem(last=False)
            self.translations["made"] += 1
        else:
            self._translations.move_to_end(shape)
            self.translations["reused"] += 1
        bound, unbound = bind(list(translated.declarations), values)
        if unbound:  # not reachable: every declared name has its value
            raise ValueError(f"query parameters without a value: {', '.join(unbound)}")
        if CLOCK_SLOT in translated.parameters:
            bound[CLOCK_SLOT] = as_datetime(self.now, "query_now")
        cursor.execute("SET TimeZone='UTC'")  # as duckdb_kql.execute: the SQL's datetimes are UTC
        return cursor.execute(str(translated), bound)

    def close(self) -> None:
        """Release the DuckDB connection and the loader's temporary database."""
        self._export.close()

    def __enter__(self) -> LocalSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _version() -> str:
    return str(getattr(duckdb_kql, "__version__", "unknown"))
