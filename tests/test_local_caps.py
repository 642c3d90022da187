"""The local source keeps Kusto's ``make_set(x, N)`` / ``make_list(x, N)`` caps, which duckdb-kql ignores.

Why it matters: without the cap, one hourly row of a large export carried every message id of
the hour, and the grader, the stored evidence and memory paid for lists Defender never returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from grading.hunting.rendering import Dialect, RenderedQuery, load_queries
from grading.sources.local import LocalSource
from grading.sources.local.caps import Cap, list_caps

PORTAL = Path(__file__).parent / "data" / "exports" / "portal"
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
RECIPIENTS = ["bob@fabrikam.com", "x1@victim.example", "x2@victim.example", "x3@other.example", "y@victim.example"]


def test_caps_are_read_from_named_aggregates() -> None:
    caps = list_caps(
        "T | summarize A = make_set(x, 10), B = make_list(y), C = make_set_if(z, p > 1, 5),\n"
        "    D = make_set(tolower(strcat(a, \",\", b)), 20), E = make_list(bag_pack(\"k\", v), 3) by k"
    )
    assert caps == {"A": Cap(10, True), "C": Cap(5, True), "D": Cap(20, True), "E": Cap(3, False)}


def test_comments_strings_and_reassigned_columns_give_no_cap() -> None:
    text = (
        "// Old = make_set(a, 1) in a comment\n"
        "T | where s == \"Str = make_set(b, 2)\" and t =~ 'x' | where F =~ 'y'\n"
        "| summarize F = make_set(a, 7), G = make_set(b, 4), H = make_set(c, n) by k\n"
        "| extend G = array_concat(G, dynamic([1]))"
    )
    assert list_caps(text) == {"F": Cap(7, True)}


def test_every_hunting_query_caps_its_sample_columns() -> None:
    caps = {name: list_caps(q.text) for name, q in load_queries().items()}
    assert caps["connector_traffic"]["SampleMessageIds"] == Cap(10, True)
    assert caps["connector_domains"]["Domains"] == Cap(1000, True)
    assert caps["connector_changes"]["Parameters"].is_set is False  # a list keeps its order


def test_a_set_keeps_its_smallest_values_sorted_and_a_list_its_first() -> None:
    assert Cap(2, True).apply(["d", "a", "c", "b"]) == ["a", "b"]
    assert Cap(9, True).apply([3, 1, 2]) == [1, 2, 3]
    assert Cap(2, False).apply(["d", "a", "c"]) == ["d", "a"]
    assert Cap(2, True).apply([{"k": 2}, {"k": 1}, {"k": 3}]) == [{"k": 2}, {"k": 1}]


@pytest.fixture(scope="module")
def source() -> Iterator[LocalSource]:
    with LocalSource(PORTAL, now=NOW) as src:
        yield src


def _run(source: LocalSource, text: str) -> dict:
    result = source.run(RenderedQuery("caps", text, Dialect.ADVANCED_HUNTING, frozenset({"EmailEvents"})))
    assert result.complete, result.reason
    return result.rows[0]


def test_the_local_source_returns_at_most_the_cap_the_smallest_first(source: LocalSource) -> None:
    row = _run(source, "EmailEvents | summarize Capped = make_set(RecipientEmailAddress, 2), "
                       "Whole = make_set(RecipientEmailAddress), Rows = count()")
    assert row["Rows"] == 5
    assert sorted(row["Whole"]) == RECIPIENTS
    assert row["Capped"] == RECIPIENTS[:2]


def test_the_same_query_gives_the_same_capped_values_every_time(source: LocalSource) -> None:
    text = "EmailEvents | summarize Sample = make_set(RecipientEmailAddress, 3) by Connectors | order by Connectors asc"
    first = source.run(RenderedQuery("caps", text, Dialect.ADVANCED_HUNTING, frozenset({"EmailEvents"}))).rows
    for _ in range(3):
        again = source.run(RenderedQuery("caps", text, Dialect.ADVANCED_HUNTING, frozenset({"EmailEvents"}))).rows
        assert again == first
