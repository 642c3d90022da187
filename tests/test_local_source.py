"""The local source: KQL over an export folder, typed rows, and honest completeness."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from grading.hunting.rendering import Dialect, RenderedQuery, kql_string
from grading.sources.base import Column, TelemetrySource
from grading.sources.local import LocalSource

PORTAL = Path(__file__).parent / "data" / "exports" / "portal"
NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
EVIL = "Evil\" conn'); DROP TABLE EmailEvents;--"


@pytest.fixture(scope="module")
def source() -> Iterator[LocalSource]:
    with LocalSource(PORTAL, now=NOW) as src:
        yield src


def q(
    text: str, *tables: str, name: str = "test_query", dialect: Dialect = Dialect.ADVANCED_HUNTING
) -> RenderedQuery:
    return RenderedQuery(name, text, dialect, frozenset(tables))


def test_is_a_telemetry_source_over_the_export(source: LocalSource) -> None:
    assert isinstance(source, TelemetrySource)
    assert source.dialect is Dialect.ADVANCED_HUNTING
    assert source.tables() == {"EmailEvents", "CloudAppEvents"}
    assert source.latest_event_time() == datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)


def test_summarize_with_bin_make_set_and_dcount_gives_typed_rows(source: LocalSource) -> None:
    result = source.run(
        q(
            """
EmailEvents
| where Timestamp between (datetime(2026-11-20) .. datetime(2026-11-21))
| where isnotempty(Connectors)
| summarize Messages = dcount(NetworkMessageId), Recipients = count(),
            Domains = make_set(SenderMailFromDomain), Attachments = sum(AttachmentCount)
            by Connectors, Hour = bin(Timestamp, 1h)
| extend PerMessage = todouble(Recipients) / Messages, Fanout = Recipients > 1, Span = 1h
| order by Hour asc
""",
            "EmailEvents",
        )
    )
    assert result.complete and result.checked, result.reason
    assert result.columns == (
        Column("Connectors", "string"),
        Column("Hour", "datetime"),
        Column("Messages", "long"),
        Column("Recipients", "long"),
        Column("Domains", "dynamic"),
        Column("Attachments", "long"),
        Column("PerMessage", "real"),
        Column("Fanout", "bool"),
        Column("Span", "timespan"),
    )
    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert result.rows == [
        {
            "Connectors": "Relay Partner",
            "Hour": hour,
            "Messages": 1,
            "Recipients": 2,
            "Domains": ["spam.example"],
            "Attachments": 2,
            "PerMessage": 2.0,
            "Fanout": True,
            "Span": timedelta(hours=1),
        },
        {
            "Connectors": "Relay Partner",
            "Hour": hour + timedelta(hours=1),
            "Messages": 1,
            "Recipients": 1,
            "Domains": ["spam.example"],
            "Attachments": 0,  # the cell was empty (null); sum() skips nulls
            "PerMessage": 1.0,
            "Fanout": False,
            "Span": timedelta(hours=1),
        },
        {
            "Connectors": EVIL,
            "Hour": hour + timedelta(hours=2),
            "Messages": 1,
            "Recipients": 1,
            "Domains": ["contoso.com"],
            "Attachments": 0,
            "PerMessage": 1.0,
            "Fanout": False,
            "Span": timedelta(hours=1),
        },
    ]
    assert result.rows[0]["Hour"].utcoffset() == timedelta(0)
    assert result.stats["rows"] == 3 and result.stats["elapsed_seconds"] == result.elapsed_seconds > 0


def test_dynamic_table_column_comes_back_parsed(source: LocalSource) -> None:
    result = source.run(
        q(
            "CloudAppEvents | order by Timestamp asc | project Timestamp, RawEventData, "
            "IsAdminOperation, Name = tostring(RawEventData.Parameters[0].Value)",
            "CloudAppEvents",
        )
    )
    assert result.complete, result.reason
    first = result.rows[0]
    assert first["RawEventData"] == {
        "Parameters": [{"Name": "Name", "Value": "Relay Partner"}, {"Name": "Enabled", "Value": "True"}]
    }
    assert first["IsAdminOperation"] is True and first["Name"] == "Relay Partner"
    assert [c.type for c in result.columns] == ["datetime", "dynamic", "bool", "string"]


def test_now_given_to_the_source_is_what_ago_means(source: LocalSource) -> None:
    # NOW is 12:30; within 1h lie only the 12:00 message (the others are 10:00-11:30).
    result = source.run(
        q("EmailEvents | where Timestamp > ago(1h) | project NetworkMessageId", "EmailEvents")
    )
    assert result.rows == [{"NetworkMessageId": "nm-004"}]


def test_attacker_text_stays_data_through_a_rendered_literal(source: LocalSource) -> None:
    text = f"EmailEvents | where Connectors == {kql_string(EVIL)} | summarize n = count()"
    result = source.run(q(text, "EmailEvents"))
    assert result.complete and result.rows == [{"n": 1}]
    again = source.run(q("EmailEvents | summarize n = count()", "EmailEvents"))
    assert again.rows == [{"n": 5}]


def test_query_on_an_absent_optional_table_is_not_checked(source: LocalSource) -> None:
    result = source.run(q("IdentityLogonEvents | take 1", "IdentityLogonEvents", name="admin_logons"))
    assert result.complete and not result.checked
    assert result.missing_tables == ("IdentityLogonEvents",)
    assert result.rows == [] and "IdentityLogonEvents" in (result.reason or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("EmailEvents | project-reorder Connectors", "unsupported"),
        ("EmailEvents | make-series n = count() on Timestamp step 1h", "unsupported"),
        ("EmailEvents | where NoSuchColumn == 1", "NoSuchColumn"),
        ("EmailEvents | wherex", "Syntax"),
    ],
)
def test_unsupported_or_broken_query_is_a_failed_result_naming_it(
    source: LocalSource, text: str, expected: str
) -> None:
    result = source.run(q(text, "EmailEvents", name="connector_volume"))
    assert not result.complete
    assert result.rows == []
    assert "connector_volume" in (result.reason or "")
    assert expected.lower() in (result.reason or "").lower()
    # The source stays usable after a failure.
    assert source.run(q("EmailEvents | summarize n = count()", "EmailEvents")).rows == [{"n": 5}]


def test_query_for_another_dialect_is_refused(source: LocalSource) -> None:
    result = source.run(q("EmailEvents | take 1", "EmailEvents", dialect=Dialect.LOG_ANALYTICS))
    assert not result.complete and "la" in (result.reason or "")


def test_queries_from_several_threads_each_get_their_own_answer(source: LocalSource) -> None:
    texts = [
        f"EmailEvents | where NetworkMessageId == 'nm-00{i}' | summarize n = count()" for i in (1, 2, 3, 4)
    ] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda t: source.run(q(t, "EmailEvents")), texts))
    assert [r.rows for r in results] == [[{"n": 1}], [{"n": 2}], [{"n": 1}], [{"n": 1}]] * 3


def test_without_now_queries_use_the_clock() -> None:
    with LocalSource(PORTAL) as src:
        result = src.run(q("print t = now()", name="clock"))
    assert result.complete
    assert abs(result.rows[0]["t"] - datetime.now(UTC)) < timedelta(minutes=5)


def test_a_translation_reused_for_other_datetimes_answers_as_a_fresh_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local source translates a query once per shape and binds its window's datetimes (and now())
    as values: every query of the sweep, over several windows and clocks, answers exactly as translated
    afresh."""
    from grading.hunting.catalog import sweep_plan
    from grading.hunting.rendering import load_queries, render
    from grading.settings import WindowSettings
    from grading.sources.local import source as local_source
    from grading.sweep import make_windows

    ends = [NOW - timedelta(hours=h) for h in (0, 1, 5, 30)]
    answers: dict[str, list[list[dict]]] = {}
    for reuse in (True, False):
        if not reuse:
            monkeypatch.setattr(local_source, "declared_datetimes", lambda text: None)
        with LocalSource(PORTAL) as src:
            got = answers.setdefault(str(reuse), [])
            for end in ends:
                src.now = end
                w = make_windows(end, end - timedelta(hours=1), WindowSettings())
                for p in sweep_plan(w, ["contoso.com"]):
                    rendered = render(load_queries()[p.query], p.values, src.dialect, start=p.start, end=p.end)
                    result = src.run(rendered)
                    assert result.complete, (p.label, result.reason)
                    got.append(result.rows)
                got.append(src.run(q("print t = now(), w = datetime(2026-01-01)", name="clock")).rows)
            if reuse:
                assert src.translations["reused"] > src.translations["made"] > 0, src.translations
    assert answers["True"] == answers["False"]


# ---------------------------------------------------------------------------------------------
# The Entra sign-in table under its current name or its retired one (and its older column name)

SMALL_TENANT = Path(__file__).parent / "fixtures" / "small_tenant"
FRANK = "0b1c2d3e-0000-4000-8000-0000000000a2"


def _with_signins(folder: Path, table: str, device_column: str) -> Path:
    import shutil

    shutil.copytree(SMALL_TENANT, folder)
    lines = [f"Timestamp,AccountObjectId,AccountUpn,ErrorCode,IPAddress,Country,City,{device_column},TokenIssuerType"]
    for day, country, city, code in [
        ("2026-03-10T09:00:00Z", "IE", "Dublin", 0),  # before the change lookback: the usual place
        ("2026-03-11T09:00:00Z", "IE", "Dublin", 0),
        ("2026-03-12T10:58:00Z", "NG", "Lagos", 50126),  # in the lookback, before the New-InboundConnector
        ("2026-03-12T11:00:00Z", "NG", "Lagos", 0),
    ]:
        lines.append(f"{day},{FRANK},adm-frank.olsen@contoso.com,{code},203.0.113.77,{country},{city},dev-1,0")
    (folder / f"{table}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("table", "device_column"),
    [("EntraIdSignInEvents", "EntraIdDeviceId"), ("AADSignInEventsBeta", "AadDeviceId")],
)
def test_an_export_with_entra_signins_is_graded_with_signin_evidence(tmp_path, monkeypatch, table, device_column):
    from grading.cli.sweep import sweep_export

    folder = _with_signins(tmp_path / "export", table, device_column)
    monkeypatch.setenv("GRADER_CHANGE_LOOKBACK", "1d")
    monkeypatch.setenv("GRADER_BASELINE_LOOKBACK", "2d")
    result = sweep_export(folder, now=None, window_start=None, policy_path=None)

    signins = next(q for q in result.sweep["queries"] if q["name"] == "admin_entra_signins")
    assert signins["checked"] and signins["complete"] and signins["rows"] == 2, signins
    assert not [n for n in result.sweep["notChecked"] if n.startswith("adminCompromise (Entra")]
    used = result.sweep["schema"]["EntraIdSignInEvents"]
    assert used["table"] == table
    assert used["columns"] == ({} if device_column == "EntraIdDeviceId" else {"EntraIdDeviceId": "AadDeviceId"})
    # Frank's usual country comes from his sign-in history alone (his logons and activity say FR).
    fix = next(v for v in result.verdicts if v["connector"] == "Inbound Relay Fix")
    frank = next(a for a in fix["evidence"]["admins"] if a["objectId"] == FRANK)
    assert "IE" in frank["usualCountries"] and frank["hasHistory"]


def test_a_beta_export_with_both_device_columns_reads_the_current_one(tmp_path):
    """AADSignInEventsBeta carries AadDeviceId and its successor EntraIdDeviceId side by side: not two
    spellings of one column to guess between, the current one is read and the older one ignored."""
    folder = _with_signins(tmp_path / "export", "AADSignInEventsBeta", "EntraIdDeviceId")
    path = folder / "AADSignInEventsBeta.csv"
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([header + ",AadDeviceId", *(r + ",old-id" for r in rows)]) + "\n", encoding="utf-8")

    with LocalSource(folder) as source:
        assert "AadDeviceId" in source.report.tables["EntraIdSignInEvents"].columns_ignored
        rows = source.run(q("EntraIdSignInEvents | summarize by EntraIdDeviceId", "EntraIdSignInEvents")).rows
    assert [r["EntraIdDeviceId"] for r in rows] == ["dev-1"]


def test_both_names_of_the_signin_table_in_one_export_is_an_error_naming_both(tmp_path):
    from grading.sources.local.export import ExportError

    folder = _with_signins(tmp_path / "export", "EntraIdSignInEvents", "EntraIdDeviceId")
    (folder / "AADSignInEventsBeta.csv").write_text((folder / "EntraIdSignInEvents.csv").read_text())
    with pytest.raises(ExportError, match=r"AADSignInEventsBeta\.csv and EntraIdSignInEvents\.csv"):
        LocalSource(folder)
