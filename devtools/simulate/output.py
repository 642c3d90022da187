"""Schema-exact Arrow tables for the simulated export, and the writers for its three formats.

Why a module of its own: every table the simulator writes must carry every column of the
advanced-hunting schema file with the schema's type (typed empties where the simulator has
nothing: ``''`` for strings, null otherwise), whatever part of the simulator produced it, and
the bytes must be the same for the same seed. One place maps Kusto types to Arrow, fills the
gaps, rejects a misspelt column, and writes Parquet, CSV or JSON lines chunk by chunk so a
14-day, million-mail-a-day export never sits in memory at once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from devtools.simulate.arrays import const_str
from grading.hunting.rendering import Dialect, load_schema

FORMATS = ("parquet", "csv", "jsonl")

TABLES = (
    "EmailEvents",
    "CloudAppEvents",
    "IdentityLogonEvents",
    "EmailUrlInfo",
    "EmailAttachmentInfo",
    "AlertInfo",
    "AlertEvidence",
)
"""The tables a simulated export holds, one file each."""

KUSTO_TO_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "guid": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "long": pa.int64(),
    "int": pa.int32(),
    "real": pa.float64(),
    "bool": pa.bool_(),
    "dynamic": pa.string(),  # JSON text in Parquet/CSV; native JSON values in JSON lines
    "timespan": pa.duration("us"),
}


def table_columns(table: str) -> list[tuple[str, str]]:
    """Ordered ``(name, kusto type)`` of *table* from the advanced-hunting schema file."""
    schema = load_schema(Dialect.ADVANCED_HUNTING)
    if table not in schema:
        raise KeyError(f"table {table} is not in the advanced-hunting schema file")
    return [(c["name"], c["type"]) for c in schema[table]]


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([pa.field(name, KUSTO_TO_ARROW[kind]) for name, kind in table_columns(table)])


def _typed_empty(kind: str, n: int) -> pa.Array:
    if kind in ("string", "guid"):
        return const_str("", n)
    return pa.nulls(n, KUSTO_TO_ARROW[kind])


def _as_array(value: Any, kind: str, n: int) -> pa.Array:
    target = KUSTO_TO_ARROW[kind]
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Array):
        arr = value
    elif isinstance(value, np.ndarray) and kind == "datetime":
        arr = pa.array(value.astype(np.int64), pa.int64()).cast(target)
    elif isinstance(value, np.ndarray):
        arr = pa.array(value)
    elif value is None:
        return pa.nulls(n, target)
    elif isinstance(value, str) and kind in ("string", "guid", "dynamic"):
        return const_str(value, n)
    else:  # a scalar: repeat it
        arr = pa.array([value], target)
        return pc.take(arr, pa.array(np.zeros(n, dtype=np.int64)))
    if len(arr) != n:
        raise ValueError(f"column has {len(arr)} values, expected {n}")
    return arr if arr.type == target else arr.cast(target)


def conform(table: str, n: int, columns: Mapping[str, Any]) -> pa.Table:
    """A table with every schema column of *table*, in schema order and type.

    *columns* maps column names to Arrow/numpy arrays of length *n* or scalars (repeated).
    Datetime numpy arrays are µs since the epoch. A name the schema does not have is an error,
    so a typo in the simulator cannot silently leave a column empty.
    """
    cols = table_columns(table)
    known = {name for name, _ in cols}
    unknown = sorted(set(columns) - known)
    if unknown:
        raise KeyError(f"{table} has no column(s) {', '.join(unknown)}")
    arrays = [_as_array(columns[name], kind, n) if name in columns else _typed_empty(kind, n) for name, kind in cols]
    return pa.Table.from_arrays(arrays, schema=arrow_schema(table))


def _dynamic_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def rows_to_table(table: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A table from a few Python rows (admin activity, alerts): missing keys become typed empties.

    Dynamic values may be Python lists/dicts (serialised as compact JSON text) or JSON text.
    Datetime values are µs since the epoch.
    """
    kinds = dict(table_columns(table))
    names = {k for row in rows for k in row}
    unknown = sorted(names - set(kinds))
    if unknown:
        raise KeyError(f"{table} has no column(s) {', '.join(unknown)}")
    columns: dict[str, Any] = {}
    for name in names:
        kind = kinds[name]
        values = [row.get(name) for row in rows]
        if kind == "dynamic":
            values = [_dynamic_text(v) for v in values]
        elif kind in ("string", "guid"):
            values = ["" if v is None else v for v in values]
        elif kind == "datetime":
            columns[name] = pa.array(values, pa.int64()).cast(KUSTO_TO_ARROW[kind])
            continue
        columns[name] = pa.array(values, KUSTO_TO_ARROW[kind])
    return conform(table, len(rows), columns)


def sort_by_time(table: pa.Table) -> pa.Table:
    """Rows in time order; a stable sort, so one message's recipient rows stay together."""
    return table.take(pc.sort_indices(table, sort_keys=[("Timestamp", "ascending")]))


# ---------------------------------------------------------------------------------------------
# Writers


def _text_table(table: pa.Table) -> pa.Table:
    """Datetimes as ISO 8601 UTC text with a ``Z`` (what CSV/JSON exports carry)."""
    cols = []
    for field, col in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            col = pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ")
        cols.append(col)
    return pa.Table.from_arrays(cols, names=table.column_names)


class ExportWriter:
    """Appends chunks to one file per table in *folder*, in *fmt*; writes a file per table even
    when a table gets no rows, so every schema column is always there to be read."""

    def __init__(self, folder: Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.folder = folder
        self.fmt = fmt
        self.rows: dict[str, int] = {}
        self._parquet: dict[str, pq.ParquetWriter] = {}
        self._csv: dict[str, pacsv.CSVWriter] = {}
        self._csv_files: dict[str, Any] = {}
        self._duck: duckdb.DuckDBPyConnection | None = None
        self._tmp: Path | None = None
        self._jsonl_started: set[str] = set()

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.{self.fmt}"

    def write(self, table: str, data: pa.Table) -> None:
        if data.schema != arrow_schema(table):
            raise ValueError(f"{table}: chunk does not match the schema")
        self.rows[table] = self.rows.get(table, 0) + data.num_rows
        if self.fmt == "parquet":
            self._write_parquet(table, data)
        elif self.fmt == "csv":
            self._write_csv(table, data)
        else:
            self._write_jsonl(table, data)

    def _write_parquet(self, table: str, data: pa.Table) -> None:
        writer = self._parquet.get(table)
        if writer is None:
            writer = pq.ParquetWriter(self.path(table), data.schema, compression="zstd")
            self._parquet[table] = writer
        if data.num_rows:
            writer.write_table(data, row_group_size=1 << 20)

    def _write_csv(self, table: str, data: pa.Table) -> None:
        text = _text_table(data)
        writer = self._csv.get(table)
        if writer is None:
            handle = open(self.path(table), "wb")  # noqa: SIM115 - closed in close()
            self._csv_files[table] = handle
            writer = pacsv.CSVWriter(handle, text.schema)
            self._csv[table] = writer
        if data.num_rows:
            writer.write_table(text)

    def _write_jsonl(self, table: str, data: pa.Table) -> None:
        target = self.path(table)
        if table not in self._jsonl_started:
            target.write_bytes(b"")
            self._jsonl_started.add(table)
        if not data.num_rows:
            return
        if self._duck is None:
            self._duck = duckdb.connect()
            self._duck.execute("SET threads = 1")  # one writer thread: the same bytes every run
            self._tmp = Path(tempfile.mkdtemp(prefix="simulate-jsonl-"))
        assert self._tmp is not None
        kinds = dict(table_columns(table))
        select = ", ".join(
            f'CAST("{name}" AS JSON) AS "{name}"' if kinds[name] == "dynamic" else f'"{name}"'
            for name in data.column_names
        )
        part = self._tmp / "part.jsonl"
        self._duck.register("chunk", _text_table(data))
        try:
            literal = part.as_posix().replace("'", "''")
            # Column names come from the schema file and the path from tempfile, never from data.
            self._duck.execute(f"COPY (SELECT {select} FROM chunk) TO '{literal}' (FORMAT json)")  # noqa: S608
        finally:
            self._duck.unregister("chunk")
        with open(target, "ab") as out, open(part, "rb") as src:
            shutil.copyfileobj(src, out)

    def close(self) -> None:
        for writer in self._parquet.values():
            writer.close()
        for writer in self._csv.values():
            writer.close()
        for handle in self._csv_files.values():
            handle.close()
        if self._duck is not None:
            self._duck.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._parquet.clear()
        self._csv.clear()
        self._csv_files.clear()
        self._duck = None
        self._tmp = None

    def __enter__(self) -> ExportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
