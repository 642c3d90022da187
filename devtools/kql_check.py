"""Check KQL with Kusto.Language, the official parser and binder, through ``tools/validate_kql.js``.

Why: duckdb-kql runs only the advanced-hunting rendering and matches column names
case-insensitively, so a misspelt or mis-cased column, a type error or a broken Log Analytics
prelude would only surface in production. Kusto.Language binds every query against the typed
schema files (``schemas/ah.json``, ``schemas/la.json``) and reports the query's output columns.

Loading the Node bridge costs a noticeable fraction of a second, so :func:`validate_queries`
checks any number of queries in one Node process. It is a development and test tool: Node and
``npm ci`` (``@kusto/language-service-next``) are needed, the Functions app never calls it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from grading.errors import ConfigurationError
from grading.hunting.rendering import Dialect, RenderedQuery, load_schema

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOOL = PROJECT_ROOT / "tools" / "validate_kql.js"
PACKAGE = "@kusto/language-service-next"


class KustoValidationError(ConfigurationError):
    """The validator could not run (no Node, no npm package, bad input); the message says what to do."""


@dataclass(frozen=True)
class QueryItem:
    """One query to check: *id* is echoed back; *literals* asks for its string literal tokens."""

    id: str
    dialect: Dialect
    text: str
    literals: bool = False
    schema: str | None = None
    """The name of an extra schema (``validate_queries(schemas=...)``) to bind against instead of
    the dialect's schema file: a tenant's variant."""


@dataclass(frozen=True)
class Diagnostic:
    severity: str
    code: str
    message: str
    start: int
    """Code-point offset into the query text (Python ``str`` indexing); *end* is exclusive."""
    end: int
    line: int
    column: int
    source: str | None = None
    """For warnings: ``binder`` (Kusto.Language's own) or ``analyzer`` (its best-practice rules)."""

    def __str__(self) -> str:
        return f"{self.line}:{self.column} {self.code} {self.message}"


@dataclass(frozen=True)
class StringLiteral:
    """A string literal token as Kusto.Language tokenised it, with its decoded value."""

    text: str
    value: str
    start: int
    end: int
    parent: str | None
    """The syntax node holding the token, e.g. ``StringLiteralExpression``."""
    compound: bool
    """True when the token is one part of adjacent literals that Kusto concatenates."""


@dataclass(frozen=True)
class Result:
    id: str
    dialect: Dialect
    text: str
    errors: tuple[Diagnostic, ...]
    warnings: tuple[Diagnostic, ...]
    result_kind: str | None
    """``table``, ``scalar``, or None when the text has no query (only ``let`` statements)."""
    columns: dict[str, str] | None
    """Output column -> Kusto type, in output order, for a tabular result."""
    scalar_type: str | None
    literals: tuple[StringLiteral, ...] | None
    """Only when the item asked for them."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe_errors(self) -> str:
        """The errors, one a line, each with the offending text, for assertion messages."""
        return "\n".join(f"{d}  <<{self.text[d.start : d.end]}>>" for d in self.errors)


def _item(obj: QueryItem | RenderedQuery, literals: bool) -> QueryItem:
    if isinstance(obj, QueryItem):
        return replace(obj, dialect=Dialect(obj.dialect))
    if isinstance(obj, RenderedQuery):
        return QueryItem(obj.name, obj.dialect, obj.text, literals)
    raise TypeError(f"expected a QueryItem or a RenderedQuery, got {type(obj).__name__}")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise KustoValidationError("Node.js (20 or later) is not on PATH; install it to validate KQL")
    return node


def _check_package(root: Path) -> None:
    if not (root / "node_modules" / PACKAGE / "package.json").is_file():
        raise KustoValidationError(
            f"{PACKAGE} is not installed under {root / 'node_modules'}; run `npm ci` in {root}"
        )


def _diagnostics(raw: Sequence[dict[str, Any]]) -> tuple[Diagnostic, ...]:
    return tuple(
        Diagnostic(
            severity=d["severity"],
            code=d["code"],
            message=d["message"],
            start=d["start"],
            end=d["end"],
            line=d["line"],
            column=d["column"],
            source=d.get("source"),
        )
        for d in raw
    )


def _result(item: QueryItem, raw: dict[str, Any]) -> Result:
    if "crash" in raw:
        raise KustoValidationError(f"Kusto.Language failed on query {item.id!r}: {raw['crash']}")
    columns = raw.get("columns")
    literals = raw.get("literals")
    return Result(
        id=item.id,
        dialect=item.dialect,
        text=item.text,
        errors=_diagnostics(raw["errors"]),
        warnings=_diagnostics(raw["warnings"]),
        result_kind=raw.get("resultKind"),
        columns=None if columns is None else {c["name"]: c["type"] for c in columns},
        scalar_type=raw.get("scalarType"),
        literals=None if literals is None else tuple(StringLiteral(**lit) for lit in literals),
    )


def validate_queries(
    items: Iterable[QueryItem | RenderedQuery],
    *,
    literals: bool = False,
    timeout: float = 120.0,
    root: Path = PROJECT_ROOT,
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Result]:
    """Parse and bind every item with Kusto.Language in one Node process; results in item order.

    Items are :class:`QueryItem` or :class:`RenderedQuery` (``literals`` applies to the latter).
    *schemas* adds named schemas (table -> columns) an item may bind against (``QueryItem.schema``).
    Raises :class:`KustoValidationError` when the tool cannot run; a query's own problems are
    reported in its :class:`Result`, never raised.
    """
    queries = [_item(obj, literals) for obj in items]
    if not queries:
        return []
    node = _node()
    _check_package(root)
    request = {
        "schemas": {**{d.value: load_schema(d) for d in Dialect}, **dict(schemas or {})},
        "queries": [
            {"id": q.id, "dialect": Dialect(q.dialect).value, "text": q.text, "literals": q.literals,
             **({"schema": q.schema} if q.schema else {})}
            for q in queries
        ],
    }
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, no shell; the query text goes through stdin
            [node, str(TOOL)],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
            cwd=root,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise KustoValidationError(
            f"{TOOL.name} took longer than {timeout:g}s for {len(queries)} queries"
        ) from None
    if proc.returncode != 0:
        raise KustoValidationError(
            f"{TOOL.name} exited with {proc.returncode}: {proc.stderr.strip() or '(no message)'}"
        )
    raw_results = json.loads(proc.stdout)["results"]
    if len(raw_results) != len(queries):
        raise KustoValidationError(
            f"{TOOL.name} answered {len(raw_results)} results for {len(queries)} queries"
        )
    return [_result(q, raw) for q, raw in zip(queries, raw_results, strict=True)]


def _columns(dialect: Dialect, table: str) -> list[dict[str, str]]:
    return [{"name": c["name"], "type": c["type"]} for c in load_schema(dialect)[table]]


def _respell(columns: list[dict[str, str]], old: str, new: str) -> list[dict[str, str]]:
    return [{**c, "name": new} if c["name"] == old else c for c in columns]


def schema_variants() -> dict[str, tuple[Dialect, dict[str, list[dict[str, str]]]]]:
    """The tenant schemas the grader claims to run on, by name: (dialect, table -> columns).

    Advanced hunting: the sign-in table under its current name only (``entra``), under its retired
    name only, before ``EntraIdDeviceId`` existed (``beta``), the ISP column spelt ``Isp`` (the
    reference page) or ``ISP`` (Microsoft's own queries), and both drifts at once. Log Analytics:
    ``ISP`` (the reference) or ``Isp``, and a workspace whose diagnostic settings send interactive
    sign-ins only (no ``AADNonInteractiveUserSignInLogs``). Each is what a tenant's ``getschema``
    would answer."""
    ah = Dialect.ADVANCED_HUNTING
    la = Dialect.LOG_ANALYTICS
    retired = "AADSignInEventsBeta"
    base_ah = {t: _columns(ah, t) for t in load_schema(ah) if t != retired}
    older_beta = [c for c in _columns(ah, retired) if c["name"] != "EntraIdDeviceId"]
    beta = {**{t: c for t, c in base_ah.items() if t != "EntraIdSignInEvents"}, retired: older_beta}
    isp_tables = ("CloudAppEvents", "IdentityLogonEvents")
    upper = {t: _respell(c, "Isp", "ISP") if t in isp_tables else c for t, c in base_ah.items()}
    base_la = {t: _columns(la, t) for t in load_schema(la)}
    lower_la = {t: _respell(c, "ISP", "Isp") if t in isp_tables else c for t, c in base_la.items()}
    return {
        "ah-entra": (ah, base_ah),
        "ah-beta": (ah, beta),
        "ah-ISP": (ah, upper),
        "ah-Isp": (ah, base_ah),
        "ah-beta-ISP": (ah, {t: _respell(c, "Isp", "ISP") if t in isp_tables else c for t, c in beta.items()}),
        "la-ISP": (la, base_la),
        "la-Isp": (la, lower_la),
        "la-interactive-ISP": (la, {t: c for t, c in base_la.items() if t != "AADNonInteractiveUserSignInLogs"}),
    }


def main() -> int:
    """``python -m devtools.kql_check``: check every shipped query in its dialects, and
    rendered for every tenant schema variant against that variant."""
    from grading.hunting.live import resolve_schema
    from grading.hunting.rendering import load_queries, render

    queries = load_queries().values()
    rendered: list[QueryItem | RenderedQuery] = [render(q, dialect=d) for q in queries for d in sorted(q.dialects)]
    variants = schema_variants()
    for variant, (dialect, tables) in variants.items():
        live = {t: [(c["name"], c["type"]) for c in cols] for t, cols in tables.items()}
        resolution = resolve_schema(dialect, live)
        rendered += [QueryItem(f"{q.name} on {variant}", dialect, render(q, dialect=dialect, schema=resolution).text,
                               schema=variant) for q in queries if dialect in q.dialects]
    failed = 0
    for result in validate_queries(rendered, schemas={v: tables for v, (_, tables) in variants.items()}):
        status = "ok" if result.ok else "ERROR"
        print(f"{status:5} {result.dialect.value} {result.id}")
        if not result.ok:
            failed += 1
            print("      " + result.describe_errors().replace("\n", "\n      "))
    print(f"{len(rendered)} renderings, {failed} with errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
