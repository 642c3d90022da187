"""Load the hunting queries and render them with typed parameters for a dialect.

Why a renderer instead of ``str.format``: connector names, domains and addresses come from
attacker-controlled telemetry. Every value enters a query as a typed KQL literal built here
(``datetime(...)``, a timespan, a long, an escaped string, ``dynamic([...])``), replacing the
file's ``// parameters`` block, so no value can ever become query text.

Query files are written in the advanced-hunting dialect (``Timestamp``); the Log Analytics
rendering adds a prelude that shadows each table it reads with an AH-shaped view (see
:data:`LA_TABLE_PRELUDE`) so the same body runs in both: bounded on ``TimeGenerated`` for the
query's window, keeping the table's own ``Timestamp`` for event logic where it has one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from grading.errors import ConfigurationError, InputError

QUERY_DIR = Path(__file__).with_name("queries")
SCHEMA_DIR = Path(__file__).with_name("schemas")
VIEW_DIR = Path(__file__).with_name("views")

PARAMS_START = "// parameters"
PARAMS_END = "// end parameters"


class Dialect(StrEnum):
    ADVANCED_HUNTING = "ah"
    LOG_ANALYTICS = "la"


class QueryFileError(ConfigurationError, ValueError):
    """A query file breaks the query-file contract; the message names the file."""


class ParameterError(InputError, ValueError):
    """A parameter value does not fit the parameter's type; the message names both."""


# ---------------------------------------------------------------------------------------------
# Schemas


@cache
def load_schema(dialect: Dialect) -> dict[str, list[dict[str, str]]]:
    """Table name -> ordered columns ``{"name", "type"}`` for *dialect*."""
    doc = json.loads((SCHEMA_DIR / f"{Dialect(dialect).value}.json").read_text(encoding="utf-8"))
    return doc["tables"]


@cache
def _schema_doc(dialect: Dialect) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{Dialect(dialect).value}.json").read_text(encoding="utf-8"))


def table_aliases() -> dict[str, tuple[str, ...]]:
    """Canonical table -> its older names a tenant may still have, in order of preference after it
    (``EntraIdSignInEvents`` -> ``AADSignInEventsBeta``): the schema file's ``aliases``."""
    aliases = _schema_doc(Dialect.ADVANCED_HUNTING).get("aliases", {})
    return {table: tuple(a.get("tables", ())) for table, a in aliases.items()}


def column_aliases(table: str) -> dict[str, tuple[str, ...]]:
    """Canonical column of *table* -> its older spellings (``EntraIdDeviceId`` -> ``AadDeviceId``)."""
    alias = _schema_doc(Dialect.ADVANCED_HUNTING).get("aliases", {}).get(table, {})
    return {column: tuple(names) for column, names in alias.get("columns", {}).items()}


def optional_columns(dialect: Dialect, table: str) -> frozenset[str]:
    """Columns of *table* a tenant may lack (marked ``optional`` in the schema file): read as typed
    empties where absent, and the checks that read them say so."""
    return frozenset(c["name"] for c in load_schema(dialect).get(table, ()) if c.get("optional"))


def known_tables() -> frozenset[str]:
    """Every table a query may read: the advanced-hunting schema's tables under their canonical
    names (a retired name such as ``AADSignInEventsBeta`` is reached through its alias)."""
    retired = {name for names in table_aliases().values() for name in names}
    return frozenset(load_schema(Dialect.ADVANCED_HUNTING)) - retired


@cache
def required_tables() -> frozenset[str]:
    """Tables every source must have (EmailEvents, CloudAppEvents); all others are optional."""
    doc = json.loads((SCHEMA_DIR / "ah.json").read_text(encoding="utf-8"))
    return frozenset(doc["required"])


# ---------------------------------------------------------------------------------------------
# KQL literals


def kql_string(value: str) -> str:
    """A double-quoted KQL string literal holding exactly *value*.

    Backslash, double quote, newline, carriage return and tab are escaped (the escapes Kusto
    documents); every other character, control characters included, is valid raw inside quotes.
    """
    if not isinstance(value, str):
        raise ParameterError(f"expected a string, got {type(value).__name__}")
    out = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{out}"'


def kql_datetime(value: datetime) -> str:
    if not isinstance(value, datetime):
        raise ParameterError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ParameterError("expected a timezone-aware datetime (UTC); got a naive one")
    v = value.astimezone(UTC)
    return f"datetime({v.strftime('%Y-%m-%dT%H:%M:%S')}.{v.microsecond:06d}0Z)"


def kql_timespan(value: timedelta) -> str:
    if not isinstance(value, timedelta):
        raise ParameterError(f"expected a timedelta, got {type(value).__name__}")
    micros = round(value.total_seconds() * 1_000_000)
    if micros % 1_000_000 == 0:
        return f"{micros // 1_000_000}s"
    if micros % 1000 == 0:
        return f"{micros // 1000}ms"
    return f"{micros / 1_000_000!r}s"


def kql_long(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParameterError(f"expected a whole number, got {type(value).__name__}")
    return str(value)


def kql_real(value: float) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ParameterError("expected a finite number")
    return f"real({float(value)!r})"


def kql_bool(value: bool) -> str:
    if not isinstance(value, bool):
        raise ParameterError(f"expected true or false, got {type(value).__name__}")
    return "true" if value else "false"


def _dynamic_element(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return kql_bool(value)
    if isinstance(value, int):
        return kql_long(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError("expected finite numbers in a dynamic value")
        return repr(value)
    if isinstance(value, str):
        return kql_string(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(_dynamic_element(v) for v in items) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{kql_string(str(k))}: {_dynamic_element(v)}" for k, v in value.items()) + "}"
    raise ParameterError(f"cannot put a {type(value).__name__} in a dynamic value")


def kql_dynamic(value: Any) -> str:
    """``dynamic([...])`` / ``dynamic({...})`` from lists, tuples, sets (sorted) and mappings."""
    if not isinstance(value, (list, tuple, set, frozenset, Mapping)):
        raise ParameterError(f"expected a list or a mapping, got {type(value).__name__}")
    return f"dynamic({_dynamic_element(value)})"


LITERALS = {
    "string": kql_string,
    "datetime": kql_datetime,
    "timespan": kql_timespan,
    "long": kql_long,
    "real": kql_real,
    "bool": kql_bool,
    "dynamic": kql_dynamic,
}


# ---------------------------------------------------------------------------------------------
# Query files


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: str
    """The default as written in the file (KQL text)."""


@dataclass(frozen=True)
class HuntingQuery:
    """One ``.kql`` file: the question it answers, its parameters, and its body."""

    name: str
    path: Path
    question: str
    parameters: dict[str, Parameter]
    head: str
    """Comment lines above the parameter block (kept in every rendering)."""
    body: str
    tables: frozenset[str]
    dialects: frozenset[Dialect] = frozenset(Dialect)

    @property
    def optional_tables(self) -> frozenset[str]:
        """Tables this query reads that a source may lack: its check is then "not checked"."""
        return self.tables - required_tables()

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class RenderedQuery:
    """A query ready for a source: its name, text, dialect and the tables it reads."""

    name: str
    text: str
    dialect: Dialect
    tables: frozenset[str]
    start: datetime | None = None
    end: datetime | None = None
    """The time range the query reads, for services that want an explicit timespan."""


_LET = re.compile(r"^let\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+?);\s*(//.*)?$")
_TIMESPAN_TEXT = re.compile(r"^\d+(\.\d+)?(d|h|m|s|ms|microsecond|tick)$|^(time|timespan|totimespan)\(")


def _infer_type(default: str) -> str:
    d = default.strip()
    if re.match(r"^(datetime|todatetime)\(|^ago\(|^now\(", d):
        return "datetime"
    if _TIMESPAN_TEXT.match(d):
        return "timespan"
    if re.fullmatch(r"-?\d+", d) or re.match(r"^(long|int)\(", d):
        return "long"
    if re.fullmatch(r"-?\d+\.\d*", d) or re.match(r"^(real|double)\(", d):
        return "real"
    if d in {"true", "false"}:
        return "bool"
    if d.startswith(("dynamic(", "pack_array(")):
        return "dynamic"
    if d[:1] in {'"', "'"} or d.startswith(('@"', "@'")):
        return "string"
    raise ValueError(f"cannot tell the type of default {d!r}")


_DIALECTS = re.compile(r"^//\s*dialects\s*:\s*(.*)$", re.IGNORECASE)


def parse_query_file(path: Path) -> HuntingQuery:
    """Parse one query file per the contract (docs/architecture.md, "Query files")."""
    name = path.stem
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index(PARAMS_START)
        end = lines.index(PARAMS_END)
    except ValueError:
        raise QueryFileError(
            f"{path}: no parameter block; open the file with '{PARAMS_START}' ... '{PARAMS_END}'"
        ) from None
    head = lines[:start]
    if not head or not all(line.startswith("//") for line in head):
        raise QueryFileError(f"{path}: the file must open with comment lines stating its question")
    question = head[0].lstrip("/ ").strip()
    dialects: frozenset[Dialect] = frozenset(Dialect)
    for line in head:
        m = _DIALECTS.match(line)
        if m:
            dialects = frozenset(Dialect(d.strip()) for d in m.group(1).split(",") if d.strip())
    params: dict[str, Parameter] = {}
    for number, line in enumerate(lines[start + 1 : end], start=start + 2):
        if not line.strip() or line.strip().startswith("//"):
            continue
        m = _LET.match(line.strip())
        if not m:
            raise QueryFileError(f"{path}:{number}: a parameter line must read 'let name = default;'")
        try:
            ptype = _infer_type(m.group(2))
        except ValueError as exc:
            raise QueryFileError(f"{path}:{number}: {exc}") from None
        params[m.group(1)] = Parameter(m.group(1), ptype, m.group(2))
    body = "\n".join(lines[end + 1 :]).strip("\n") + "\n"
    tables = frozenset(t for t in known_tables() if re.search(rf"\b{t}\b", body))
    if not tables:
        raise QueryFileError(f"{path}: the query reads no table of the schema files")
    return HuntingQuery(name, path, question, params, "\n".join(head), body, tables, dialects)


@cache
def load_queries() -> dict[str, HuntingQuery]:
    """Every hunting query shipped with the package, by name (file stem)."""
    folder = resources.files("grading.hunting") / "queries"
    found = sorted(Path(str(folder)).glob("*.kql"))
    return {q.name: q for q in (parse_query_file(p) for p in found)}


# ---------------------------------------------------------------------------------------------
# Rendering

LA_TABLE_PRELUDE: dict[str, str] = {
    # The ISP column is spelt ISP in Log Analytics (docs/architecture.md, "Telemetry tables").
    "CloudAppEvents": "Isp = ISP",
    "IdentityLogonEvents": "Isp = ISP",
    # AdditionalFields is dynamic in LA, string in AH.
    "EmailEvents": "AdditionalFields = tostring(AdditionalFields)",
}
"""What each table's Log Analytics view adds beyond its Timestamp (:data:`LA_TIMESTAMP`)."""

LA_TIMESTAMP = 'Timestamp = coalesce(column_ifexists("Timestamp", datetime(null)), TimeGenerated)'
"""The event time the query bodies use: the table's own ``Timestamp`` where it has one (Sentinel's
Defender XDR tables carry both), else ``TimeGenerated``."""

LA_TIME_GENERATED_BEFORE = timedelta(minutes=10)
LA_TIME_GENERATED_AFTER = timedelta(hours=1)
"""How far the ``TimeGenerated`` bound reaches beyond the query's event window: a record is stamped
``TimeGenerated`` when Log Analytics receives it, at or a little after its event ``Timestamp``, so
an event inside the window whose record arrived late is still read."""


def la_time_generated_bounds(start: datetime | None, end: datetime | None
                             ) -> tuple[datetime, datetime | None] | None:
    """The ``TimeGenerated`` range (start inclusive, end exclusive; None: open) that the Log Analytics
    rendering bounds each table on for a query over [*start*, *end*); None when it has no start."""
    if start is None:
        return None
    return start - LA_TIME_GENERATED_BEFORE, (end + LA_TIME_GENERATED_AFTER if end is not None else None)


@dataclass(frozen=True)
class SourcedView:
    """An advanced-hunting table that Log Analytics holds under other tables (``EntraIdSignInEvents``
    from ``SigninLogs`` and ``AADNonInteractiveUserSignInLogs``): a file of ``views/``, its
    ``// sources:`` line and the steps shaping each source into the advanced-hunting table."""

    table: str
    sources: tuple[str, ...]
    shape: str
    path: Path


@cache
def la_views() -> dict[str, SourcedView]:
    """Canonical table -> how Log Analytics reads it from its own tables (``views/<table>.kql``)."""
    folder = resources.files("grading.hunting") / "views"
    out: dict[str, SourcedView] = {}
    for path in sorted(Path(str(folder)).glob("*.kql")):
        lines = path.read_text(encoding="utf-8").splitlines()
        header = [line for line in lines if line.startswith("//")]
        sources = next((line.split(":", 1)[1] for line in header if line.startswith("// sources:")), "")
        shape = "\n".join(line for line in lines if not line.startswith("//")).strip()
        names = tuple(n.strip() for n in sources.split(",") if n.strip())
        if not names or not shape:
            raise QueryFileError(f"{path}: a view names its '// sources: A, B' and the steps that shape them")
        out[path.stem] = SourcedView(path.stem, names, shape, path)
    return out


def la_view_sources(tables: Iterable[str]) -> frozenset[str]:
    """The Log Analytics tables that *tables* are read from through :func:`la_views`."""
    views = la_views()
    return frozenset(s for t in tables if t in views for s in views[t].sources)


def _prelude(tables: Iterable[str], start: datetime | None = None, end: datetime | None = None,
             views: Mapping[str, str] | None = None, schema: Any = None) -> str:
    """One ``let`` per table: the table bounded on ``TimeGenerated`` (what Log Analytics partitions
    on, so the bound prunes what it scans) and shaped like the advanced-hunting table; a table whose
    live schema differs is read through its adapted view (*views*, from grading/hunting/live.py). A
    table Log Analytics holds under others (:func:`la_views`) is the union of those the workspace has
    (*schema*'s ``view_sources``; all of them when the schema is not known), each shaped."""
    bound = ""
    bounds = la_time_generated_bounds(start, end)
    if bounds is not None:
        bound = f" | where TimeGenerated >= {kql_datetime(bounds[0])}"
        if bounds[1] is not None:
            bound += f" and TimeGenerated < {kql_datetime(bounds[1])}"
    lines = []
    sourced = la_views()
    for table in sorted(tables):
        if table in sourced:
            view = sourced[table]
            present = getattr(schema, "view_sources", lambda _: None)(table)
            legs = [f"{(views or {}).get(s, s)}{bound} | {view.shape}" for s in (present or view.sources)]
            body = legs[0] if len(legs) == 1 else "union " + ", ".join(f"({leg})" for leg in legs)
            lines.append(f"let {table} = {body};")
            continue
        shape = ", ".join(filter(None, (LA_TIMESTAMP, LA_TABLE_PRELUDE.get(table))))
        source = (views or {}).get(table, table)
        lines.append(f"let {table} = {source}{bound} | extend {shape};")
    return "\n".join(lines)


def _live_prelude(views: Mapping[str, str]) -> str:
    """Advanced hunting: each table whose live schema differs is shadowed by its adapted view."""
    return "\n".join(f"let {table} = {view};" for table, view in sorted(views.items()))


def render(
    query: HuntingQuery,
    values: Mapping[str, Any] | None = None,
    dialect: Dialect = Dialect.ADVANCED_HUNTING,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    schema: Any = None,
) -> RenderedQuery:
    """Replace *query*'s parameter block with typed literals for *values* (others keep their
    defaults) and, for Log Analytics, prepend the table-shadowing prelude.

    *schema*, a :class:`grading.hunting.live.SchemaResolution` learnt from the tenant, shadows
    each table whose live name, column spellings or types differ from the schema file with a view
    in the schema file's shape, so the body runs unchanged (docs/architecture.md, "Query files")."""
    values = dict(values or {})
    unknown = set(values) - set(query.parameters)
    if unknown:
        raise ParameterError(f"query {query.name} has no parameter(s) {sorted(unknown)}")
    dialect = Dialect(dialect)
    if dialect not in query.dialects:
        raise ParameterError(f"query {query.name} is not written for the {dialect.value} dialect")
    lets = []
    for p in query.parameters.values():
        if p.name in values:
            try:
                literal = LITERALS[p.type](values[p.name])
            except ParameterError as exc:
                raise ParameterError(f"query {query.name}, parameter {p.name} ({p.type}): {exc}") from None
        else:
            literal = p.default
        lets.append(f"let {p.name} = {literal};")
    read = query.tables | la_view_sources(query.tables) if dialect is Dialect.LOG_ANALYTICS else query.tables
    views = schema.views(read) if schema is not None else {}
    parts = [query.head]
    if dialect is Dialect.LOG_ANALYTICS:
        parts.append(_prelude(query.tables, start, end, views, schema))
    elif views:
        parts.append(_live_prelude(views))
    parts.append(PARAMS_START)
    parts.extend(lets)
    parts.append(PARAMS_END)
    parts.append(query.body)
    return RenderedQuery(query.name, "\n".join(parts), dialect, query.tables, start, end)
