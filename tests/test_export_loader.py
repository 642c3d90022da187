"""The export-folder loader: every format and dialect ends as the advanced-hunting schema."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from grading.hunting.rendering import Dialect
from grading.sources.local.export import ExportError, format_report, load_export

DATA = Path(__file__).parent / "data" / "exports"

# One logical export, written below in each format the way that format would carry it.
T1 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 20, 11, 30, 15, 250000, tzinfo=UTC)
CLOUD = [
    {
        "Timestamp": T1,
        "ActionType": "New-InboundConnector",
        "ApplicationId": 20893,
        "IsAdminOperation": True,
        "Isp": "Example Hosting",
        "AccountDisplayName": "Admin, One",
        "RawEventData": {"Parameters": [{"Name": "Name", "Value": 'Relay "A"'}]},
        "IPTags": ["proxy", "tor"],
    },
    {
        "Timestamp": T2,
        "ActionType": "Set-InboundConnector",
        "ApplicationId": None,
        "IsAdminOperation": False,
        "Isp": "",
        "AccountDisplayName": "",
        "RawEventData": {"Parameters": []},
        "IPTags": None,
    },
]
MAIL = [
    {
        "Timestamp": T1,
        "NetworkMessageId": "m1",
        "Connectors": 'Relay "A"',
        "AttachmentCount": 2,
        "EmailClusterId": 9007199254740993,
    },
    {
        "Timestamp": T2,
        "NetworkMessageId": "m2",
        "Connectors": "",
        "AttachmentCount": None,
        "EmailClusterId": None,
    },
]


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)  # bools as True/False, the way a portal export writes them


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(rows[0])
        writer.writerows([_csv_cell(v) for v in row.values()] for row in rows)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    def native(value: Any) -> Any:
        return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else value

    path.write_text("".join(json.dumps({k: native(v) for k, v in r.items()}) + "\n" for r in rows), "utf-8")


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: dict[str, Any] = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        if name == "RawEventData":  # dynamic as JSON text, as Parquet exports usually carry it
            columns[name] = pa.array([json.dumps(v) for v in values], pa.string())
        elif name == "IPTags":  # dynamic as a native list
            columns[name] = pa.array(values, pa.list_(pa.string()))
        elif name == "Timestamp":
            columns[name] = pa.array(values, pa.timestamp("us", tz="UTC"))
        elif name in {"ApplicationId", "AttachmentCount"}:
            columns[name] = pa.array(values, pa.int32())
        else:
            columns[name] = pa.array(values)
    pq.write_table(pa.table(columns), path)


WRITERS = {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}


def make_export(folder: Path, fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    WRITERS[fmt](folder / f"CloudAppEvents.{fmt}", CLOUD)
    WRITERS[fmt](folder / f"EmailEvents.{fmt}", MAIL)
    return folder


def fetch(con: Any, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def cloud_rows(con: Any) -> list[tuple[Any, ...]]:
    rows = fetch(
        con,
        "SELECT Timestamp, ActionType, ApplicationId, IsAdminOperation, Isp, AccountDisplayName, "
        "CAST(RawEventData AS VARCHAR), CAST(IPTags AS VARCHAR) FROM CloudAppEvents ORDER BY Timestamp",
    )
    return [
        (*r[:6], None if r[6] is None else json.loads(r[6]), None if r[7] is None else json.loads(r[7]))
        for r in rows
    ]


EXPECTED_CLOUD = [
    (
        T1.replace(tzinfo=None),
        "New-InboundConnector",
        20893,
        True,
        "Example Hosting",
        "Admin, One",
        {"Parameters": [{"Name": "Name", "Value": 'Relay "A"'}]},
        ["proxy", "tor"],
    ),
    (T2.replace(tzinfo=None), "Set-InboundConnector", None, False, "", "", {"Parameters": []}, None),
]
EXPECTED_MAIL = [
    (T1.replace(tzinfo=None), "m1", 'Relay "A"', 2, 9007199254740993),
    (T2.replace(tzinfo=None), "m2", "", None, None),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_each_format_loads_to_the_same_normalised_content(tmp_path: Path, fmt: str) -> None:
    with load_export(make_export(tmp_path / fmt, fmt)) as loaded:
        con = loaded.connection
        assert cloud_rows(con) == EXPECTED_CLOUD
        mail = fetch(
            con,
            "SELECT Timestamp, NetworkMessageId, Connectors, AttachmentCount, EmailClusterId "
            "FROM EmailEvents ORDER BY Timestamp",
        )
        assert mail == EXPECTED_MAIL
        # Every schema column exists with its schema type, whatever the file held.
        types = dict(
            fetch(
                con,
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'CloudAppEvents'",
            )
        )
        assert types["Timestamp"] == "TIMESTAMP"
        assert types["ApplicationId"] == "INTEGER"
        assert types["IsAdminOperation"] == "BOOLEAN"
        assert types["RawEventData"] == "JSON"
        assert types["SessionData"] == "JSON"  # absent from the file, filled
        report = loaded.report.tables["CloudAppEvents"]
        assert (report.format, report.dialect, report.rows) == (fmt, Dialect.ADVANCED_HUNTING, 2)
        assert "SessionData" in report.columns_filled
        assert "RawEventData" not in report.columns_filled


def test_portal_csv_with_some_columns_and_isp_spelt_upper_case() -> None:
    with load_export(DATA / "portal") as loaded:
        con = loaded.connection
        # ISP in the file feeds the schema's Isp.
        assert fetch(con, "SELECT DISTINCT Isp FROM CloudAppEvents") == [("Example Hosting",)]
        cloud = loaded.report.tables["CloudAppEvents"]
        assert ("ISP", "Isp") in cloud.columns_renamed
        mail = loaded.report.tables["EmailEvents"]
        assert mail.rows == 5
        assert "ThreatTypes" in mail.columns_filled and "BulkComplaintLevel" in mail.columns_filled
        # Absent columns are typed empties: '' for strings, null for numbers.
        assert fetch(con, "SELECT DISTINCT ThreatTypes, BulkComplaintLevel FROM EmailEvents") == [("", None)]
        # The portal's "2026-11-20 10:00:00" and ISO with 7 fractional digits both parse as UTC.
        times = [r[0] for r in fetch(con, "SELECT Timestamp FROM EmailEvents ORDER BY Timestamp")]
        assert times[0] == datetime(2026, 11, 20, 10, 0)
        assert times[-1] == datetime(2026, 11, 20, 12, 0, 0, 123456)
        # Quoted cells keep commas, quotes and newlines; attacker text is only data.
        subjects = {r[0] for r in fetch(con, "SELECT Subject FROM EmailEvents")}
        assert 'Invoice "urgent", pay now' in subjects and "two\nlines" in subjects
        evil = con.execute(
            "SELECT count(*) FROM EmailEvents WHERE Connectors = ?",
            ["Evil\" conn'); DROP TABLE EmailEvents;--"],
        ).fetchall()
        assert evil == [(1,)]
        # Empty cells in int columns are null, not 0.
        assert fetch(
            con, "SELECT AttachmentCount, UrlCount FROM EmailEvents WHERE NetworkMessageId = 'nm-003'"
        ) == [(None, None)]


def test_log_analytics_export_maps_time_generated_and_ignores_la_columns() -> None:
    with load_export(DATA / "log_analytics") as loaded:
        con = loaded.connection
        mail = loaded.report.tables["EmailEvents"]
        assert mail.dialect is Dialect.LOG_ANALYTICS
        assert set(mail.columns_ignored) == {"TenantId", "Type"}
        # RecipientDomain is a schema column now (real tenants carry it); the file's values are kept.
        assert "RecipientDomain" not in mail.columns_filled
        assert fetch(con, "SELECT Timestamp FROM EmailEvents ORDER BY 1") == [
            (datetime(2026, 11, 21, 8, 0),),
            (datetime(2026, 11, 21, 8, 10, 0, 500000),),
        ]
        # LA's dynamic AdditionalFields is a string in advanced hunting.
        assert fetch(con, "SELECT AdditionalFields FROM EmailEvents ORDER BY Timestamp") == [
            ('{"x":1}',),
            ("",),
        ]
        cloud = loaded.report.tables["CloudAppEvents"]
        assert cloud.dialect is Dialect.LOG_ANALYTICS and cloud.format == "jsonl"
        assert set(cloud.columns_ignored) == {"TenantId", "Type", "SourceSystem"}
        assert fetch(con, "SELECT DISTINCT Isp FROM CloudAppEvents") == [("Example Hosting",)]
        # Native JSON and JSON text in the same dynamic column both become JSON values.
        names = fetch(
            con,
            "SELECT json_extract_string(RawEventData, '$.Parameters[0].Value'), "
            "json_type(RawEventData) FROM CloudAppEvents ORDER BY Timestamp",
        )
        assert names == [("Out1", "OBJECT"), ("Out1", "OBJECT")]
        assert fetch(con, "SELECT IsAdminOperation FROM CloudAppEvents ORDER BY Timestamp") == [
            (True,),
            (False,),
        ]
        text = format_report(loaded.report)
        assert "Log Analytics export" in text and "TenantId" in text


def test_la_portal_header_with_utc_suffix(tmp_path: Path) -> None:
    (tmp_path / "EmailEvents.csv").write_text(
        "TimeGenerated [UTC],NetworkMessageId\n2026-11-21T08:00:00Z,m\n"
    )
    (tmp_path / "CloudAppEvents.csv").write_text("Timestamp,ActionType\n2026-11-21T08:00:00Z,x\n")
    with load_export(tmp_path) as loaded:
        assert fetch(loaded.connection, "SELECT Timestamp FROM EmailEvents") == [
            (datetime(2026, 11, 21, 8, 0),)
        ]


def _minimal_export(
    folder: Path, mail_csv: str, cloud_csv: str = "Timestamp\n2026-11-20T00:00:00Z\n"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "EmailEvents.csv").write_text(mail_csv, encoding="utf-8")
    (folder / "CloudAppEvents.csv").write_text(cloud_csv, encoding="utf-8")
    return folder


def test_booleans_in_every_spelling_and_empty_cells(tmp_path: Path) -> None:
    cloud = "Timestamp,IsAdminOperation,IsExternalUser,City,ApplicationId,RawEventData\n" + "".join(
        f"2026-11-20T00:00:0{i}Z,{b},,,,\n"
        for i, b in enumerate(["true", "false", "True", "False", "1", "0", "TRUE", ""])
    )
    with load_export(_minimal_export(tmp_path, "Timestamp\n2026-11-20T00:00:00Z\n", cloud)) as loaded:
        rows = fetch(
            loaded.connection,
            "SELECT IsAdminOperation, IsExternalUser, City, ApplicationId, RawEventData "
            "FROM CloudAppEvents ORDER BY Timestamp",
        )
        assert [r[0] for r in rows] == [True, False, True, False, True, False, True, None]
        # An empty cell: '' in a string column, null in bool, int and dynamic columns.
        assert {r[1:] for r in rows} == {(None, "", None, None)}


def test_dynamic_text_that_is_not_json_is_kept_as_a_string(tmp_path: Path) -> None:
    cloud = 'Timestamp,RawEventData,IPTags\n2026-11-20T00:00:00Z,not json,"[""a"",1]"\n'
    with load_export(_minimal_export(tmp_path, "Timestamp\n2026-11-20T00:00:00Z\n", cloud)) as loaded:
        row = fetch(
            loaded.connection,
            "SELECT json_type(RawEventData), RawEventData ->> '$', "
            "CAST(IPTags AS VARCHAR) FROM CloudAppEvents",
        )
        assert row == [("VARCHAR", "not json", '["a",1]')]


def test_times_in_iso_forms_are_utc(tmp_path: Path) -> None:
    mail = (
        "Timestamp,NetworkMessageId\n2026-11-20T10:00:00Z,a\n2026-11-20T10:00:00,b\n"
        "2026-11-20T12:00:00+02:00,c\n2026-11-20 10:00:00.5,d\n"
    )
    with load_export(_minimal_export(tmp_path, mail)) as loaded:
        rows = dict(fetch(loaded.connection, "SELECT NetworkMessageId, Timestamp FROM EmailEvents"))
        assert rows == {
            "a": datetime(2026, 11, 20, 10),
            "b": datetime(2026, 11, 20, 10),
            "c": datetime(2026, 11, 20, 10),
            "d": datetime(2026, 11, 20, 10, 0, 0, 500000),
        }
        assert loaded.report.latest_event_time == datetime(2026, 11, 20, 10, 0, 0, 500000, tzinfo=UTC)


def test_latest_event_time_spans_mail_and_cloud_app_events() -> None:
    with load_export(DATA / "portal") as loaded:
        assert loaded.report.latest_event_time == datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)


def test_unparseable_datetime_names_file_column_and_value(tmp_path: Path) -> None:
    mail = "Timestamp,NetworkMessageId\n2026-11-20T10:00:00Z,a\n20/11/2026 10h,b\n"
    with pytest.raises(ExportError) as err:
        load_export(_minimal_export(tmp_path, mail))
    message = str(err.value)
    assert "EmailEvents.csv" in message and "Timestamp" in message and "20/11/2026 10h" in message


def test_bad_value_in_parquet_text_column_is_caught_at_load(tmp_path: Path) -> None:
    # Parquet holding times as text is parsed at load, like CSV, so the bad cell stops the load.
    make_export(tmp_path, "csv")
    (tmp_path / "EmailEvents.csv").unlink()
    pq.write_table(
        pa.table({"Timestamp": ["2026-11-20T10:00:00Z", "yesterday"]}), tmp_path / "EmailEvents.parquet"
    )
    with pytest.raises(ExportError, match=r"EmailEvents\.parquet.*'yesterday'"):
        load_export(tmp_path)


def test_bad_boolean_names_the_column(tmp_path: Path) -> None:
    cloud = "Timestamp,IsAdminOperation\n2026-11-20T00:00:00Z,maybe\n"
    with pytest.raises(ExportError, match=r"CloudAppEvents\.csv: column IsAdminOperation holds 'maybe'"):
        load_export(_minimal_export(tmp_path, "Timestamp\n2026-11-20T00:00:00Z\n", cloud))


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("CloudAppEvents.parquet", b"PAR1 this is not really parquet", "cannot read this parquet file"),
        ("CloudAppEvents.csv", b"", "the file is empty"),
        (
            "CloudAppEvents.csv",
            b"Timestamp,ActionType\n2026-11-20T10:00:00Z,a,extra\n",
            "CSV Error on Line: 2",
        ),
        ("CloudAppEvents.csv", b"\xff\xfeT\x00i\x00m\x00e\x00", "not UTF-8"),
        (
            "CloudAppEvents.jsonl",
            b'{"Timestamp": "2026-11-20T10:00:00Z"}\n[1, 2]\n',
            "not a JSON object: '[1, 2]'",
        ),
        ("CloudAppEvents.jsonl", b'{"Timestamp": "2026-11-20T10:00:00Z"}\n{broken\n', "Malformed JSON"),
    ],
)
def test_unreadable_file_is_an_error_naming_it(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "CloudAppEvents.csv").unlink()
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ExportError) as err:
        load_export(tmp_path)
    assert str(err.value).startswith(str(tmp_path / name) + ":")
    assert expected in str(err.value)


def test_csv_with_byte_order_mark_and_crlf_lines(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "EmailEvents.csv").write_bytes(
        b"\xef\xbb\xbfTimestamp,NetworkMessageId\r\n2026-11-20T10:00:00Z,m1\r\n"
    )
    with load_export(tmp_path) as loaded:
        rows = fetch(loaded.connection, "SELECT Timestamp, NetworkMessageId FROM EmailEvents")
        assert rows == [(datetime(2026, 11, 20, 10), "m1")]


def test_missing_required_table_is_named(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "EmailEvents.csv").unlink()
    with pytest.raises(ExportError, match=r"EmailEvents\.parquet\|\.csv\|\.jsonl"):
        load_export(tmp_path)


def test_two_files_for_one_table_is_an_error_naming_both(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    write_jsonl(tmp_path / "emailevents.jsonl", MAIL)
    with pytest.raises(ExportError) as err:
        load_export(tmp_path)
    assert "EmailEvents.csv" in str(err.value) and "emailevents.jsonl" in str(err.value)


def test_file_without_any_time_column_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"EmailEvents\.csv: no Timestamp"):
        load_export(_minimal_export(tmp_path, "NetworkMessageId\nm1\n"))


def test_number_where_a_datetime_belongs_is_an_error(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "CloudAppEvents.csv").unlink()
    pq.write_table(
        pa.table({"Timestamp": pa.array([1700000000], pa.int64())}), tmp_path / "CloudAppEvents.parquet"
    )
    with pytest.raises(ExportError,
                       match=r"CloudAppEvents\.parquet: column Timestamp is BIGINT, which cannot hold datetime"):
        load_export(tmp_path)


def test_unknown_files_are_reported_once_and_optional_tables_as_absent(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "README.txt").write_text("hello")
    (tmp_path / "EmailEvents.xlsx").write_text("not a supported format")
    with load_export(tmp_path) as loaded:
        report = loaded.report
        assert report.ignored_files == ("EmailEvents.xlsx", "README.txt")
        assert "IdentityLogonEvents" in report.missing_optional
        assert set(report.tables) == {"EmailEvents", "CloudAppEvents"}
        text = format_report(report)
        assert text.count("README.txt") == 1
        assert "no file for IdentityLogonEvents," in text


def test_names_from_the_export_are_printed_inert(tmp_path: Path) -> None:
    _minimal_export(tmp_path, "Timestamp,\x1b[2J\x1b]0;pwned\x07Evil\n2026-11-20T00:00:00Z,x\n")
    with load_export(tmp_path) as loaded:
        assert loaded.report.tables["EmailEvents"].columns_ignored == ("\x1b[2J\x1b]0;pwned\x07Evil",)
        text = format_report(loaded.report)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[2J\\x1b]0;pwned\\x07Evil" in text


def test_temporary_database_is_removed_on_close(tmp_path: Path) -> None:
    loaded = load_export(make_export(tmp_path, "csv"))
    assert loaded.workdir is not None
    workdir = Path(loaded.workdir.name)
    assert workdir.exists()
    loaded.close()
    assert not workdir.exists()


# ---------------------------------------------------------------------------------------------
# Real exports as users have them: .json files, typed-null Parquet, union suffixes, long CSV lines


@pytest.mark.parametrize("layout", ["lines", "array"])
def test_a_json_file_of_lines_or_one_array_loads_as_its_table(tmp_path: Path, layout: str) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "CloudAppEvents.csv").unlink()
    write_jsonl(tmp_path / "CloudAppEvents.json", CLOUD)
    if layout == "array":
        lines = (tmp_path / "CloudAppEvents.json").read_text(encoding="utf-8").splitlines()
        (tmp_path / "CloudAppEvents.json").write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    with load_export(tmp_path) as loaded:
        assert cloud_rows(loaded.connection) == EXPECTED_CLOUD
        report = loaded.report.tables["CloudAppEvents"]
        assert (report.format, report.file.name) == ("json", "CloudAppEvents.json")
        assert loaded.report.ignored_files == ()


def test_every_file_not_read_is_named_with_the_reason(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "CloudAppEvents.xlsx").write_text("a spreadsheet")
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "EmailEvents.csv").write_text("Timestamp\n2026-11-20T00:00:00Z\n")
    with load_export(tmp_path) as loaded:
        text = format_report(loaded.report)
    assert "CloudAppEvents.xlsx: ignored (.xlsx is not a format the loader reads; save CloudAppEvents as" in text
    assert "notes.md: ignored (not <Table>.parquet|.csv|.jsonl|.json for a known table" in text
    assert "old/EmailEvents.csv: ignored (in a subfolder, where only Defender streaming API records" in text


def test_a_required_table_in_an_unread_format_is_named_in_the_error(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "CloudAppEvents.csv").rename(tmp_path / "CloudAppEvents.xlsx")
    with pytest.raises(ExportError) as err:
        load_export(tmp_path)
    message = str(err.value)
    assert "required table file(s) missing: CloudAppEvents.parquet|.csv|.jsonl|.json" in message
    assert "CloudAppEvents.xlsx is there but was not read: .xlsx is not a format the loader reads" in message


def test_an_all_null_parquet_column_is_an_absent_value_of_the_schema_type(tmp_path: Path) -> None:
    # DuckDB writes a column that only ever held NULL with the type NULL (as other writers do with
    # pyarrow's null type): the file says "no value here", whatever the schema's type.
    import duckdb

    make_export(tmp_path, "csv")
    (tmp_path / "EmailEvents.csv").unlink()
    duckdb.sql(
        "COPY (SELECT TIMESTAMP '2026-11-20 10:00:00' AS Timestamp, 'm1' AS NetworkMessageId, NULL AS AttachmentCount, "
        "NULL AS Connectors, NULL AS AdditionalFields, NULL AS IsFirstContact) "
        f"TO '{tmp_path / 'EmailEvents.parquet'}' (FORMAT parquet)"
    )
    with load_export(tmp_path) as loaded:
        rows = fetch(loaded.connection, "SELECT NetworkMessageId, AttachmentCount, Connectors, AdditionalFields, "
                                        "IsFirstContact FROM EmailEvents")
        mail = loaded.report.tables["EmailEvents"]
        text = format_report(loaded.report)
    # '' in a string column, null elsewhere: the same as an empty cell (docs/architecture.md, "Export folder").
    assert rows == [("m1", None, "", "", None)]
    assert set(mail.columns_null) == {"AttachmentCount", "Connectors", "AdditionalFields", "IsFirstContact"}
    assert "Connectors" not in mail.columns_filled
    assert "4 column(s) typed NULL (no value in any row), read as empty values" in text


def test_a_parquet_number_too_large_for_its_column_names_the_column(tmp_path: Path) -> None:
    make_export(tmp_path, "csv")
    (tmp_path / "EmailEvents.csv").unlink()
    pq.write_table(pa.table({"Timestamp": pa.array([T1], pa.timestamp("us", tz="UTC")),
                             "AttachmentCount": pa.array([2**40], pa.int64())}), tmp_path / "EmailEvents.parquet")
    with pytest.raises(ExportError, match=r"EmailEvents\.parquet: column AttachmentCount holds '1099511627776', "
                                          r"which is not a int"):
        load_export(tmp_path)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_union_query_s_type_suffixed_columns_feed_the_schema_column(tmp_path: Path, fmt: str) -> None:
    # `union` renames a column two tables type differently: ReportId_long from one, ReportId_string from
    # the other, each row holding its value in one of them; UserAgent_string where the plain one is absent.
    make_export(tmp_path, "csv")
    (tmp_path / "CloudAppEvents.csv").unlink()
    rows = [
        {"Timestamp": T1, "ActionType": "a", "ReportId_long": 17, "ReportId_string": None, "UserAgent_string": "ua"},
        {"Timestamp": T2, "ActionType": "b", "ReportId_long": None, "ReportId_string": "r-2", "UserAgent_string": ""},
    ]
    if fmt == "csv":
        write_csv(tmp_path / "CloudAppEvents.csv", rows)
    else:
        pq.write_table(pa.table({
            "Timestamp": pa.array([T1, T2], pa.timestamp("us", tz="UTC")), "ActionType": ["a", "b"],
            "ReportId_long": pa.array([17, None], pa.int64()), "ReportId_string": [None, "r-2"],
            "UserAgent_string": ["ua", ""]}), tmp_path / "CloudAppEvents.parquet")
    with load_export(tmp_path) as loaded:
        got = fetch(loaded.connection, "SELECT ReportId, UserAgent FROM CloudAppEvents ORDER BY Timestamp")
        cloud = loaded.report.tables["CloudAppEvents"]
        text = format_report(loaded.report)
    assert got == [("17", "ua"), ("r-2", "")]
    assert set(cloud.columns_suffixed) == {("ReportId_long", "ReportId"), ("ReportId_string", "ReportId"),
                                           ("UserAgent_string", "UserAgent")}
    assert cloud.columns_ignored == ()
    assert ("a union query's type-suffixed column(s) read as the schema's (the plain name is absent): "
            "UserAgent_string -> UserAgent, ReportId_long -> ReportId, ReportId_string -> ReportId") in text


def test_the_plain_column_wins_over_a_type_suffixed_one(tmp_path: Path) -> None:
    cloud = "Timestamp,ActionType,UserAgent,UserAgent_string\n2026-11-20T00:00:00Z,a,plain,suffixed\n"
    with load_export(_minimal_export(tmp_path, "Timestamp\n2026-11-20T00:00:00Z\n", cloud)) as loaded:
        assert fetch(loaded.connection, "SELECT UserAgent FROM CloudAppEvents") == [("plain",)]
        assert loaded.report.tables["CloudAppEvents"].columns_ignored == ("UserAgent_string",)


def test_a_csv_line_longer_than_the_limit_names_the_file_the_line_and_the_limit(tmp_path: Path) -> None:
    # A 200 MB field used to fail with a bare "CSV Error on Line: 6". 3 MB is enough to pass the limit.
    from grading.sources.local.export import CSV_MAX_LINE_BYTES

    big = "x" * (CSV_MAX_LINE_BYTES + 1_000_000)
    rows = "".join(f"2026-11-20T0{i}:00:00Z,a,{{}}\n" for i in range(4))
    cloud = f'Timestamp,ActionType,RawEventData\n{rows}2026-11-20T05:00:00Z,b,"{big}"\n'
    with pytest.raises(ExportError) as err:
        load_export(_minimal_export(tmp_path, "Timestamp\n2026-11-20T00:00:00Z\n", cloud))
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'CloudAppEvents.csv'}: line 6 is ")  # the header is line 1
    assert f"longer than the {CSV_MAX_LINE_BYTES:,} bytes the loader reads in one CSV line" in message
    assert "Export CloudAppEvents as Parquet or JSON lines" in message
    assert len(message) < 1000, "the error must not quote the field"
