"""The size caps a query puts on its ``make_set`` / ``make_list`` columns, so the local source keeps them.

Why: in Kusto ``SampleMessageIds = make_set(NetworkMessageId, 10)`` returns at most 10 ids.
duckdb-kql 1.1.2 ignores that second argument and returns every distinct value of the group, so
on a large export one hourly row of ``connector_traffic`` carried every message id of the hour
(3.5 million ids in ``connector_history`` at 1M mails a day), and everything downstream (the
conversion to Python, the grader's summaries, the evidence stored per verdict) paid for lists
Defender never returns. :func:`list_caps` reads the caps from the query text; the local source
cuts each capped column to its cap, as Kusto does. Which values Kusto keeps of a set is
unspecified; the local source keeps the smallest ones, sorted, when they are strings or numbers,
so a sweep of the same export gives the same evidence every time (DuckDB's list order varies
from run to run). A list (``make_list``) keeps its first values, in order, as in Kusto.

Only an output column defined as ``Name = make_set(..., N)`` (``make_list``, ``make_set_if``,
``make_list_if`` alike) with a literal ``N``, and assigned nowhere else in the query, is capped;
anything else (an unnamed aggregate, a computed size, a column re-assigned later) is left as the
engine returns it.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from typing import Any

# aggregate -> index of its size argument
_SIZE_ARGUMENT = {"make_set": 1, "make_list": 1, "make_set_if": 2, "make_list_if": 2}
_DEFINITION = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(make_set_if|make_list_if|make_set|make_list)\s*\(")
_ASSIGNMENT = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*=(?![=~])")  # not == or =~


@dataclass(frozen=True)
class Cap:
    """At most *size* values; of a set, the smallest ones (where they compare), of a list the first."""

    size: int
    is_set: bool

    def apply(self, values: list[Any]) -> list[Any]:
        if self.is_set and _comparable(values):
            return sorted(values) if len(values) <= self.size else heapq.nsmallest(self.size, values)
        return values[: self.size]


def _comparable(values: list[Any]) -> bool:
    """All strings, or all numbers: values that sort the same way every time."""
    return all(type(v) is str for v in values) or all(type(v) in (int, float) for v in values)


def code_only(text: str) -> str:
    """*text* with comments and string literals blanked to spaces (same length), so brackets,
    commas and ``=`` inside them count for nothing."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif c in "\"'":
            verbatim = i > 0 and text[i - 1] == "@"  # @"C:\path": no escapes
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if (text[j] == "\\" and not verbatim) else 1
            j = min(j + 1, n)
        else:
            i += 1
            continue
        out[i:j] = " " * (j - i)
        i = j
    return "".join(out)


def _arguments(code: str, start: int) -> list[str] | None:
    """The top-level arguments of the call whose opening bracket ends just before *start*."""
    depth, args, current = 0, [], start
    for i in range(start, len(code)):
        c = code[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                args.append(code[current:i])
                return args
            depth -= 1
        elif c == "," and depth == 0:
            args.append(code[current:i])
            current = i + 1
    return None


def list_caps(text: str) -> dict[str, Cap]:
    """Output column -> its cap: the largest size its ``make_set``/``make_list`` definitions in
    *text* allow (a set only if every definition is a set)."""
    code = code_only(text)
    sizes: dict[str, int] = {}
    sets: dict[str, bool] = {}
    uncapped: set[str] = set()
    definitions: dict[str, int] = {}
    for m in _DEFINITION.finditer(code):
        name, aggregate = m.group(1), m.group(2)
        definitions[name] = definitions.get(name, 0) + 1
        args = _arguments(code, m.end())
        index = _SIZE_ARGUMENT[aggregate]
        size = args[index].strip() if args is not None and len(args) > index else ""
        if size.isdigit() and int(size) > 0:
            sizes[name] = max(sizes.get(name, 0), int(size))
            sets[name] = sets.get(name, True) and aggregate.startswith("make_set")
        else:
            uncapped.add(name)
    assigned: dict[str, int] = {}
    for m in _ASSIGNMENT.finditer(code):
        assigned[m.group(1)] = assigned.get(m.group(1), 0) + 1
    return {
        name: Cap(size, sets[name]) for name, size in sizes.items()
        if name not in uncapped and assigned.get(name, 0) == definitions[name]
    }
