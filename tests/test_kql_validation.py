"""Kusto.Language (the official KQL parser and binder) checks of the queries, schemas and escaping.

Every query of this module is collected up front and validated in ONE Node process per test
session (the ``kusto`` fixture); each test then reads its own result. duckdb-kql cannot catch what
is checked here: it matches column names case-insensitively and never runs the Log Analytics
rendering.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devtools.kql_check import (
    KustoValidationError,
    QueryItem,
    Result,
    schema_variants,
    validate_queries,
)
from grading.hunting.live import resolve_schema
from grading.hunting.rendering import (
    SCHEMA_DIR,
    Dialect,
    kql_dynamic,
    kql_string,
    la_view_sources,
    la_views,
    load_queries,
    load_schema,
    parse_query_file,
    render,
)

AH = Dialect.ADVANCED_HUNTING
LA = Dialect.LOG_ANALYTICS

# ---------------------------------------------------------------------------------------------
# What the session validates

SANITY: dict[str, tuple[Dialect, str]] = {
    "valid": (
        AH,
        'CloudAppEvents\n| where Timestamp > ago(1d) and ActionType == "New-InboundConnector"\n'
        "| summarize Events = count(), LastSeen = max(Timestamp) by AccountObjectId, Isp",
    ),
    "unknown_column": (AH, 'EmailEvents | where ConnectorName == "x" | project Subject'),
    "isp_case_ah": (AH, "CloudAppEvents | project ISP"),
    "isp_la_spelling": (LA, "CloudAppEvents | project ISP"),
    "isp_ah_spelling_on_la": (LA, "CloudAppEvents | project Isp"),
    "type_error": (AH, "EmailEvents | summarize Total = sum(Subject)"),
    "ports_ah": (AH, "IdentityLogonEvents | where Port > 1000 | project Port, DestinationPort"),
    "ports_la": (LA, "IdentityLogonEvents | where Port > 1000 | project Port, DestinationPort"),
    "alerts_ah": (
        AH,
        "AlertInfo | join kind=inner AlertEvidence on AlertId\n"
        "| project AlertId, Title, Category, EntityType, EvidenceRole, FileSize, ApplicationId,"
        " AdditionalFields",
    ),
    "signins_ah": (
        AH,
        "AADSignInEventsBeta | where ErrorCode == 0 and IsGuestUser\n"
        "| project Timestamp, AccountObjectId, IsExternalUser, LastPasswordChangeTimestamp, Country",
    ),
    "signins_la": (LA, "AADSignInEventsBeta | take 1"),
    "entra_signins_ah": (
        AH,
        "EntraIdSignInEvents | where ErrorCode == 0\n"
        "| project EntraIdDeviceId, TokenIssuerType, RiskLevelDuringSignIn, RiskEventTypes",
    ),
    "new_email_columns_ah": (
        AH,
        "EmailEvents | where IsFirstContact\n"
        "| project ThreatClassification, ExchangeTransportRule, DistributionList, ForwardingInformation, Context,"
        " To, Cc, RecipientDomain, EmailSize",
    ),
    "raw_timestamp_la": (LA, "CloudAppEvents | summarize Last = max(Timestamp)"),
    "signin_tables_la": (LA, "union SigninLogs, AADNonInteractiveUserSignInLogs | take 1"),
}

# Connector names an attacker controls: each must stay one string literal holding exactly itself.
CONNECTOR_NAMES: dict[str, str] = {
    "quote_pipe_comment": 'x" | take 1 //',
    "single_quote_breakout": "x' | take 1 //",
    "newline": "Partner\n| take 1",
    "carriage_return": "Partner\r| take 1",
    "crlf": "Partner\r\n| take 1",
    "tab": "Partner\tInbound",
    "backslash": "back\\slash",
    "trailing_backslash": "trailing\\",
    "escaped_quote_text": 'a\\"b',
    "single_quotes": "it's 'quoted'",
    "unicode_escape_text": "\\u0041 stays six characters",
    "hex_escape_text": "\\x41",
    "verbatim_prefix": '@"c:\\temp"',
    "obfuscated_prefix": 'h"secret"',
    "triple_backtick": "```multi``` line",
    "block_comment": "/* not a comment */",
    "unicode": "Connecteur entrant é 日本語 Ünïcödé",
    "astral": "emoji 😀 𝔘",
    "bidi_override": "invoice\u202egpj.exe",
    "zero_width": "pay\u200bpal",
    "line_separators": "a\u2028b\u2029c\u0085d",
    "bom": "\ufeffPartner",
    "empty": "",
    **{f"control_{code:02x}": f"ctl{chr(code)}x" for code in [*range(0x20), 0x7F]},
}

QUERIES = load_queries()
VARIANTS = schema_variants()
LA_TABLES = [t for t in load_schema(Dialect.LOG_ANALYTICS) if t not in la_view_sources(la_views())]
"""The Log Analytics tables queries name (the sign-in tables are read only through their view)."""
VARIANT_CASES = [
    (variant, name) for variant, (dialect, _) in VARIANTS.items() for name, q in sorted(QUERIES.items())
    if dialect in q.dialects
]
CATALOG_CASES = [(name, d) for name, q in sorted(QUERIES.items()) for d in sorted(q.dialects)]

PARAM_QUERY = """// Which connector names match? (test query for parameter rendering)
// parameters
let connectorName = "placeholder";
let connectors = dynamic(["placeholder"]);
// end parameters
EmailEvents
| where Connectors == connectorName or Connectors in (connectors)
| project Connectors
"""

BOUND_START = datetime(2026, 11, 19, 9, tzinfo=UTC)
BOUND_END = datetime(2026, 11, 19, 10, tzinfo=UTC)
TABLE_QUERY = """// Does the {table} view expose an advanced-hunting Timestamp?
// parameters
// end parameters
{table}
| summarize Rows = count(), Last = max(Timestamp)
"""


def _items(tmp: Path) -> dict[str, QueryItem]:
    """Every query this module checks, by id."""
    items: dict[str, QueryItem] = {}

    def add(key: str, dialect: Dialect, text: str, literals: bool = False) -> None:
        items[key] = QueryItem(key, dialect, text, literals)

    for key, (dialect, text) in SANITY.items():
        add(f"sanity:{key}", dialect, text)

    param_file = tmp / "connector_param.kql"
    param_file.write_text(PARAM_QUERY, encoding="utf-8")
    param_query = parse_query_file(param_file)
    for label, name in CONNECTOR_NAMES.items():
        add(f"escape:{label}:string", AH, f"print Connector = {kql_string(name)}", literals=True)
        add(f"escape:{label}:dynamic", AH, f"print Connectors = {kql_dynamic([name])}", literals=True)
        for dialect in Dialect:
            values = {"connectorName": name, "connectors": [name, "other"]}
            add(f"escape:{label}:render:{dialect}", dialect, render(param_query, values, dialect).text, True)
            # Evidence message ids come from alerts, so from whoever sent the mail: the lookup's own file.
            ids = {"messageIds": [name, "other"]}
            add(f"escape:{label}:message_ids:{dialect}", dialect,
                render(QUERIES["alert_messages"], ids, dialect).text, True)
    # A naive splice, to prove the literal check can tell a broken rendering from a sound one.
    add("escape:naive_splice", AH, f'print Connector = "{CONNECTOR_NAMES["quote_pipe_comment"]}"', True)

    for table in [*LA_TABLES, *la_views()]:
        path = tmp / f"table_{table}.kql"
        path.write_text(TABLE_QUERY.format(table=table), encoding="utf-8")
        query = parse_query_file(path)
        for dialect in Dialect:
            add(f"prelude:{table}:{dialect}", dialect, render(query, dialect=dialect).text)
        add(f"prelude_bounded:{table}", LA, render(query, dialect=LA, start=BOUND_START, end=BOUND_END).text)
    for table in ("CloudAppEvents", "IdentityLogonEvents"):
        add(f"prelude_isp:{table}", LA, render_la_body(tmp, table, f"{table}\n| project Isp, Timestamp\n"))
    # Every column the Log Analytics view of a table gives, with the type it has there.
    for table in la_views():
        add(f"view_columns:{table}", LA, render_la_body(tmp, table, f"{table}\n| take 1\n"))

    for name, dialect in CATALOG_CASES:
        add(f"catalog:{name}:{dialect}", dialect, render(QUERIES[name], dialect=dialect).text)
    for variant, (dialect, tables) in VARIANTS.items():
        resolution = resolve_schema(dialect, {t: [(c["name"], c["type"]) for c in cols] for t, cols in tables.items()})
        for name, query in sorted(QUERIES.items()):
            if dialect in query.dialects:
                key = f"variant:{variant}:{name}"
                items[key] = QueryItem(key, dialect, render(query, dialect=dialect, schema=resolution).text,
                                       schema=variant)
    return items


def render_la_body(tmp: Path, table: str, body: str) -> str:
    path = tmp / f"body_{table}.kql"
    path.write_text(f"// Test body for {table}\n// parameters\n// end parameters\n{body}", encoding="utf-8")
    return render(parse_query_file(path), dialect=LA).text


@pytest.fixture(scope="session")
def kusto(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Result]:
    """One Node run for the whole module; returns a lookup by query id."""
    items = _items(tmp_path_factory.mktemp("kql"))
    schemas = {variant: tables for variant, (_, tables) in VARIANTS.items()}
    results = {r.id: r for r in validate_queries(items.values(), schemas=schemas)}
    return results.__getitem__


# ---------------------------------------------------------------------------------------------
# The tool itself


def test_valid_query_has_no_errors_and_typed_output_columns(kusto):
    result = kusto("sanity:valid")
    assert result.ok, result.describe_errors()
    assert result.result_kind == "table"
    assert result.columns == {
        "AccountObjectId": "string",
        "Isp": "string",
        "Events": "long",
        "LastSeen": "datetime",
    }


def test_unknown_column_is_an_error_pointing_at_it(kusto):
    result = kusto("sanity:unknown_column")
    assert not result.ok
    [error] = result.errors
    assert error.code == "KS142"
    assert result.text[error.start : error.end] == "ConnectorName"
    assert (error.line, error.column) == (1, 21)


def test_isp_column_case_follows_each_dialect(kusto):
    # Against the shipped schemas: AH spells it Isp, so ISP is an error there, and the other way round
    # in Log Analytics. A tenant that spells it the other way is met by the rendering (the variant
    # tests below), never by the query text.
    ah = kusto("sanity:isp_case_ah")
    assert [e.code for e in ah.errors] == ["KS142"]
    assert ah.text[ah.errors[0].start : ah.errors[0].end] == "ISP"
    assert kusto("sanity:isp_la_spelling").ok
    assert not kusto("sanity:isp_ah_spelling_on_la").ok


def test_type_errors_are_errors(kusto):
    assert [e.code for e in kusto("sanity:type_error").errors] == ["KS138"]


def test_log_analytics_ports_are_strings(kusto):
    ah = kusto("sanity:ports_ah")
    assert ah.ok and ah.columns == {"Port": "int", "DestinationPort": "int"}
    la = kusto("sanity:ports_la")
    assert la.columns == {"Port": "string", "DestinationPort": "string"}
    assert [e.code for e in la.errors] == ["KS106"], "comparing a string port with a number must fail in LA"


def test_added_alert_tables_bind_with_documented_types(kusto):
    result = kusto("sanity:alerts_ah")
    assert result.ok, result.describe_errors()
    assert result.columns == {
        "AlertId": "string",
        "Title": "string",
        "Category": "string",
        "EntityType": "string",
        "EvidenceRole": "string",
        "FileSize": "long",
        "ApplicationId": "int",
        "AdditionalFields": "string",
    }


def test_entra_signins_exist_in_advanced_hunting_only(kusto):
    ah = kusto("sanity:signins_ah")
    assert ah.ok, ah.describe_errors()
    assert ah.columns == {
        "Timestamp": "datetime",
        "AccountObjectId": "string",
        "IsExternalUser": "int",
        "LastPasswordChangeTimestamp": "datetime",
        "Country": "string",
    }
    assert [e.code for e in kusto("sanity:signins_la").errors] == ["KS204"]


def test_entra_signin_table_has_the_current_columns_with_their_types(kusto):
    result = kusto("sanity:entra_signins_ah")
    assert result.ok, result.describe_errors()
    assert result.columns == {
        "EntraIdDeviceId": "string",
        "TokenIssuerType": "string",
        "RiskLevelDuringSignIn": "int",
        "RiskEventTypes": "string",
    }


def test_email_events_has_the_columns_real_tenants_carry(kusto):
    result = kusto("sanity:new_email_columns_ah")
    assert result.ok, result.describe_errors()
    assert result.columns["ExchangeTransportRule"] == "string" and result.columns["EmailSize"] == "int"


def test_missing_npm_package_names_npm_ci(tmp_path):
    with pytest.raises(KustoValidationError, match="npm ci"):
        validate_queries([QueryItem("q", AH, "print 1")], root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Escaping: attacker-controlled strings stay one literal, proven on Kusto.Language's parse tree


@pytest.mark.parametrize("label", CONNECTOR_NAMES)
def test_kql_string_stays_one_literal_with_the_exact_value(kusto, label):
    name = CONNECTOR_NAMES[label]
    result = kusto(f"escape:{label}:string")
    assert result.ok, result.describe_errors()
    assert result.columns == {"Connector": "string"}
    [literal] = result.literals
    assert literal.value == name
    assert literal.text == kql_string(name)
    assert result.text[literal.start : literal.end] == literal.text, "offsets are code points"
    assert literal.parent == "StringLiteralExpression" and not literal.compound


@pytest.mark.parametrize("label", CONNECTOR_NAMES)
def test_kql_dynamic_keeps_each_string_one_literal(kusto, label):
    result = kusto(f"escape:{label}:dynamic")
    assert result.ok, result.describe_errors()
    assert result.columns == {"Connectors": "dynamic"}
    assert [lit.value for lit in result.literals] == [CONNECTOR_NAMES[label]]


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("label", CONNECTOR_NAMES)
def test_rendered_parameters_stay_literals(kusto, label, dialect):
    result = kusto(f"escape:{label}:render:{dialect}")
    assert result.ok, result.describe_errors()
    assert result.columns == {"Connectors": "string"}
    name = CONNECTOR_NAMES[label]
    # The Log Analytics prelude names one column itself: column_ifexists("Timestamp", ...) per table.
    prelude = ["Timestamp"] if Dialect(dialect) is LA else []
    assert sorted(lit.value for lit in result.literals) == sorted([name, name, "other", *prelude])
    assert not any(lit.compound for lit in result.literals)


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("label", CONNECTOR_NAMES)
def test_alert_message_ids_stay_literals(kusto, label, dialect):
    result = kusto(f"escape:{label}:message_ids:{dialect}")
    assert result.ok, result.describe_errors()
    assert result.columns == {"NetworkMessageId": "string", "Connector": "string", "LastSeen": "datetime"}
    prelude = ["Timestamp"] if Dialect(dialect) is LA else []
    assert sorted(lit.value for lit in result.literals) == sorted([CONNECTOR_NAMES[label], "other", *prelude])
    assert not any(lit.compound for lit in result.literals)


def test_naive_splicing_is_caught(kusto):
    # The same name spliced between quotes by hand: the parse tree shows the breakout.
    result = kusto("escape:naive_splice")
    assert [lit.value for lit in result.literals] != [CONNECTOR_NAMES["quote_pipe_comment"]]


# ---------------------------------------------------------------------------------------------
# The Log Analytics prelude and the schema files


@pytest.mark.parametrize("table", [*LA_TABLES, *la_views()])
def test_log_analytics_prelude_gives_every_table_a_timestamp(kusto, table):
    for dialect in Dialect:
        result = kusto(f"prelude:{table}:{dialect}")
        assert result.ok, f"{dialect}: {result.describe_errors()}"
        assert result.columns == {"Rows": "long", "Last": "datetime"}


@pytest.mark.parametrize("table", [*LA_TABLES, *la_views()])
def test_log_analytics_prelude_bounded_on_time_generated_binds(kusto, table):
    """The rendering a sweep sends (with its window): TimeGenerated bound, Timestamp kept or made."""
    result = kusto(f"prelude_bounded:{table}")
    assert result.ok, result.describe_errors()
    assert result.columns == {"Rows": "long", "Last": "datetime"}


def test_log_analytics_has_no_timestamp_without_the_prelude(kusto):
    result = kusto("sanity:raw_timestamp_la")
    assert [e.code for e in result.errors] == ["KS142"]


@pytest.mark.parametrize("table", ["CloudAppEvents", "IdentityLogonEvents"])
def test_log_analytics_prelude_maps_isp(kusto, table):
    result = kusto(f"prelude_isp:{table}")
    assert result.ok, result.describe_errors()
    assert result.columns == {"Isp": "string", "Timestamp": "datetime"}


def test_schema_files_share_one_shape():
    ah = json.loads((SCHEMA_DIR / "ah.json").read_text(encoding="utf-8"))
    la = json.loads((SCHEMA_DIR / "la.json").read_text(encoding="utf-8"))
    for doc in (ah, la):
        assert set(doc) - {"aliases"} == {"dialect", "source", "required", "tables"}
        assert set(doc["required"]) <= set(doc["tables"])
        for columns in doc["tables"].values():
            names = [c["name"] for c in columns]
            assert len(names) == len(set(names))
            assert all(set(c) in ({"name", "type"}, {"name", "type", "optional", "source"}) for c in columns)
            # An optional column names the reference it comes from, and the file's note names it too.
            assert all(c["source"] in doc["source"] for c in columns if c.get("optional"))
    # Log Analytics holds Entra ID's sign-ins in its own two tables, read as EntraIdSignInEvents (views/).
    assert set(la["tables"]) - la_view_sources(la_views()) == set(ah["tables"]) - {"AADSignInEventsBeta",
                                                                                     "EntraIdSignInEvents"}
    assert la_view_sources(la_views()) == {"SigninLogs", "AADNonInteractiveUserSignInLogs"} <= set(la["tables"])
    for table, alias in ah["aliases"].items():
        assert table in ah["tables"] and all(t in ah["tables"] for t in alias["tables"])
    for table, columns in la["tables"].items():
        names = {c["name"] for c in columns}
        assert "TimeGenerated" in names and "Timestamp" not in names, table


# ---------------------------------------------------------------------------------------------
# Every shipped query, in every dialect it declares


@pytest.mark.parametrize(("name", "dialect"), CATALOG_CASES)
def test_query_binds_without_errors(kusto, name, dialect):
    result = kusto(f"catalog:{name}:{dialect}")
    assert result.ok, f"{name} ({dialect}):\n{result.describe_errors()}"
    assert result.result_kind == "table"


@pytest.mark.parametrize(("name", "dialect"), CATALOG_CASES)
def test_query_output_matches_what_the_code_reads(kusto, name, dialect):
    from grading.hunting import catalog

    expected_map = catalog.EXPECTED_COLUMNS
    assert name in expected_map, f"add {name} to grading.hunting.catalog.EXPECTED_COLUMNS"
    actual = kusto(f"catalog:{name}:{dialect}").columns or {}
    expected = expected_map[name]
    missing = sorted(set(expected) - set(actual))
    retyped = {c: (expected[c], actual[c]) for c in expected if c in actual and actual[c] != expected[c]}
    assert not missing and not retyped, f"{name} ({dialect}): missing {missing}, (expected, actual) {retyped}"


@pytest.mark.parametrize("name", [n for n, q in sorted(QUERIES.items()) if set(q.dialects) == set(Dialect)])
def test_both_dialects_output_the_same_columns(kusto, name):
    assert kusto(f"catalog:{name}:{AH}").columns == kusto(f"catalog:{name}:{LA}").columns


# ---------------------------------------------------------------------------------------------
# Every shipped query against every tenant schema we claim to run on, rendered for that tenant


@pytest.mark.parametrize(("variant", "name"), VARIANT_CASES)
def test_query_binds_on_every_schema_variant_with_the_same_output(kusto, variant, name):
    from grading.hunting.catalog import EXPECTED_COLUMNS

    dialect = VARIANTS[variant][0]
    result = kusto(f"variant:{variant}:{name}")
    assert result.ok, f"{name} on {variant}:\n{result.describe_errors()}\n{result.text[:600]}"
    assert result.columns == kusto(f"catalog:{name}:{dialect}").columns
    assert set(EXPECTED_COLUMNS[name]) <= set(result.columns or {})


def test_the_variants_are_the_drifts_the_issue_names():
    ah_variants = {v: tables for v, (d, tables) in VARIANTS.items() if d is AH}
    assert "EntraIdSignInEvents" not in ah_variants["ah-beta"] and "AADSignInEventsBeta" in ah_variants["ah-beta"]
    assert "AadDeviceId" in {c["name"] for c in ah_variants["ah-beta"]["AADSignInEventsBeta"]}
    assert "AADSignInEventsBeta" not in ah_variants["ah-entra"]
    spellings = {v: {c["name"] for c in t["CloudAppEvents"]} & {"ISP", "Isp"} for v, t in ah_variants.items()}
    assert spellings["ah-ISP"] == {"ISP"} and spellings["ah-Isp"] == {"Isp"}
    la_spellings = {v: {c["name"] for c in t["IdentityLogonEvents"]} & {"ISP", "Isp"}
                    for v, (d, t) in VARIANTS.items() if d is LA}
    assert la_spellings == {"la-ISP": {"ISP"}, "la-Isp": {"Isp"}, "la-interactive-ISP": {"ISP"}}
    assert "AADNonInteractiveUserSignInLogs" not in VARIANTS["la-interactive-ISP"][1]


def test_the_isp_spelling_of_the_other_dialect_binds_once_resolved(kusto):
    # Raw, ISP is an error against the shipped advanced-hunting schema (see above); rendered for a
    # tenant that spells it ISP, the same query reads it as Isp.
    result = kusto("variant:ah-ISP:connector_changes")
    assert result.ok and "let CloudAppEvents = CloudAppEvents | project-rename Isp = ISP;" in result.text
    beta = kusto("variant:ah-beta:admin_entra_signins")
    view = "let EntraIdSignInEvents = AADSignInEventsBeta | project-rename EntraIdDeviceId = AadDeviceId"
    assert beta.ok and view in beta.text


# ---------------------------------------------------------------------------------------------
# Entra ID sign-ins in Log Analytics: SigninLogs and AADNonInteractiveUserSignInLogs as EntraIdSignInEvents


def test_log_analytics_has_entra_s_two_sign_in_tables_with_their_documented_types(kusto):
    result = kusto("sanity:signin_tables_la")
    assert result.ok, result.describe_errors()
    columns = result.columns or {}
    assert columns["UserId"] == "string" and columns["ResultType"] == "string"
    # LocationDetails and DeviceDetail are dynamic in SigninLogs and strings in the non-interactive table: a
    # plain union renames each by type (what the export loader maps back: <Column>_<type>), so the view
    # shapes each table before the union.
    assert columns["LocationDetails_dynamic"] == "dynamic" and columns["LocationDetails_string"] == "string"
    assert "LocationDetails" not in columns and "DeviceDetail_string" in columns


def test_the_log_analytics_view_gives_the_advanced_hunting_columns_with_their_types(kusto):
    ah = {c["name"]: c["type"] for c in load_schema(AH)["EntraIdSignInEvents"]}
    for table in la_views():
        result = kusto(f"view_columns:{table}")
        assert result.ok, result.describe_errors()
        columns = result.columns or {}
        assert {c: t for c, t in columns.items() if c in ah} == {c: ah[c] for c in columns if c in ah}
        assert set(columns) <= set(ah), "the view makes only advanced-hunting columns"
        # Every column the sign-in question reads is there.
        assert {"Timestamp", "AccountObjectId", "AccountUpn", "ErrorCode", "AuthenticationRequirement", "IsManaged",
                "IsCompliant", "RiskLevelAggregated", "RiskState", "IPAddress", "Country", "City"} <= set(columns)


def test_admin_entra_signins_reads_both_log_analytics_sign_in_tables(kusto):
    result = kusto("catalog:admin_entra_signins:la")
    assert result.ok, result.describe_errors()
    assert "let EntraIdSignInEvents = union (SigninLogs | extend DeviceInfo" in result.text
    assert "(AADNonInteractiveUserSignInLogs | extend DeviceInfo" in result.text


def test_a_workspace_with_interactive_sign_ins_only_reads_that_table(kusto):
    result = kusto("variant:la-interactive-ISP:admin_entra_signins")
    assert result.ok, result.describe_errors()
    assert "let EntraIdSignInEvents = SigninLogs | extend DeviceInfo" in result.text
    assert "(AADNonInteractiveUserSignInLogs |" not in result.text and "union" not in result.text
