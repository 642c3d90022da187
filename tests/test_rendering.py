"""Query files follow the contract and render with typed, escaped parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from grading.hunting.catalog import EXPECTED_COLUMNS, Windows, sweep_plan
from grading.hunting.rendering import (
    PARAMS_END,
    PARAMS_START,
    Dialect,
    ParameterError,
    QueryFileError,
    kql_datetime,
    kql_dynamic,
    kql_string,
    kql_timespan,
    load_queries,
    parse_query_file,
    render,
)

QUERIES = load_queries()


def test_every_query_file_opens_with_its_question_and_a_parameter_block():
    assert len(QUERIES) >= 14
    for q in QUERIES.values():
        text = q.text
        assert text.startswith("// "), q.name
        assert q.question.endswith("?"), f"{q.name}: the first comment line should be the question"
        assert PARAMS_START in text and PARAMS_END in text
        assert q.parameters, q.name
        assert q.tables, q.name
    assert QUERIES["connector_urls"].optional_tables == {"EmailUrlInfo"}
    assert QUERIES["admin_logon_bursts"].optional_tables == {"IdentityLogonEvents"}
    assert QUERIES["connector_traffic"].optional_tables == frozenset()


def test_every_query_has_expected_columns_and_every_plan_entry_names_a_query():
    assert set(EXPECTED_COLUMNS) == set(QUERIES)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    w = Windows(now - timedelta(hours=1), now, now - timedelta(days=1), now - timedelta(days=7),
                now - timedelta(days=15),
                now - timedelta(days=21))
    plan = sweep_plan(w, ["contoso.com"])
    for planned in plan:
        q = QUERIES[planned.query]
        assert set(planned.values) <= set(q.parameters), planned.label
        # Every parameter a query declares is set by the sweep (no default "ago()" leaks into a sweep).
        assert set(q.parameters) - set(planned.values) <= {"burstBin", "failureThreshold", "successWithin",
                                                           "messagesPerHour"}, planned.label


def test_parameter_types_are_inferred_from_defaults():
    q = QUERIES["connector_traffic"]
    assert {p.name: p.type for p in q.parameters.values()} == {
        "windowStart": "datetime", "windowEnd": "datetime", "tenantDomains": "dynamic"}
    assert QUERIES["admin_logon_bursts"].parameters["failureThreshold"].type == "long"
    assert QUERIES["admin_logon_bursts"].parameters["successWithin"].type == "timespan"


def test_render_replaces_the_parameter_block_with_typed_literals():
    q = QUERIES["connector_traffic"]
    start = datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
    text = render(q, {"windowStart": start, "tenantDomains": ["contoso.com", 'x"y']}).text
    assert 'let windowStart = datetime(2026-11-19T00:00:00.0000000Z);' in text
    assert 'let tenantDomains = dynamic(["contoso.com", "x\\"y"]);' in text
    assert "let windowEnd = now();" in text  # not given: the file's default
    assert text.count(PARAMS_START) == 1


def test_render_refuses_wrong_types_and_unknown_parameters_naming_them():
    q = QUERIES["connector_traffic"]
    with pytest.raises(ParameterError, match=r"connector_traffic, parameter windowStart \(datetime\)"):
        render(q, {"windowStart": "2026-11-19"})
    with pytest.raises(ParameterError, match="naive"):
        render(q, {"windowStart": datetime(2026, 11, 19)})
    with pytest.raises(ParameterError, match="no parameter"):
        render(q, {"connector": "x"})


def test_log_analytics_rendering_shadows_each_table_it_reads():
    own_or_generated = 'Timestamp = coalesce(column_ifexists("Timestamp", datetime(null)), TimeGenerated)'
    text = render(QUERIES["connector_domains"], {}, Dialect.LOG_ANALYTICS).text
    assert f"let EmailEvents = EmailEvents | extend {own_or_generated}, AdditionalFields = " in text
    text = render(QUERIES["admin_activity_locations"], {}, Dialect.LOG_ANALYTICS).text
    assert f"let CloudAppEvents = CloudAppEvents | extend {own_or_generated}, Isp = ISP;" in text
    # Entra sign-ins: Log Analytics holds them in two tables of its own, shaped and unioned (views/).
    text = render(QUERIES["admin_entra_signins"], {}, Dialect.LOG_ANALYTICS).text
    assert "let EntraIdSignInEvents = union (SigninLogs | extend DeviceInfo" in text
    assert "(AADNonInteractiveUserSignInLogs | extend DeviceInfo" in text


def test_log_analytics_rendering_bounds_each_table_on_time_generated_and_keeps_its_timestamp():
    """TimeGenerated is what Log Analytics partitions on: each table is cut to the query's window
    (reaching a little before it and an hour past it, for records that arrived late) before the body
    filters on the event's own Timestamp, which the rendering no longer overwrites where it exists."""
    start, end = datetime(2026, 11, 19, 9, tzinfo=UTC), datetime(2026, 11, 19, 10, tzinfo=UTC)
    text = render(QUERIES["connector_traffic"], {}, Dialect.LOG_ANALYTICS, start=start, end=end).text
    (line,) = [ln for ln in text.splitlines() if ln.startswith("let EmailEvents = EmailEvents")]
    assert line == (
        "let EmailEvents = EmailEvents"
        " | where TimeGenerated >= datetime(2026-11-19T08:50:00.0000000Z)"
        " and TimeGenerated < datetime(2026-11-19T11:00:00.0000000Z)"
        ' | extend Timestamp = coalesce(column_ifexists("Timestamp", datetime(null)), TimeGenerated),'
        " AdditionalFields = tostring(AdditionalFields);"
    )
    assert "Timestamp = TimeGenerated" not in text
    ah = render(QUERIES["connector_traffic"], {}, Dialect.ADVANCED_HUNTING, start=start, end=end).text
    assert "TimeGenerated" not in ah


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ('x" | take 1 //', '"x\\" | take 1 //"'),
        ("a\nb", '"a\\nb"'),
        ("back\\slash\\", '"back\\\\slash\\\\"'),
        ("tab\tcr\r", '"tab\\tcr\\r"'),
        ("it's", '"it\'s"'),
    ],
)
def test_string_literals_escape_what_kusto_documents(value, literal):
    assert kql_string(value) == literal


def test_literal_helpers():
    assert kql_datetime(datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=timezone(timedelta(hours=2)))) == (
        "datetime(2026-01-02T01:04:05.0006000Z)")
    assert kql_timespan(timedelta(hours=1)) == "3600s"
    assert kql_timespan(timedelta(milliseconds=1500)) == "1500ms"
    assert kql_dynamic({"b", "a"}) == 'dynamic(["a", "b"])'
    assert kql_dynamic([1, True, None, 2.5]) == "dynamic([1, true, null, 2.5])"
    with pytest.raises(ParameterError):
        kql_dynamic([float("nan")])


def test_a_query_file_without_a_parameter_block_is_refused_with_its_path(tmp_path: Path):
    bad = tmp_path / "bad.kql"
    bad.write_text("// What?\nEmailEvents | take 1\n", encoding="utf-8")
    with pytest.raises(QueryFileError, match=str(bad)):
        parse_query_file(bad)
    worse = tmp_path / "worse.kql"
    worse.write_text("// Q?\n// parameters\nlet x = foo;\n// end parameters\nEmailEvents\n", encoding="utf-8")
    with pytest.raises(QueryFileError, match=r"worse.kql:3: cannot tell the type"):
        parse_query_file(worse)
