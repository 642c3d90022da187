"""The Defender streaming API's records, as the export loader reads them.

Why: the streaming API (continuous export to a storage account or Event Hubs) is the cheapest way a
tenant keeps more than the portal's 30 days of advanced-hunting tables, and its files are what an
operator downloads. Microsoft documents each record as one JSON object (MicrosoftDocs/defender-docs
``defender-xdr/streaming-api-storage.md``)::

    {"time": "<when Defender received it>", "tenantId": "...", "operationName": "Publish",
     "category": "AdvancedHunting-<Table>", "properties": {<the advanced-hunting row>}}

A storage account holds one container per table, ``insights-logs-advancedhunting-<table>``, with one
``PT1H.json`` blob per hour (``tenantId=<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json``), each line one
record; Event Hubs wraps records as ``{"records": [...]}``. The row's own ``Timestamp`` is inside
``properties`` (the envelope's ``time`` is when Defender received it, not when the event happened),
and dynamic columns arrive either as nested JSON or as JSON text: the loader's converters read both.

What is here: telling a streaming file from a table file (its first record), the census of which
tables the files hold (tables are told by ``category``, never by the file or folder name, so a blob
mixing tables is split), and the FROM clause that unwraps ``properties`` for one table. Pure SQL
text; the loader (``export.py``) runs it.
"""

# ruff: noqa: S608 - SQL text built from quoted paths and literals only (sql_string).

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grading.sources.local.sql import sql_string

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection

CATEGORY_PREFIX = "advancedhunting-"
"""``category`` of a streaming record, lower-cased: ``AdvancedHunting-<Table>``."""

CONTAINER_PREFIX = "insights-logs-advancedhunting-"
"""The storage account's container of a table (lower case), for messages."""


_UNWRAP = ("unnest(CASE WHEN json_type(json, '$.records') = 'ARRAY' THEN json_extract(json, '$.records[*]') "
           "ELSE [json] END)")
"""One row per record of an object: ``{"records": [...]}`` (an Event Hubs batch) gives each of its
records, any other object is one record."""


def reader(paths: Sequence[Path], *, filename: bool = False) -> str:
    """``read_json_objects`` over *paths*: JSON lines (the blobs), one array or pretty-printed objects;
    with *filename*, each object's file in column ``filename``."""
    listed = ", ".join(sql_string(str(p)) for p in paths)
    return f"read_json_objects([{listed}], format = 'auto'{', filename = true' if filename else ''})"


def is_streaming_record(value: Any) -> bool:
    """A streaming API record (or an Event Hubs batch of them): ``category`` ``AdvancedHunting-...`` and
    ``properties`` an object."""
    if isinstance(value, dict) and isinstance(value.get("records"), list) and value["records"]:
        value = value["records"][0]
    return (isinstance(value, dict) and isinstance(value.get("properties"), dict)
            and str(value.get("category", "")).lower().startswith(CATEGORY_PREFIX))


def first_record(con: DuckDBPyConnection, path: Path) -> Any:
    """The first JSON object of *path* (None when it has none): enough to tell a streaming file."""
    rows = con.execute(f"SELECT json FROM {reader([path])} LIMIT 1").fetchall()
    return json.loads(rows[0][0]) if rows else None


@dataclass
class Census:
    """What the streaming files hold: records per table category and per file."""

    files: tuple[Path, ...] = ()
    tables: dict[str, dict[Path, int]] = field(default_factory=dict)
    """Category table name as written (``EmailEvents``) -> file -> records."""
    other_records: dict[Path, int] = field(default_factory=dict)
    """Objects in the files that are not streaming records (no ``AdvancedHunting-`` category or no
    ``properties`` object), per file: ignored, and said so."""

    def records(self, name: str) -> int:
        return sum(self.tables.get(name, {}).values())


def census(con: DuckDBPyConnection, paths: Sequence[Path]) -> Census:
    """One pass over *paths*: the records of each ``category`` in each file."""
    if not paths:
        return Census()
    rows = con.execute(
        "SELECT filename, r ->> 'category' AS category, json_type(r, '$.properties') = 'OBJECT' AS ok, count(*) "
        f"FROM (SELECT filename, {_UNWRAP} AS r FROM {reader(paths, filename=True)}) GROUP BY ALL"
    ).fetchall()
    out = Census(files=tuple(paths))
    for filename, category, ok, count in rows:
        path = Path(str(filename))
        name = str(category or "")
        if ok and name.lower().startswith(CATEGORY_PREFIX) and len(name) > len(CATEGORY_PREFIX):
            table = name[len(CATEGORY_PREFIX):]
            out.tables.setdefault(table, {})[path] = out.tables.get(table, {}).get(path, 0) + int(count)
        else:
            out.other_records[path] = out.other_records.get(path, 0) + int(count)
    return out


def table_clause(paths: Sequence[Path], categories: Sequence[str]) -> str:
    """The FROM clause of one table's rows: each record's ``properties`` (as column ``json``, the shape
    the loader reads JSON lines in) from the records of *categories* (table names as the census found
    them) in *paths*."""
    wanted = ", ".join(sql_string((CATEGORY_PREFIX + c).lower()) for c in categories)
    return (f"(SELECT r -> 'properties' AS json FROM (SELECT {_UNWRAP} AS r FROM {reader(paths)}) "
            f"WHERE lower(r ->> 'category') IN ({wanted}) AND json_type(r, '$.properties') = 'OBJECT')")


def label(paths: Sequence[Path], folder: Path) -> str:
    """How a table's streaming files are named in messages: the file, or the folder that holds them
    all and how many there are."""
    if len(paths) == 1:
        return _relative(paths[0], folder)
    parts = [p.parent.parts for p in paths]
    depth = 0
    while all(len(p) > depth for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    common = Path(*parts[0][:depth]) if depth else folder
    where = _relative(common, folder)
    return f"{len(paths)} streaming files under {where if where != '.' else folder.name}/"


def _relative(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return str(path)


def categories_by_table(census_: Census, tables: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Schema table -> the census names that feed it (its name or an older one, any case); *tables*
    maps each schema table to its names."""
    by_lower = {n.lower(): t for t, names in tables.items() for n in names}
    out: dict[str, list[str]] = {}
    for name in census_.tables:
        table = by_lower.get(name.lower())
        if table is not None:
            out.setdefault(table, []).append(name)
    return out
