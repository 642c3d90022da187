"""Load an export folder into DuckDB, normalised to the advanced-hunting schema.

Why a normalising loader: real exports differ from one another (docs/architecture.md, "Export folder").
A portal CSV holds only the columns its query projected, column-name case drifts (``ISP`` /
``Isp``), Log Analytics writes ``TimeGenerated`` instead of ``Timestamp``, and every format
spells types its own way. The hunting queries are written once, against the schema in
``schemas/ah.json``; this module makes every export look exactly like that schema, so a query
that runs here runs the same in Defender.

Files: one per table (``<Table>.parquet|.csv|.jsonl|.json``), or the Defender streaming API's
records anywhere under the folder (``streaming.py``: the storage account's container tree as
downloaded, or one file of records), tables told by each record's ``category``. Anything else
found is named in the report, never skipped without a word.

How: DuckDB reads each file itself (``read_parquet`` / ``read_csv`` / ``read_json_objects``),
and one ``CREATE ... AS SELECT`` per table casts every column to its schema type. No row
passes through Python, so a multi-million-row export loads in seconds and in bounded memory.
Typed Parquet files become views (columnar: a query reads only its columns); CSV, JSON lines
and Parquet with text columns become tables, parsed once, because a sweep runs about a dozen
queries over the same tables and re-parsing text for each would cost far more (see ``_create``).

A cell that cannot be what its column says (a datetime that does not parse, ``maybe`` in a
bool column) stops the load with the file, column and value: grading on silently nulled
times would be grading on wrong data.
"""

# SQL text is built here on purpose (DuckDB table functions take file paths and column lists
# as SQL), and every identifier and literal in it goes through sql_ident / sql_string.
# ruff: noqa: S608

from __future__ import annotations

import csv
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import duckdb_kql

import grading.sources.local.streaming as streaming
from grading.hunting.rendering import SCHEMA_DIR, Dialect, column_aliases, known_tables, load_schema, table_aliases
from grading.sources.base import TelemetrySourceError
from grading.sources.local.sql import sql_ident, sql_string
from grading.text import safe_text

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

FORMATS: Mapping[str, str] = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".json": "json"}
"""File suffix -> format name. One file per table, named after the table. ``.json`` holds JSON
lines or one JSON array; either JSON suffix may hold streaming API records instead."""
STREAMING = "streaming"
"""The format name of a table read from the Defender streaming API's records."""
JSON_SUFFIXES = (".json", ".jsonl")

CSV_MAX_LINE_BYTES = 2_000_000
"""The longest CSV line (a row, quoted newlines included) the loader reads: DuckDB's own default,
spelt out so the error can say it. A longer line is a field that is not telemetry the queries read
(a whole file in RawEventData); Parquet and JSON lines carry such fields without this limit."""
_LINE_TOO_LONG = re.compile(r"CSV Error on Line: (\d+).*?Maximum line size of (\d+) bytes exceeded\. "
                            r"Actual Size:\s*(\d+) bytes", re.DOTALL)
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")

TIME_COLUMN = "Timestamp"
LA_TIME_COLUMN = "TimeGenerated"
LATEST_TIME_TABLES = ("EmailEvents", "CloudAppEvents")

REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = {"EmailEvents": ("NetworkMessageId", "Connectors")}
"""Columns without which nothing can be graded (no mail can be counted or tied to a connector):
:func:`check_gradable` refuses an export without them, naming them."""
KEY_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "CloudAppEvents": ("ActionType",),
    "IdentityLogonEvents": ("ActionType",),
}
"""Columns a table's queries cannot do without: when a file lacks one, every query reading the
table reports "not checked" (and a required result makes the sweep incomplete, its verdicts
``unknown``) instead of running on filled empties."""
LAST_VALID_TIME = "9999-12-31"
"""A datetime at or after this (or ``infinity``) is a bad cell: nothing can compute a window past it."""

# Log Analytics' portal CSV export writes datetime headers as "TimeGenerated [UTC]".
_UTC_HEADER_SUFFIX = re.compile(r"\s*\[UTC\]\s*$", re.IGNORECASE)

# Kusto type -> the DuckDB type a normalised column gets. duckdb-kql renders datetimes as
# naive TIMESTAMP in UTC, so datetimes are stored that way too (no mixed-zone comparisons).
DUCKDB_TYPES: Mapping[str, str] = {
    "string": "VARCHAR",
    "datetime": "TIMESTAMP",
    "long": "BIGINT",
    "int": "INTEGER",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
    "dynamic": "JSON",
}

# Marker DuckDB's error() carries out of a failed load, so the Python side can name the
# column and the value instead of showing a bare "Invalid Input Error".
_BAD_CELL = "connector-grader-bad-cell:"
_BAD_CELL_RE = re.compile(re.escape(_BAD_CELL) + r"(-?\d+):(.*)", re.DOTALL)

_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL)", re.I)
_INTEGER = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT)\b", re.I)
_NESTED = re.compile(r"(\[\d*\]$|^STRUCT|^MAP|^UNION)", re.I)
_TIMESTAMP = re.compile(r"^(TIMESTAMP|DATE$)", re.I)
_NULL_TYPE = {'"NULL"', "NULL"}
"""DuckDB's type of a column with no value at all (a Parquet writer's all-null column)."""

TYPE_SUFFIXES = ("string", "long", "int", "real", "double", "bool", "boolean", "datetime", "dynamic", "guid",
                 "timespan", "decimal")
"""Kusto's type names: ``union`` renames a column that two tables type differently to ``<Column>_<type>``
(``UserAgent_string``, ``ReportId_long``), so an export of a union query carries those names."""


class ExportError(TelemetrySourceError):
    """The export folder cannot be loaded; the message names the file and what to do."""


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class TableReport:
    """How one file (or one table's streaming records) became one table."""

    table: str
    file: Path
    """The file read; for streaming records, the first of :attr:`files`."""
    format: str
    """parquet, csv, jsonl, json or streaming."""
    dialect: Dialect
    """``la`` when the file carries Log Analytics' ``TimeGenerated``, else ``ah``."""
    rows: int
    columns_filled: tuple[str, ...]
    """Schema columns the file lacks, filled with typed empties ('' or null)."""
    columns_ignored: tuple[str, ...]
    """File columns that are not in the schema (e.g. Log Analytics' TenantId, Type)."""
    columns_renamed: tuple[tuple[str, str], ...] = ()
    """(file spelling, schema spelling) pairs where the names differ (ISP -> Isp)."""
    key_columns_missing: tuple[str, ...] = ()
    """:data:`KEY_COLUMNS` the file lacks: the table's queries report "not checked"."""
    future_rows: int = 0
    """Rows dated after the clock plus GRADER_CLOCK_SKEW, excluded from the table."""
    latest_future: datetime | None = None
    """The latest of those rows' times."""
    files: tuple[Path, ...] = ()
    """Every file the table's rows came from (several streaming blobs; else the one file)."""
    live_name: str = ""
    """The table's name as the export gave it (the file's stem, or the records' category): an older
    table name shows here (``AADSignInEventsBeta``)."""
    label: str = ""
    """How the table's files are named in messages."""
    columns_suffixed: tuple[tuple[str, str], ...] = ()
    """(file column, schema column) read from a union query's type-suffixed names (``UserAgent_string``)."""
    columns_null: tuple[str, ...] = ()
    """Schema columns whose file type is NULL (a Parquet writer's all-null column): read as empty."""

    @property
    def name(self) -> str:
        """The label, or the file's name."""
        return self.label or self.file.name


@dataclass(frozen=True)
class ExportReport:
    """What the loader did with a folder, to be shown once to whoever runs the sweep."""

    folder: Path
    tables: Mapping[str, TableReport]
    missing_optional: tuple[str, ...]
    """Optional tables with no file: checks that need them report "not checked"."""
    ignored_files: tuple[str, ...]
    """Files the loader did not read (paths relative to the folder); :attr:`notices` says why."""
    latest_event_time: datetime | None
    """Newest Timestamp in EmailEvents / CloudAppEvents not after ``not_after``: the default ``--now``
    for the export."""
    earliest_mail_time: datetime | None = None
    """Oldest EmailEvents Timestamp: where the export's data span begins."""
    not_after: datetime | None = None
    """Rows dated after this (the clock plus GRADER_CLOCK_SKEW) were excluded."""
    streaming_notes: tuple[str, ...] = ()
    """What the streaming records held beyond the tables read (other tables, objects that are not
    records, files mixing tables), one line each."""
    ignored_reasons: Mapping[str, str] = field(default_factory=dict)
    """Ignored file -> why, where discovery knew better than its name tells (an empty blob)."""

    @property
    def future_rows(self) -> dict[str, int]:
        """Table -> rows excluded for being dated after :attr:`not_after`."""
        return {t.table: t.future_rows for t in self.tables.values() if t.future_rows}

    @property
    def notices(self) -> list[str]:
        """Human-readable notes on everything the loader filled, ignored or inferred.

        File and column names come from the export, so they are printed through safe_text: a
        crafted name cannot forge a log line or drive the terminal.
        """
        out: list[str] = []
        for t in self.tables.values():
            name = safe_text(t.name)
            if t.format == STREAMING:
                out.append(f"{name}: Defender streaming API records of AdvancedHunting-{safe_text(t.live_name)}, "
                           f"each record's properties read as one {t.table} row")
            if t.future_rows and self.not_after is not None:
                latest = f" (the latest {t.latest_future:%Y-%m-%dT%H:%M:%SZ})" if t.latest_future else ""
                out.append(f"{name}: {t.future_rows} row(s) dated after {self.not_after:%Y-%m-%dT%H:%M:%SZ} (the "
                           f"clock plus GRADER_CLOCK_SKEW) excluded{latest}")
            if t.key_columns_missing:
                out.append(f"{name}: no {', '.join(t.key_columns_missing)} column: the checks reading {t.table} "
                           "are not checked, the verdicts that need them unknown")
            time_from = next((a for a, b in t.columns_renamed if b == TIME_COLUMN), None)
            if t.dialect is Dialect.LOG_ANALYTICS:
                read_as = f"; {safe_text(time_from)} read as {TIME_COLUMN}" if time_from else ""
                out.append(f"{name}: Log Analytics export{read_as}")
            suffixed = {a for a, _ in t.columns_suffixed}
            renamed = [(a, b) for a, b in t.columns_renamed
                       if a not in suffixed and (b != TIME_COLUMN or a.lower() == "timestamp")]
            if renamed:
                out.append(f"{name}: column names matched ignoring case or by an older name: "
                           + ", ".join(f"{safe_text(a)} -> {b}" for a, b in renamed))
            if t.columns_suffixed:
                out.append(f"{name}: a union query's type-suffixed column(s) read as the schema's (the plain name "
                           "is absent): " + ", ".join(f"{safe_text(a)} -> {b}" for a, b in t.columns_suffixed))
            if t.columns_null:
                out.append(f"{name}: {len(t.columns_null)} column(s) typed NULL (no value in any row), read as "
                           "empty values: " + ", ".join(t.columns_null))
            if t.columns_filled:
                out.append(f"{name}: {len(t.columns_filled)} schema column(s) absent, filled with empty "
                           "values: " + ", ".join(t.columns_filled))
            if t.columns_ignored:
                out.append(f"{name}: {len(t.columns_ignored)} column(s) not in the {t.table} schema, "
                           "ignored: " + ", ".join(safe_text(c, 80) for c in t.columns_ignored))
        out.extend(safe_text(n, 2000) for n in self.streaming_notes)
        for file_name in self.ignored_files:
            why = self.ignored_reasons.get(file_name) or ignored_reason(file_name)
            out.append(f"{safe_text(file_name)}: ignored ({why})")
        if self.missing_optional:
            out.append("no file for " + ", ".join(self.missing_optional)
                       + ": checks that need them report 'not checked'")
        return out


def ignored_reason(relative: str) -> str:
    """Why the loader did not read a file (given relative to the folder): said beside its name."""
    path = Path(relative)
    by_lower = {name.lower() for name in known_tables() | {a for v in table_aliases().values() for a in v}}
    if len(path.parts) > 1 and path.suffix.lower() in JSON_SUFFIXES:
        return "not Defender streaming API records; a table file goes at the top of the folder"
    if len(path.parts) > 1:
        return "in a subfolder, where only Defender streaming API records (.json) are read"
    if path.stem.lower() in by_lower:
        return (f"{path.suffix or 'no suffix'} is not a format the loader reads; save {path.stem} as .parquet, "
                ".csv, .jsonl or .json")
    return "not <Table>.parquet|.csv|.jsonl|.json for a known table, nor streaming API records"


def format_report(report: ExportReport) -> str:
    """The report as a short block of text for a terminal or a log, one line per fact."""
    lines = [f"Export {safe_text(report.folder)}:"]
    for t in report.tables.values():
        lines.append(
            f"  {t.table:<22} {t.rows:>10,} rows  {t.format:<9} {t.dialect.value}  {safe_text(t.name)}"
        )
    latest = report.latest_event_time.isoformat() if report.latest_event_time else "none"
    lines.append(f"  latest event time: {latest}")
    lines.extend(f"  note: {n}" for n in report.notices)
    return "\n".join(lines)


@dataclass
class LoadedExport:
    """An open DuckDB connection holding the normalised tables, and how they got there.

    Close it (or use it as a context manager) to release the connection and the temporary
    database file the loader created.
    """

    connection: DuckDBPyConnection
    report: ExportReport
    workdir: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        self.connection.close()
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None

    def __enter__(self) -> LoadedExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Finding the files


@dataclass(frozen=True)
class TableFiles:
    """Where one table's rows are: one table file, or the streaming records of its category."""

    table: str
    paths: tuple[Path, ...]
    format: str
    live_name: str
    """The name the export gives the table (file stem, or the category's table name)."""
    label: str
    categories: tuple[str, ...] = ()
    """Streaming: the category table names read (as written in the records)."""

    @property
    def path(self) -> Path:
        return self.paths[0]


@dataclass
class Discovery:
    """What a folder holds: each table's files, the files not read and why, streaming notes."""

    found: dict[str, TableFiles]
    ignored: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def find_files(folder: Path, tables: Sequence[str], con: DuckDBPyConnection) -> Discovery:
    """Map each schema table to its files in *folder*; list the rest.

    A table file sits at the top of the folder, named after its table ignoring case (a table's older
    name counts too: ``AADSignInEventsBeta.csv`` holds ``EntraIdSignInEvents``). A ``.json`` or
    ``.jsonl`` file anywhere under the folder whose first object is a Defender streaming API record is
    read as such (``streaming.py``), its tables told by each record's ``category``.

    Two sources for one table is an error: guessing which one is current would be a coin toss.
    """
    if not folder.is_dir():
        raise ExportError(f"{folder}: not a folder; pass the folder that holds EmailEvents.csv etc.")
    aliases = table_aliases()
    names = {t: (t, *aliases.get(t, ())) for t in tables}
    by_lower = {name.lower(): t for t, all_names in names.items() for name in all_names}
    flat: dict[str, TableFiles] = {}
    records: list[Path] = []
    out = Discovery({}, [])
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        top = len(relative.parts) == 1
        table = by_lower.get(path.stem.lower()) if top else None
        fmt = FORMATS.get(path.suffix.lower())
        if path.suffix.lower() in JSON_SUFFIXES and _holds_records(con, path):
            records.append(path)
            continue
        if table is None or fmt is None:
            out.ignored.append(str(relative))
            if not top and path.stat().st_size == 0:
                out.reasons[str(relative)] = "an empty file"
            continue
        if table in flat:
            raise ExportError(
                f"{folder}: two files for table {table}: {flat[table].path.name} and {path.name}; "
                "keep one and move the other out of the folder"
            )
        flat[table] = TableFiles(table, (path,), fmt, path.stem, path.name)
    out.found = {**flat, **_streaming_tables(con, folder, records, names, flat, out.notes)}
    return out


def _holds_records(con: DuckDBPyConnection, path: Path) -> bool:
    """Whether *path*'s first object is a streaming API record (an unreadable file is not: it is read,
    and its error named, as the table file its name says, or listed as not read)."""
    if path.stat().st_size == 0:
        return False
    try:
        return streaming.is_streaming_record(streaming.first_record(con, path))
    except (duckdb.Error, UnicodeDecodeError, ValueError):
        return False


def _streaming_tables(con: DuckDBPyConnection, folder: Path, paths: Sequence[Path],
                      names: Mapping[str, Sequence[str]], flat: Mapping[str, TableFiles],
                      notes: list[str]) -> dict[str, TableFiles]:
    """Each schema table the streaming records in *paths* hold; what else they hold goes to *notes*."""
    if not paths:
        return {}
    try:
        found = streaming.census(con, paths)
    except duckdb.Error as exc:
        raise ExportError(
            f"{folder}: cannot read the streaming API files ({_first_line(exc)}); check each PT1H.json "
            "downloaded whole, or remove the broken one"
        ) from None
    out: dict[str, TableFiles] = {}
    for table, categories in sorted(streaming.categories_by_table(found, names).items()):
        if len({c.lower() for c in categories}) > 1:
            raise ExportError(
                f"{folder}: streaming records of {table} under two names: "
                + " and ".join(f"AdvancedHunting-{c}" for c in categories)
                + "; keep the records of one and move the other files out of the folder"
            )
        files = tuple(sorted({p for c in categories for p in found.tables[c]}))
        where = streaming.label(files, folder)
        if table in flat:
            raise ExportError(
                f"{folder}: two sources for table {table}: {flat[table].path.name} and the streaming API "
                f"records in {where}; keep one and move the other out of the folder"
            )
        out[table] = TableFiles(table, files, STREAMING, categories[0], where, tuple(categories))
    read = {c.lower() for t in out.values() for c in t.categories}
    other = {c: found.records(c) for c in found.tables if c.lower() not in read}
    if other:
        notes.append("streaming records of tables the grader does not read, ignored: "
                     + ", ".join(f"{c} ({n:,})" for c, n in sorted(other.items())))
    for path, count in sorted(found.other_records.items()):
        notes.append(f"{streaming.label([path], folder)}: {count:,} object(s) that are not streaming API records "
                     "(no AdvancedHunting- category or no properties object), ignored")
    for path in paths:
        held = sorted(c for c, files in found.tables.items() if path in files)
        if len(held) > 1:
            notes.append(f"{streaming.label([path], folder)}: records of {len(held)} tables ({', '.join(held)}), "
                         "split by category")
    return out


# ---------------------------------------------------------------------------------------------
# SQL building (every name and value is quoted here; none comes from us as raw text)


def _json_pointer(key: str) -> str:
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _bad_cell(index: int, text: str) -> str:
    """An expression that aborts the load naming column slot *index* and the offending text."""
    return f"error({sql_string(f'{_BAD_CELL}{index}:')} || left({text}, 200))"


def _as_text(expr: str, source_type: str) -> str:
    if source_type == "VARCHAR":
        return expr
    if source_type == "JSON":
        return f"({expr} ->> '$')"
    return f"CAST({expr} AS VARCHAR)"


def _parse_text(text: str, target: str, index: int) -> str:
    """Text -> *target*; blank is null; anything else that does not parse aborts the load."""
    blank = f"NULLIF(trim({text}), '') IS NULL"
    if target == "bool":
        low = f"lower(trim({text}))"
        return (f"CASE WHEN {blank} THEN NULL WHEN {low} IN ('true', '1') THEN true "
                f"WHEN {low} IN ('false', '0') THEN false ELSE {_bad_cell(index, text)} END")
    if target == "dynamic":
        return (f"CASE WHEN {blank} THEN NULL WHEN json_valid({text}) THEN CAST({text} AS JSON) "
                f"ELSE to_json({text}) END")
    if target == "datetime":
        cast = f"(TRY_CAST({text} AS TIMESTAMPTZ) AT TIME ZONE 'UTC')"
        parsed = f"CASE WHEN isfinite({cast}) AND {cast} < TIMESTAMP '{LAST_VALID_TIME}' THEN {cast} END"
    else:
        parsed = f"TRY_CAST({text} AS {DUCKDB_TYPES[target]})"
    return f"CASE WHEN {blank} THEN NULL ELSE COALESCE({parsed}, {_bad_cell(index, text)}) END"


def convert(expr: str, source_type: str, target: str, index: int) -> str:
    """SQL turning source column *expr* (DuckDB type *source_type*) into Kusto type *target*.

    Raises ValueError for a native type that cannot be the target (a number in a datetime
    column): that is a wrong export, not a bad cell.
    """
    src = source_type.upper()
    duck = DUCKDB_TYPES[target]
    nested = bool(_NESTED.search(src))
    if src in _NULL_TYPE:
        # A column no row has a value in (a Parquet writer types it NULL): an absent value of the
        # schema's type, as an empty cell would be.
        return empty_value(target)
    if target == "string":
        if nested:
            return f"COALESCE(CAST(to_json({expr}) AS VARCHAR), '')"
        return f"COALESCE({_as_text(expr, src)}, '')"
    if target == "dynamic":
        if src == "JSON":
            return (f"CASE WHEN json_type({expr}) = 'VARCHAR' "
                    f"THEN {_parse_text(_as_text(expr, src), target, index)} ELSE {expr} END")
        if src == "VARCHAR":
            return _parse_text(expr, target, index)
        return f"to_json({expr})"
    if src in {"VARCHAR", "JSON"}:
        return _parse_text(_as_text(expr, src), target, index)
    if target == "datetime" and _TIMESTAMP.match(src):
        value = f"({expr} AT TIME ZONE 'UTC')" if "TIME ZONE" in src else f"CAST({expr} AS TIMESTAMP)"
        return (f"CASE WHEN {expr} IS NULL OR (isfinite({value}) AND {value} < TIMESTAMP '{LAST_VALID_TIME}') "
                f"THEN {value} ELSE {_bad_cell(index, f'CAST({expr} AS VARCHAR)')} END")
    if target in {"long", "int", "real"} and (_NUMERIC.match(src) or src == "BOOLEAN"):
        if not narrows(src, target):
            return f"CAST({expr} AS {duck})"
        # TRY_CAST and a bad cell, not CAST: a BIGINT too large for an int column then names its
        # column and value instead of DuckDB's bare conversion error.
        return (f"CASE WHEN {expr} IS NULL THEN NULL ELSE COALESCE(TRY_CAST({expr} AS {duck}), "
                f"{_bad_cell(index, f'CAST({expr} AS VARCHAR)')}) END")
    if target == "bool" and src == "BOOLEAN":
        return expr
    if target == "bool" and _INTEGER.match(src):
        return f"({expr} <> 0)"
    raise ValueError(f"a {source_type} column cannot hold {target} values")


_FITS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"TINYINT", "SMALLINT", "INTEGER", "UTINYINT", "USMALLINT", "BOOLEAN"}),
    "long": frozenset({"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "BOOLEAN"}),
}


def narrows(source_type: str, target: str) -> bool:
    """True when a native number of *source_type* may not fit *target* (a BIGINT in an int column):
    its conversion can fail, so the loader checks every value once at load."""
    if target == "real":
        return False
    return source_type.upper() not in _FITS.get(target, frozenset())


def is_null_type(source_type: str) -> bool:
    """True for DuckDB's type of a column without any value (``"NULL"``)."""
    return source_type.upper() in _NULL_TYPE


def empty_value(target: str) -> str:
    """The typed empty an absent column is filled with: '' for strings, else null."""
    return "''" if target == "string" else f"CAST(NULL AS {DUCKDB_TYPES[target]})"


# ---------------------------------------------------------------------------------------------
# Reading one file


@dataclass(frozen=True)
class _Source:
    """A file as DuckDB sees it before normalising: a FROM clause and its columns."""

    from_clause: str
    columns: dict[str, str]
    """Column (or JSON key) name -> DuckDB type, in file order."""
    json_keys: bool = False
    """True for JSON lines: columns are keys extracted from one JSON object per line."""


def _describe(con: DuckDBPyConnection, from_clause: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {from_clause}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _csv_header(path: Path) -> list[str]:
    """The header row, read with Python's csv module (a UTF-8 BOM is skipped).

    Why not let DuckDB sniff it: given a row with one field too many, the sniffer decides the
    file has no header at all and loads the data under the wrong names, silently. With the
    columns spelt out, DuckDB instead rejects the ragged row, naming its line.
    """
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise ExportError(f"{path}: no header row; re-export the table with its column names")
    seen: dict[str, str] = {}
    for name in header:
        first = seen.setdefault(_UTC_HEADER_SUFFIX.sub("", name).lower(), name)
        if first is not name:
            # Which of the two holds the data would be a guess (and DuckDB names ignore case).
            how = "appears twice" if first == name else f"and {safe_text(name)} differ only by case"
            raise ExportError(f"{path}: columns {safe_text(first)} {how}; keep the one that holds the data and "
                              "re-export the table")
    return header


def _open_source(con: DuckDBPyConnection, files: TableFiles) -> _Source:
    literal = sql_string(str(files.path))
    if files.format == "parquet":
        from_clause = f"read_parquet({literal})"
        return _Source(from_clause, _describe(con, from_clause))
    if files.format == "csv":
        # Dialect and columns spelt out, not sniffed: a wrong guess would load silently wrong.
        header = _csv_header(files.path)
        columns = ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in header)
        from_clause = (f"read_csv({literal}, header = true, auto_detect = false, columns = {{{columns}}}, "
                       f"delim = ',', quote = '\"', escape = '\"', max_line_size = {CSV_MAX_LINE_BYTES})")
        return _Source(from_clause, dict.fromkeys(header, "VARCHAR"))
    if files.format == STREAMING:
        return _json_source(con, streaming.table_clause(files.paths, files.categories))
    # .jsonl: one object a line; .json: JSON lines or one array (or pretty-printed objects).
    layout = "newline_delimited" if files.format == "jsonl" else "auto"
    return _json_source(con, f"read_json_objects({literal}, format = '{layout}')")


def _json_source(con: DuckDBPyConnection, from_clause: str) -> _Source:
    """JSON objects (column ``json`` of *from_clause*) as a source whose columns are their keys.

    One pass learns every key of every object (a key may first appear late) and rejects an item
    that is not an object, which would otherwise load as a row of nulls."""
    not_object = _bad_cell(-1, "CAST(json AS VARCHAR)")
    keys = con.execute(
        "SELECT k FROM (SELECT unnest(CASE WHEN json_type(json) = 'OBJECT' THEN json_keys(json) "
        f"ELSE {not_object} END) AS k, row_number() OVER () AS n FROM {from_clause}) "
        "GROUP BY k ORDER BY min(n)"
    ).fetchall()
    return _Source(from_clause, {str(k[0]): "JSON" for k in keys}, json_keys=True)


@dataclass(frozen=True)
class _Matched:
    """How a file's columns meet the schema's."""

    feeds: dict[str, list[str]]
    """Schema column -> the file column(s) that feed it."""
    dialect: Dialect
    ignored: list[str]
    suffixed: dict[str, list[str]]
    """Schema columns fed by a union query's ``<Column>_<type>`` columns (a subset of *feeds*)."""


def _match_columns(
    schema_columns: Sequence[Mapping[str, str]],
    file_columns: Sequence[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> _Matched:
    """Schema column -> the file column(s) that feed it (case-insensitive), the dialect, and the
    file columns left over.

    A file with ``TimeGenerated`` is a Log Analytics export; its ``TimeGenerated`` stands in for
    ``Timestamp`` when the file has no ``Timestamp`` of its own. A schema column absent under its
    name and older names is read from a union query's type-suffixed columns (``ReportId_long``,
    ``ReportId_string``: each row has a value in one of them) where the file has those.
    """
    by_key: dict[str, list[str]] = {}
    for col in file_columns:
        by_key.setdefault(_UTC_HEADER_SUFFIX.sub("", col).lower(), []).append(col)
    dialect = Dialect.LOG_ANALYTICS if LA_TIME_COLUMN.lower() in by_key else Dialect.ADVANCED_HUNTING
    if TIME_COLUMN.lower() not in by_key and dialect is Dialect.LOG_ANALYTICS:
        by_key[TIME_COLUMN.lower()] = by_key.pop(LA_TIME_COLUMN.lower())
    matched: dict[str, list[str]] = {}
    suffixed: dict[str, list[str]] = {}
    used: set[str] = set()
    for column in schema_columns:
        name = column["name"]
        candidates = list(by_key.get(name.lower(), []))
        if not candidates:
            # An older name (AadDeviceId for EntraIdDeviceId) stands in only where the current one is
            # absent: AADSignInEventsBeta carries both, and the current one is the column to read.
            for alias in (aliases or {}).get(name, ()):
                candidates += by_key.get(alias.lower(), [])
        if not candidates:
            typed = [c for suffix in TYPE_SUFFIXES for c in by_key.get(f"{name}_{suffix}".lower(), [])]
            if typed:
                suffixed[name] = sorted(typed, key=lambda c: file_columns.index(c))
                candidates = suffixed[name]
        # The schema's own spelling first; the other spellings follow in file order.
        candidates = sorted(candidates, key=lambda c: c != name)
        if candidates:
            matched[name] = candidates
            used.update(candidates)
    ignored = [c for c in file_columns if c not in used]
    return _Matched(matched, dialect, ignored, suffixed)


@dataclass(frozen=True)
class _Plan:
    """The normalising SELECT for one file."""

    select: str
    from_clause: str
    filled: list[str]
    parsed: list[str]
    """Schema columns parsed from text (datetimes, numbers, bools, JSON): costly to redo for
    every query, and where a bad cell aborts the load."""
    null_typed: list[str]
    """Schema columns whose every feed is typed NULL: read as empty values."""
    checked: list[str]
    """Columns of native numbers that may not fit their schema type: a view evaluates them only when
    a query reads them, so :func:`_create` reads them once at load, where a bad value names itself."""


def _plan(
    source: _Source, schema_columns: Sequence[Mapping[str, str]], matched: Mapping[str, list[str]]
) -> _Plan:
    """Build the SELECT list normalising *source* to *schema_columns*.

    Raises ValueError naming the file column whose native type cannot be its schema column's."""
    exprs: list[str] = []
    filled: list[str] = []
    parsed: list[str] = []
    null_typed: list[str] = []
    checked: list[str] = []
    extract: list[str] = []
    for index, column in enumerate(schema_columns):
        name, target = column["name"], column["type"]
        if target not in DUCKDB_TYPES:
            raise ValueError(f"schema column {name} has type {target}, which the loader cannot store")
        feeds = matched.get(name)
        if not feeds:
            filled.append(name)
            exprs.append(f"{empty_value(target)} AS {sql_ident(name)}")
            continue
        if source.json_keys:
            # Keys may vary in case from line to line: take the first spelling a line has.
            slots = []
            for key in feeds:
                extract.append(sql_string(_json_pointer(key)))
                slots.append(f"__v[{len(extract)}]")
            raw = slots[0] if len(slots) == 1 else f"COALESCE({', '.join(slots)})"
            exprs.append(f"{convert(raw, 'JSON', target, index)} AS {sql_ident(name)}")
            if target != "string":
                parsed.append(name)
            continue
        # Several feeds only for a union's type-suffixed columns: each row has its value in one.
        converted = []
        for feed in feeds:
            source_type = source.columns[feed]
            try:
                converted.append(convert(sql_ident(feed), source_type, target, index))
            except ValueError:
                raise ValueError(f"column {safe_text(feed)} is {source_type}, which cannot hold {target} "
                                 "values") from None
            if source_type.upper() in {"VARCHAR", "JSON"} and target != "string":
                parsed.append(name)
            elif target in {"int", "long"} and _NUMERIC.match(source_type) and narrows(source_type, target):
                checked.append(name)
        if all(is_null_type(source.columns[f]) for f in feeds):
            null_typed.append(name)
        if len(converted) == 1:
            expr = converted[0]
        elif target == "string":
            expr = "COALESCE(" + ", ".join(f"NULLIF({c}, '')" for c in converted) + ", '')"
        else:
            expr = f"COALESCE({', '.join(converted)})"
        exprs.append(f"{expr} AS {sql_ident(name)}")
    from_clause = source.from_clause
    if source.json_keys:
        paths = ", ".join(extract) or sql_string("/")
        from_clause = f"(SELECT json_extract(json, [{paths}]) AS __v FROM {from_clause})"
    return _Plan(", ".join(exprs), from_clause, filled, sorted(set(parsed), key=parsed.index), null_typed,
                 sorted(set(checked), key=checked.index))


def _create(con: DuckDBPyConnection, table: str, fmt: str, plan: _Plan) -> int:
    """Create the normalised relation and return its row count.

    Parquet whose columns already have their types becomes a VIEW: DuckDB reads only the
    columns a query touches, so each of a sweep's queries over a 14M-row EmailEvents took
    about as long as over a table (1.3 s), while loading was instant and memory stayed under
    1 GB (a copy in an in-memory database took 7 GB). Everything that must be parsed from
    text (CSV, JSON lines, streaming records, Parquet with text times) becomes a TABLE, parsed
    once: over a view, the same query took 4-5 s, about twelve times a sweep. Building the table
    parses every cell, so a bad cell stops the load here, never a query mid-sweep.
    """
    kind = "VIEW" if fmt == "parquet" and not plan.parsed else "TABLE"
    con.execute(
        f"CREATE OR REPLACE {kind} {sql_ident(table)} AS SELECT {plan.select} FROM {plan.from_clause}"
    )
    if kind == "VIEW" and plan.checked:
        con.execute("SELECT " + ", ".join(f"max({sql_ident(c)})" for c in plan.checked)
                    + f" FROM {sql_ident(table)}").fetchall()
    # fetchall, not fetchone: this DuckDB refuses new work while a result is half read.
    return int(con.execute(f"SELECT count(*) FROM {sql_ident(table)}").fetchall()[0][0])


def load_table(con: DuckDBPyConnection, files: TableFiles, folder: Path | None = None) -> TableReport:
    """Create *files*' table on *con*, normalised to the schema; report what was done."""
    table, fmt = files.table, files.format
    # Errors name the file by its path; streaming records by the folder of their blobs.
    where: Path | str = files.path if fmt != STREAMING or len(files.paths) == 1 else (folder or files.path.parent)
    if fmt == STREAMING and len(files.paths) > 1:
        where = f"{where}: {safe_text(files.label)}"
    schema_columns = load_schema(Dialect.ADVANCED_HUNTING)[table]
    if fmt != STREAMING and files.path.stat().st_size == 0:
        raise ExportError(f"{where}: the file is empty; re-export the {table} table or remove the file")
    try:
        source = _open_source(con, files)
    except UnicodeDecodeError:
        raise ExportError(f"{where}: not UTF-8 text; save the {table} export as UTF-8") from None
    except duckdb.Error as exc:
        bad = _BAD_CELL_RE.search(str(exc))
        what = f"a line is not a JSON object: {bad.group(2)!r}" if bad else _first_line(exc)
        as_what = "the streaming API's records" if fmt == STREAMING else f"as {fmt}"
        raise ExportError(
            f"{where}: cannot read this {fmt} file ({what}); re-export the {table} table "
            f"{as_what} or remove the file"
        ) from None
    matching = _match_columns(schema_columns, list(source.columns), column_aliases(table))
    matched = matching.feeds
    if TIME_COLUMN not in matched:
        inside = " in the records' properties" if fmt == STREAMING else ""
        raise ExportError(
            f"{where}: no {TIME_COLUMN} (or {LA_TIME_COLUMN}) column{inside}; every hunting query filters on "
            f"time, so re-export {table} with its {TIME_COLUMN} column"
        )
    if not source.json_keys:
        # Two file columns for one schema column (connectors and CONNECTORS): which holds the data
        # is a guess, so the load stops. (JSON lines may spell a key differently line by line; a
        # union's type-suffixed columns each hold the rows of one of its tables.)
        twins = [feeds for name, feeds in matched.items() if len(feeds) > 1 and name not in matching.suffixed]
        if twins:
            raise ExportError(
                f"{where}: columns " + "; ".join(" and ".join(safe_text(c) for c in feeds) for feeds in twins)
                + f" differ only by case; keep the one that holds the data and re-export {table}"
            )
    key_missing = tuple(c for c in KEY_COLUMNS.get(table, ()) if c not in matched)
    try:
        plan = _plan(source, schema_columns, matched)
    except ValueError as exc:
        raise ExportError(
            f"{where}: {exc}; re-export {table} with the advanced-hunting column types"
        ) from None
    try:
        rows = _create(con, table, fmt, plan)
    except duckdb.Error as exc:
        raise _load_error(where, table, fmt, schema_columns, matched, exc) from None
    renamed = tuple((feeds[0], name) for name, feeds in matched.items() if feeds[0] != name)
    return TableReport(
        table=table,
        file=files.path,
        format=fmt,
        dialect=matching.dialect,
        rows=rows,
        columns_filled=tuple(plan.filled),
        columns_ignored=tuple(matching.ignored),
        columns_renamed=renamed,
        key_columns_missing=key_missing,
        files=files.paths,
        live_name=files.live_name,
        label=files.label,
        columns_suffixed=tuple((feed, name) for name, feeds in matching.suffixed.items() for feed in feeds),
        columns_null=tuple(plan.null_typed),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _load_error(
    where: Path | str,
    table: str,
    fmt: str,
    schema_columns: Sequence[Mapping[str, str]],
    matched: Mapping[str, list[str]],
    exc: duckdb.Error,
) -> ExportError:
    """Turn a DuckDB failure while loading into an error a person can act on."""
    text = str(exc)
    long_line = _LINE_TOO_LONG.search(text)
    if long_line:
        line, limit, size = (int(g) for g in long_line.groups())
        return ExportError(
            f"{where}: line {line} is {size:,} bytes long, longer than the {limit:,} bytes the loader reads in "
            f"one CSV line (CSV_MAX_LINE_BYTES); a field that size is not telemetry the queries read (a whole "
            f"file in a cell?). Export {table} as Parquet or JSON lines, which the loader reads without this "
            f"limit, or leave that column out of the export"
        )
    bad = _BAD_CELL_RE.search(text)
    if bad is None or int(bad.group(1)) < 0:
        ragged = _CSV_LINE.search(text)
        detail = f"{_first_line(exc)}: {_csv_problem(text)}" if ragged else _first_line(exc)
        return ExportError(
            f"{where}: cannot load {table} ({detail}); check the file is a complete {fmt} export, or remove it"
        )
    column = schema_columns[int(bad.group(1))]
    feeds = matched.get(column["name"], [column["name"]])
    value = bad.group(2)
    hint = {
        "datetime": "expected ISO 8601 UTC such as 2026-11-20T10:00:00Z or 2026-11-20 10:00:00",
        "bool": "expected true/false/True/False/1/0",
    }.get(column["type"], f"expected a {column['type']} value")
    return ExportError(
        f"{where}: column {safe_text(feeds[0])} holds {value!r}, which is not a {column['type']} ({hint}); "
        f"fix or re-export {table}"
    )


def _csv_problem(text: str) -> str:
    """DuckDB's own sentence on a CSV line it refused (after the line it quotes), shortened."""
    lines = [line.strip() for line in text.splitlines()[2:] if line.strip()]
    return safe_text(lines[0], 200) if lines else "the line does not fit the header"


# ---------------------------------------------------------------------------------------------
# The folder


def latest_event_time(con: DuckDBPyConnection, tables: Sequence[str] = LATEST_TIME_TABLES) -> datetime | None:
    """The newest Timestamp across *tables* (those present), as an aware UTC datetime."""
    present = {str(r[0]) for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    parts = [f"SELECT max({sql_ident(TIME_COLUMN)}) AS t FROM {sql_ident(t)}" for t in tables if t in present]
    if not parts:
        return None
    value: Any = con.execute(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)})").fetchall()[0][0]
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_gradable(report: ExportReport) -> None:
    """Raise ExportError naming the :data:`REQUIRED_COLUMNS` a loaded export lacks (the loader itself
    accepts any subset of columns; grading cannot)."""
    for table, columns in REQUIRED_COLUMNS.items():
        loaded = report.tables.get(table)
        absent = [c for c in columns if loaded is not None and c in loaded.columns_filled]
        if loaded is not None and absent:
            raise ExportError(
                f"{loaded.file}: no {', '.join(absent)} column; nothing can be graded without it (mail is counted "
                f"by NetworkMessageId and tied to a connector by Connectors): re-export {table} with it"
            )


def exclude_future(con: DuckDBPyConnection, report: TableReport, not_after: datetime) -> TableReport:
    """Drop the rows of *report*'s table dated after *not_after*; the report says how many and the
    latest. A table becomes filtered; a view is redefined with the filter."""
    table, cutoff = sql_ident(report.table), sql_string(not_after.astimezone(UTC).replace(tzinfo=None).isoformat())
    time = sql_ident(TIME_COLUMN)
    count, latest = con.execute(
        f"SELECT count(*), max({time}) FROM {table} WHERE {time} > CAST({cutoff} AS TIMESTAMP)").fetchall()[0]
    if not count:
        return report
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = ?",
                       [report.table]).fetchall()[0][0]
    if kind == "VIEW":
        every_row = sql_ident(f"{report.table}__unfiltered")
        con.execute(f"ALTER VIEW {table} RENAME TO {every_row}")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM {every_row} "
                    f"WHERE {time} IS NULL OR {time} <= CAST({cutoff} AS TIMESTAMP)")
    else:
        con.execute(f"DELETE FROM {table} WHERE {time} > CAST({cutoff} AS TIMESTAMP)")
    return replace(report, rows=report.rows - int(count), future_rows=int(count),
                   latest_future=latest.replace(tzinfo=UTC) if latest is not None else None)


def earliest_time(con: DuckDBPyConnection, table: str = "EmailEvents") -> datetime | None:
    value: Any = con.execute(f"SELECT min({sql_ident(TIME_COLUMN)}) FROM {sql_ident(table)}").fetchall()[0][0]
    return None if value is None else value.replace(tzinfo=UTC)


def load_export(folder: Path | str, *, connection: DuckDBPyConnection | None = None,
                not_after: datetime | None = None) -> LoadedExport:
    """Load every table file in *folder* into *connection*.

    Without a connection the loader opens one on a temporary database file (removed by
    :meth:`LoadedExport.close`): DuckDB then compresses the CSV / JSON lines tables and keeps
    only what queries touch in memory, where an in-memory database holds every row
    uncompressed (7 GB for 14M EmailEvents rows, against about 1 GB this way).

    Rows dated after *not_after* (the clock plus GRADER_CLOCK_SKEW) are excluded and counted in
    the report, so a stray future row neither moves the default ``--now`` nor is graded.

    Raises ExportError naming the file for a missing required table, two files for one
    table, an unreadable file, or a cell that is not what its column says.
    """
    folder = Path(folder)
    schema = [t for t in load_schema(Dialect.ADVANCED_HUNTING) if t in known_tables()]  # canonical names
    if not folder.is_dir():
        raise ExportError(f"{folder}: not a folder; pass the folder that holds EmailEvents.csv etc.")
    workdir = None
    if connection is None:
        workdir = tempfile.TemporaryDirectory(prefix="connector-grader-export-")
        connection = duckdb_kql.connect(str(Path(workdir.name) / "export.duckdb"))
    con = connection
    try:
        found = find_files(folder, schema, con)
        _require(folder, found)
        # Row order means nothing in a Kusto table; not keeping it lets DuckDB write a table
        # from several threads (a 3M-row CSV loaded in 7.6 s instead of 12.4 s).
        con.execute("SET preserve_insertion_order = false")
        try:
            tables = {table: load_table(con, found.found[table], folder) for table in schema if table in found.found}
        finally:
            con.execute("RESET preserve_insertion_order")
        if not_after is not None:
            tables = {name: exclude_future(con, report, not_after) for name, report in tables.items()}
        latest = latest_event_time(con)
        earliest = earliest_time(con)
    except BaseException:
        if workdir is not None:
            con.close()
            workdir.cleanup()
        raise
    return LoadedExport(
        connection=con,
        workdir=workdir,
        report=ExportReport(
            folder=folder,
            tables=tables,
            missing_optional=tuple(t for t in schema if t not in found.found),
            ignored_files=tuple(found.ignored),
            latest_event_time=latest,
            earliest_mail_time=earliest,
            not_after=not_after,
            streaming_notes=tuple(found.notes),
            ignored_reasons=dict(found.reasons),
        ),
    )


def _require(folder: Path, found: Discovery) -> None:
    """Raise ExportError naming each required table without a source, and any file that looks like
    it but was not read (``CloudAppEvents.xlsx``, a ``.json`` of another shape in a subfolder)."""
    missing = [t for t in _required_tables() if t not in found.found]
    if not missing:
        return
    parts = []
    for table in missing:
        near = [f for f in found.ignored if Path(f).stem.lower() == table.lower()]
        seen = "".join(f" ({safe_text(f)} is there but was not read: {found.reasons.get(f) or ignored_reason(f)})"
                       for f in near[:3])
        parts.append(f"{table}.parquet|.csv|.jsonl|.json{seen}")
    raise ExportError(
        f"{folder}: required table file(s) missing: " + ", ".join(parts)
        + "; export these tables from advanced hunting (or Log Analytics) into the folder, or put the "
        "Defender streaming API's blobs of them (AdvancedHunting-<Table> records) under it"
    )


def _required_tables() -> tuple[str, ...]:
    """Required tables as the schema file lists them (EmailEvents, CloudAppEvents)."""
    doc = json.loads((SCHEMA_DIR / f"{Dialect.ADVANCED_HUNTING.value}.json").read_text(encoding="utf-8"))
    return tuple(doc.get("required", LATEST_TIME_TABLES))
