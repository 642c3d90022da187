"""Adapt the hunting queries to a tenant's live schema: renamed tables, column case, absent columns.

Why: real tenants drift from the schema files. ``AADSignInEventsBeta`` became
``EntraIdSignInEvents`` (``AadDeviceId`` -> ``EntraIdDeviceId``), the ISP column is ``ISP`` in one
tenant and ``Isp`` in another, and newer columns (``RiskLevelDuringSignIn``, ``IsFirstContact``)
are not everywhere yet. Kusto names are case-sensitive, so a query written against one spelling
fails outright against the other, and a check silently becomes "not checked".

How: the ``.kql`` files name the canonical spellings (the schema files: the current table names,
``Isp`` in advanced hunting, ``ISP`` in Log Analytics). A cloud source learns each table's live
schema (``Table | getschema``) and :func:`resolve` compares it with the schema file; where they
differ, the rendering puts a ``let`` before the query that shadows the canonical table with a view
of the live one (``let CloudAppEvents = CloudAppEvents | project-rename Isp = ISP;``,
``let EntraIdSignInEvents = AADSignInEventsBeta | ...;``), so the query body runs unchanged. An
optional column the tenant lacks is added as a typed empty; a column of another type is converted.
The local source needs no view: its loader already normalises names (``normalised``).

Pure data and text here: the sources (``grading/sources/``) do the asking.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from grading.hunting.rendering import (
    Dialect,
    column_aliases,
    known_tables,
    la_views,
    load_schema,
    optional_columns,
    required_tables,
    table_aliases,
)

TYPED_EMPTY: Mapping[str, str] = {
    "string": '""',
    "int": "int(null)",
    "long": "long(null)",
    "real": "real(null)",
    "decimal": "decimal(null)",
    "bool": "bool(null)",
    "datetime": "datetime(null)",
    "timespan": "timespan(null)",
    "guid": "guid(null)",
    "dynamic": "dynamic(null)",
}
"""What an absent optional column reads as: '' for strings (as the export loader fills), else null."""

CONVERSIONS: Mapping[str, str] = {
    "string": "tostring",
    "int": "toint",
    "long": "tolong",
    "real": "toreal",
    "decimal": "todecimal",
    "bool": "tobool",
    "datetime": "todatetime",
    "timespan": "totimespan",
    "guid": "toguid",
    "dynamic": "todynamic",
}

_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMMENT_OR_STRING = re.compile(r"//[^\n]*|@?\"(?:[^\"\\\n]|\\.)*\"|@?'(?:[^'\\\n]|\\.)*'")


def kql_name(name: str) -> str:
    """*name* as a KQL identifier: plain when it can be, else bracketed and escaped (``['a b']``).
    Live names come from a service: quoted, they can never become query text."""
    if _PLAIN_NAME.match(name):
        return name
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def identifiers(text: str) -> frozenset[str]:
    """The words of a query outside its comments and string literals (a superset of the names it
    reads), to tell which columns a query may need. A name the query first assigns itself
    (``extend RecipientDomain = ...``) is its own, not a table's column, and is left out."""
    code = _COMMENT_OR_STRING.sub(" ", text)
    first: dict[str, re.Match[str]] = {}
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", code):
        first.setdefault(m.group(), m)
    return frozenset(name for name, m in first.items() if not _ASSIGNED.match(code, m.end()))


_ASSIGNED = re.compile(r"\s*=(?!=)")
"""What follows a name the query assigns (``Name = ...``), not a comparison (``==``)."""


@dataclass(frozen=True)
class ObservedTable:
    """A live table as ``getschema`` describes it: its name and its ``(column, Kusto type)`` pairs."""

    name: str
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TableResolution:
    """How one canonical table is read in a tenant."""

    canonical: str
    live: str
    """The tenant's name for it (``AADSignInEventsBeta`` where ``EntraIdSignInEvents`` is absent)."""
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Canonical column -> the tenant's spelling, where they differ (``Isp`` -> ``ISP``)."""
    absent: Mapping[str, str] = field(default_factory=dict)
    """Canonical column -> its type, for columns the tenant lacks."""
    retyped: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """Canonical column -> (live type, schema type) where they differ: converted to the schema's."""
    extra: tuple[str, ...] = ()
    """Live columns the schema file does not list (news for ``schema-check``)."""
    optional: frozenset[str] = frozenset()

    @property
    def absent_optional(self) -> dict[str, str]:
        """Absent columns read as typed empties."""
        return {c: t for c, t in self.absent.items() if c in self.optional}

    @property
    def absent_required(self) -> tuple[str, ...]:
        """Absent columns that are not optional: a query reading one cannot run in this tenant."""
        return tuple(c for c in self.absent if c not in self.optional)

    @property
    def adapted(self) -> bool:
        """True when the canonical name does not already read as the schema file says."""
        return bool(self.live != self.canonical or self.renamed or self.retyped or self.absent_optional)

    def view(self) -> str:
        """The tabular expression presenting the live table in its canonical shape."""
        steps = [kql_name(self.live)]
        if self.renamed:
            steps.append("project-rename " + ", ".join(
                f"{kql_name(c)} = {kql_name(live)}" for c, live in sorted(self.renamed.items())))
        extends = [f"{kql_name(c)} = {CONVERSIONS.get(canonical, 'tostring')}({kql_name(c)})"
                   for c, (_, canonical) in sorted(self.retyped.items())]
        extends += [f"{kql_name(c)} = {TYPED_EMPTY.get(t, 'dynamic(null)')}"
                    for c, t in sorted(self.absent_optional.items())]
        if extends:
            steps.append("extend " + ", ".join(extends))
        return " | ".join(steps)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.live, "columns": dict(sorted(self.renamed.items()))}
        if self.absent:
            out["absent"] = sorted(self.absent)
        if self.retyped:
            out["retyped"] = {c: f"{live} -> {canonical}" for c, (live, canonical) in sorted(self.retyped.items())}
        return out


@dataclass(frozen=True)
class SchemaResolution:
    """What a source learnt of the tenant's tables and how each query is adapted to it."""

    dialect: Dialect
    tables: Mapping[str, TableResolution] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    """Canonical tables the tenant has under none of their names."""
    unknown: Mapping[str, str] = field(default_factory=dict)
    """Canonical table -> why its schema could not be learnt (queries then use the canonical names)."""
    normalised: bool = False
    """True when the source already presents every table in its canonical shape (the local export):
    nothing is rewritten, the resolution is only recorded."""
    learnt_at: datetime | None = None
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Canonical table Log Analytics holds under others (``rendering.la_views``) -> the ones the
    workspace has (each resolved in :attr:`tables` under its own name)."""

    def view_sources(self, table: str) -> tuple[str, ...] | None:
        """The source tables *table* is read from here; None when it is not such a table."""
        return self.sources.get(table)

    def views(self, tables: Iterable[str]) -> dict[str, str]:
        """Canonical table -> the view that adapts it, for the *tables* that need one."""
        if self.normalised:
            return {}
        return {t: self.tables[t].view() for t in sorted(tables) if t in self.tables and self.tables[t].adapted}

    def missing_of(self, tables: Iterable[str]) -> tuple[str, ...]:
        return tuple(t for t in sorted(tables) if t in self.missing)

    def columns_needed(self, text: str, tables: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(absent optional, absent required) columns *text* may read, by table."""
        words = identifiers(text)
        optional: dict[str, list[str]] = {}
        required: dict[str, list[str]] = {}
        views = la_views()
        # A table read from others is read through its view's steps: their columns are what it needs.
        read = [(t, words) for t in sorted(tables) if t not in self.sources]
        read += [(s, identifiers(views[t].shape)) for t in sorted(tables) if t in self.sources for s in self.sources[t]]
        for t, needs in read:
            res = self.tables.get(t)
            if res is None:
                continue
            opt = sorted(c for c in res.absent_optional if c in needs)
            req = sorted(c for c in res.absent_required if c in needs)
            if opt:
                optional[t] = opt
            if req:
                required[t] = req
        return optional, required

    def record(self) -> dict[str, Any]:
        """For the sweep record: per canonical table, the live name and the spellings used."""
        out: dict[str, Any] = {t: r.record() for t, r in sorted(self.tables.items())}
        for t, present in sorted(self.sources.items()):
            out[t] = {"table": " + ".join(present), "sources": list(present)}
        for t in self.missing:
            out[t] = {"table": None, "missing": True}
        for t, why in sorted(self.unknown.items()):
            out[t] = {"table": t, "unknown": why}
        return out


def _match(name: str, live: Mapping[str, str], aliases: tuple[str, ...]) -> str | None:
    """The live spelling of canonical column *name*: exact, an older spelling, or the same letters
    in another case."""
    if name in live:
        return name
    for alias in aliases:
        if alias in live:
            return alias
    lowered = {c.lower(): c for c in live}
    for candidate in (name, *aliases):
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def resolve_table(dialect: Dialect, canonical: str, observed: ObservedTable) -> TableResolution:
    """Compare the live *observed* table with the schema file's *canonical* table."""
    schema = load_schema(dialect)[canonical]
    live = {name: kind for name, kind in observed.columns}
    aliases = column_aliases(canonical) if dialect is Dialect.ADVANCED_HUNTING else {}
    renamed: dict[str, str] = {}
    absent: dict[str, str] = {}
    retyped: dict[str, tuple[str, str]] = {}
    used: set[str] = set()
    for column in schema:
        name, kind = column["name"], column["type"]
        spelling = _match(name, live, aliases.get(name, ()))
        if spelling is None:
            absent[name] = kind
            continue
        used.add(spelling)
        if spelling != name:
            renamed[name] = spelling
        if live[spelling] != kind and {live[spelling], kind} != {"int", "long"}:
            retyped[name] = (live[spelling], kind)
    extra = tuple(c for c in live if c not in used)
    return TableResolution(canonical, observed.name, renamed, absent, retyped, extra,
                           optional_columns(dialect, canonical))


def candidates(dialect: Dialect, canonical: str) -> tuple[str, ...]:
    """The names to look for *canonical* under, in order: itself, then its older names."""
    if dialect is Dialect.ADVANCED_HUNTING:
        return (canonical, *table_aliases().get(canonical, ()))
    return (canonical,)


def view_sources(dialect: Dialect, canonical: str) -> tuple[str, ...] | None:
    """The tables *dialect* holds *canonical* under (Log Analytics' sign-in tables for
    ``EntraIdSignInEvents``), each learnt on its own; None for a table looked for by its names."""
    if Dialect(dialect) is Dialect.LOG_ANALYTICS and canonical in la_views():
        return la_views()[canonical].sources
    return None


def resolve(
    dialect: Dialect,
    observed: Mapping[str, ObservedTable],
    missing: Iterable[str] = (),
    unknown: Mapping[str, str] | None = None,
    *,
    learnt_at: datetime | None = None,
    sources: Mapping[str, tuple[str, ...]] | None = None,
) -> SchemaResolution:
    """The resolution for canonical tables *observed* live (keyed by canonical name; a view's source
    tables by their own names, *sources* naming those present per view), those the tenant lacks
    (*missing*) and those whose schema could not be learnt (*unknown*)."""
    tables = {t: resolve_table(dialect, t, o) for t, o in observed.items()}
    return SchemaResolution(Dialect(dialect), tables, tuple(sorted(missing)), dict(unknown or {}),
                            learnt_at=learnt_at, sources=dict(sources or {}))


def resolve_schema(
    dialect: Dialect, live: Mapping[str, Iterable[tuple[str, str]]], tables: Iterable[str] | None = None
) -> SchemaResolution:
    """The resolution for a whole live schema (live table -> its (column, type) pairs) at once,
    for the canonical *tables* (default: every table the queries may read)."""
    observed: dict[str, ObservedTable] = {}
    missing: list[str] = []
    sources: dict[str, tuple[str, ...]] = {}
    for canonical in sorted(set(tables) if tables is not None else schema_tables(dialect)):
        parts = view_sources(dialect, canonical)
        if parts is not None:
            present = tuple(p for p in parts if p in live)
            observed.update({p: ObservedTable(p, tuple(live[p])) for p in present})
            if present:
                sources[canonical] = present
            else:
                missing.append(canonical)
            continue
        name = next((n for n in candidates(dialect, canonical) if n in live), None)
        if name is None:
            missing.append(canonical)
        else:
            observed[canonical] = ObservedTable(name, tuple(live[name]))
    return resolve(dialect, observed, missing, sources=sources)


def schema_tables(dialect: Dialect) -> frozenset[str]:
    """The canonical tables of *dialect* that the queries may read (in Log Analytics, those read
    from other tables too: ``EntraIdSignInEvents``)."""
    held = frozenset(la_views()) if Dialect(dialect) is Dialect.LOG_ANALYTICS else frozenset()
    return frozenset(t for t in load_schema(dialect) if t in known_tables()) | held


def differences(resolution: SchemaResolution) -> list[str]:
    """How the tenant's schema differs from the shipped one, one line per fact (``schema-check``)."""
    lines: list[str] = []
    required = required_tables()
    for table in resolution.missing:
        kind = "required" if table in required else "optional"
        parts = view_sources(resolution.dialect, table)
        names = " and ".join(parts) if parts else " or ".join(candidates(resolution.dialect, table))
        lines.append(f"{table}: missing ({kind} table; looked for {names})")
    for table, present in sorted(resolution.sources.items()):
        absent = [p for p in view_sources(resolution.dialect, table) or () if p not in present]
        gap = f"; {', '.join(absent)} missing: those sign-ins are not read" if absent else ""
        lines.append(f"{table}: read from {' and '.join(present)}{gap}")
    for table, why in sorted(resolution.unknown.items()):
        lines.append(f"{table}: not learnt ({why})")
    for table, r in sorted(resolution.tables.items()):
        facts = []
        if r.live != table:
            facts.append(f"read from {r.live}")
        facts += [f"column {c} is spelt {live}" for c, live in sorted(r.renamed.items())]
        facts += [f"column {c} is {live}, schema says {canonical}"
                  for c, (live, canonical) in sorted(r.retyped.items())]
        if r.absent_optional:
            facts.append("optional column(s) absent, read as empty: " + ", ".join(sorted(r.absent_optional)))
        if r.absent_required and resolution.normalised:
            facts.append("column(s) absent in the export, filled with empty values: " + ", ".join(r.absent_required))
        elif r.absent_required:
            facts.append("column(s) absent, queries reading them fail: " + ", ".join(r.absent_required))
        if r.extra:
            facts.append("column(s) not in the shipped schema: " + ", ".join(r.extra))
        lines.extend(f"{table}: {fact}" for fact in facts)
    return lines
