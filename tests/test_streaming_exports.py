"""The Defender streaming API's records in, as users download them: the storage account's container
tree, one file of records per table, a blob mixing tables, Event Hubs batches.

The records are real, published by others, kept verbatim in ``tests/data/streaming/`` (only their
whitespace changed where a test writes them as one line a record, as the storage account does):

- ``graph2otel_EmailEvents.json``, ``graph2otel_CloudAppEvents.json``,
  ``graph2otel_EmailPostDeliveryEvents.json``: records captured off a tenant's storage account,
  repository rknightion/graph2otel, files ``internal/collectors/defender/email/email_test.go``,
  ``internal/collectors/defender/cloudapp/cloudapp_test.go`` and
  ``internal/collectors/defender/emailpostdelivery/emailpostdelivery_test.go`` (``liveRecord``), whose
  tests also give the blob path ``tenantId=<id>/y=2026/m=07/d=18/h=14/m=00/PT1H.json`` used below.
- ``elastic_test-email.log`` (the whole file) and ``elastic_test-app-and-identity.log`` (its first and
  fourth lines): repository elastic/integrations,
  ``packages/m365_defender/data_stream/event/_dev/test/pipeline/test-email.log`` and
  ``.../test-app-and-identity.log``: Event Hubs records of seven tables in one file, with the types
  as they arrive (``IsAdminOperation`` 0, ``ActivityObjects`` "", dynamic columns as JSON text).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from grading.cli import main
from grading.sources.local.export import ExportError, format_report, load_export

DATA = Path(__file__).parent / "data" / "streaming"
TENANT = "4b8c18bd-2f9f-4227-af55-9f1061cf9c32"  # graph2otel's tenant, as in its records and blob paths


def record(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def elastic_lines() -> list[str]:
    return [*(DATA / "elastic_test-email.log").read_text(encoding="utf-8").splitlines(),
            *(DATA / "elastic_test-app-and-identity.log").read_text(encoding="utf-8").splitlines()]


def blob(root: Path, table: str, tenant: str, when: datetime, records: list[dict[str, Any]]) -> Path:
    """One hour's blob where the storage account puts it; JSON lines with the CRLF Azure writes."""
    path = (root / f"insights-logs-advancedhunting-{table.lower()}" / f"tenantId={tenant}"
            / f"y={when:%Y}" / f"m={when:%m}" / f"d={when:%d}" / f"h={when:%H}" / "m=00" / "PT1H.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\r\n" for r in records))
    return path


def storage_tree(root: Path) -> Path:
    """A day of the storage account, as `az storage blob download-batch` writes it (one container per
    table). CloudAppEvents has two blobs: graph2otel's hour, and elastic's record under its own tenant's
    path (a second tenant is not what one account holds; it gives the table a second blob)."""
    blob(root, "EmailEvents", TENANT, datetime(2026, 7, 18, 14), [record("graph2otel_EmailEvents.json")])
    blob(root, "CloudAppEvents", TENANT, datetime(2026, 7, 18, 17), [record("graph2otel_CloudAppEvents.json")])
    elastic_cloud = json.loads(elastic_lines()[-1])
    blob(root, "CloudAppEvents", elastic_cloud["tenantId"], datetime(2022, 12, 8, 12), [elastic_cloud])
    blob(root, "EmailPostDeliveryEvents", TENANT, datetime(2026, 7, 22, 10),
         [record("graph2otel_EmailPostDeliveryEvents.json")])
    return root


def rows(con: Any, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def test_the_storage_account_tree_loads_each_table_from_its_blobs(tmp_path: Path) -> None:
    with load_export(storage_tree(tmp_path / "download")) as loaded:
        report = loaded.report
        assert {t: (r.format, r.rows, len(r.files)) for t, r in report.tables.items()} == {
            "EmailEvents": ("streaming", 1, 1), "CloudAppEvents": ("streaming", 2, 2)}
        mail = rows(loaded.connection, "SELECT Timestamp, NetworkMessageId, Connectors, SenderObjectId, "
                                       "AuthenticationDetails, CAST(\"To\" AS VARCHAR), IsFirstContact, EmailSize "
                                       "FROM EmailEvents")
        cloud = rows(loaded.connection, "SELECT Timestamp, Isp, IsAdminOperation, ApplicationId, "
                                        "CAST(ActivityObjects AS VARCHAR), CAST(RawEventData AS VARCHAR), "
                                        "CAST(AdditionalFields AS VARCHAR) FROM CloudAppEvents ORDER BY Timestamp")
        text = format_report(report)
    # The row's own Timestamp (properties), not the envelope's time (when Defender received it, 14:11:24).
    assert mail == [(datetime(2026, 7, 18, 14, 8, 56), "3c7b1317-ac21-4754-5a76-08dee4d61558", "", "",
                     '{"SPF":"pass","DKIM":"pass","DMARC":"pass","CompAuth":"pass"}', '["rob@m7kni.io"]', True,
                     239528)]
    older, newer = cloud
    # elastic's record: IsAdminOperation 0, ActivityObjects "", RawEventData and AdditionalFields as JSON text.
    assert older[:5] == (datetime(2022, 12, 8, 12, 48, 45, 833000), "", False, 12260, None)
    assert json.loads(older[5]) == {"AccountMoniker": "MdsResourceStackRPFCentralUS",
                                    "AccountMonikerLocation": "centralus"}
    assert json.loads(older[6]) == {"IsSatelliteProvider": False}
    # graph2otel's record: the same columns as nested JSON, ISP spelt as the streaming API spells it.
    assert newer[:4] == (datetime(2026, 7, 18, 16, 57, 49, 239000), "Microsoft Azure", False, 11770)
    assert json.loads(newer[4])[0]["Role"] == "Actor"
    assert json.loads(newer[5])["events"][0]["parameters"][1]["value"] == "gmail.users.history.list"
    assert ("insights-logs-advancedhunting-emailevents/tenantId=4b8c18bd-2f9f-4227-af55-9f1061cf9c32/y=2026/m=07/"
            "d=18/h=14/m=00/PT1H.json: Defender streaming API records of AdvancedHunting-EmailEvents") in text
    assert ("2 streaming files under insights-logs-advancedhunting-cloudappevents/: Defender streaming API "
            "records of AdvancedHunting-CloudAppEvents") in text
    assert "2 streaming files under insights-logs-advancedhunting-cloudappevents/: column names matched " \
           "ignoring case or by an older name: ISP -> Isp" in text
    assert "streaming records of tables the grader does not read, ignored: EmailPostDeliveryEvents (1)" in text
    assert report.ignored_files == ()


def test_one_file_of_records_per_table_loads_like_the_tree(tmp_path: Path) -> None:
    for table in ("EmailEvents", "CloudAppEvents"):
        (tmp_path / f"{table}.json").write_text(json.dumps(record(f"graph2otel_{table}.json")) + "\n",
                                                encoding="utf-8")
    with load_export(tmp_path) as loaded:
        assert {t: (r.format, r.rows, r.name) for t, r in loaded.report.tables.items()} == {
            "EmailEvents": ("streaming", 1, "EmailEvents.json"),
            "CloudAppEvents": ("streaming", 1, "CloudAppEvents.json")}
        assert rows(loaded.connection, "SELECT NetworkMessageId FROM EmailEvents") == [
            ("3c7b1317-ac21-4754-5a76-08dee4d61558",)]


def test_a_blob_mixing_tables_is_split_by_category(tmp_path: Path) -> None:
    folder = tmp_path / "eventhub-capture"
    folder.mkdir()
    (folder / "PT1H.json").write_text("\n".join(elastic_lines()) + "\n", encoding="utf-8")
    with load_export(tmp_path) as loaded:
        report = loaded.report
        assert {t: r.rows for t, r in report.tables.items()} == {
            "EmailEvents": 1, "CloudAppEvents": 1, "IdentityLogonEvents": 1, "EmailUrlInfo": 1,
            "EmailAttachmentInfo": 1}
        logon = rows(loaded.connection, "SELECT ActionType, Port, DestinationPort, CAST(AdditionalFields AS VARCHAR) "
                                        "FROM IdentityLogonEvents")
        attachment = rows(loaded.connection, "SELECT FileName, FileSize, ThreatTypes FROM EmailAttachmentInfo")
        text = format_report(report)
    # "Port": "" in the record: no port (null), not an error; AdditionalFields' JSON text parsed.
    assert logon == [("LogonSuccess", None, None, '{"CallerProcessID":4248}')]
    assert attachment == [("AttachedImage", 1354, "")]
    assert ("eventhub-capture/PT1H.json: records of 7 tables (CloudAppEvents, EmailAttachmentInfo, EmailEvents, "
            "EmailPostDeliveryEvents, EmailUrlInfo, IdentityLogonEvents, UrlClickEvents), split by category") in text
    assert ("streaming records of tables the grader does not read, ignored: EmailPostDeliveryEvents (1), "
            "UrlClickEvents (1)") in text


def test_event_hubs_batches_are_read_record_by_record(tmp_path: Path) -> None:
    # Event Hubs delivers {"records": [...]}; this test wraps the two graph2otel records that way.
    batch = {"records": [record("graph2otel_EmailEvents.json"), record("graph2otel_CloudAppEvents.json")]}
    (tmp_path / "capture.json").write_text(json.dumps(batch, indent=2), encoding="utf-8")
    with load_export(tmp_path) as loaded:
        assert {t: r.rows for t, r in loaded.report.tables.items()} == {"EmailEvents": 1, "CloudAppEvents": 1}


def test_a_table_file_and_streaming_records_of_the_same_table_is_an_error_naming_both(tmp_path: Path) -> None:
    storage_tree(tmp_path)
    (tmp_path / "EmailEvents.csv").write_text("Timestamp,NetworkMessageId\n2026-07-18T00:00:00Z,m\n",
                                              encoding="utf-8")
    with pytest.raises(ExportError) as err:
        load_export(tmp_path)
    assert "two sources for table EmailEvents: EmailEvents.csv and the streaming API records in " \
           "insights-logs-advancedhunting-emailevents/" in str(err.value)


def test_what_is_not_a_record_in_the_tree_is_named(tmp_path: Path) -> None:
    storage_tree(tmp_path)
    path = next(tmp_path.glob("insights-logs-advancedhunting-emailevents/**/PT1H.json"))
    with path.open("ab") as f:
        f.write(b'{"note": "not a record"}\r\n')
    (path.parent / "empty.json").write_bytes(b"")
    (tmp_path / "insights-logs-advancedhunting-emailevents" / "index.txt").write_text("listing")
    with load_export(tmp_path) as loaded:
        assert loaded.report.tables["EmailEvents"].rows == 1
        text = format_report(loaded.report)
    assert "PT1H.json: 1 object(s) that are not streaming API records (no AdvancedHunting- category or no " \
           "properties object), ignored" in text
    assert "m=00/empty.json: ignored (an empty file)" in text
    assert "insights-logs-advancedhunting-emailevents/index.txt: ignored (in a subfolder" in text


def test_records_without_a_timestamp_say_where_it_was_looked_for(tmp_path: Path) -> None:
    mail = record("graph2otel_EmailEvents.json")
    del mail["properties"]["Timestamp"]  # this test removes it
    blob(tmp_path, "EmailEvents", TENANT, datetime(2026, 7, 18, 14), [mail])
    blob(tmp_path, "CloudAppEvents", TENANT, datetime(2026, 7, 18, 17), [record("graph2otel_CloudAppEvents.json")])
    with pytest.raises(ExportError, match=r"PT1H\.json: no Timestamp \(or TimeGenerated\) column in the records' "
                                          r"properties"):
        load_export(tmp_path)


# -- Through the CLI, as an operator runs it ---------------------------------------------------


def test_sweep_of_the_downloaded_tree_grades_what_the_records_show(tmp_path: Path, capsys) -> None:
    root = storage_tree(tmp_path / "download")
    # The captured message came straight to the mailbox (Connectors null). This test sets Connectors to
    # "Partner Relay" on it, so the sweep has a connector to grade from the real row.
    mail = record("graph2otel_EmailEvents.json")
    mail["properties"]["Connectors"] = "Partner Relay"
    blob(root, "EmailEvents", TENANT, datetime(2026, 7, 18, 14), [mail])
    out = tmp_path / "sweep.json"
    assert main(["sweep", "--data", str(root), "--store", "memory", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert "Defender streaming API records of AdvancedHunting-EmailEvents" in err
    # --now: one second after the latest event, graph2otel's CloudAppEvents row.
    assert "--now 2026-07-18T16:57:50Z" in err
    [verdict] = doc["verdicts"]
    assert verdict["connector"] == "Partner Relay"
    # One message over two hours is far short of the 24 h a verdict weighs: no confident verdict.
    assert verdict["classification"] == "unknown"
    assert "less than the 24 h a verdict weighs" in verdict["reasonIfUnknown"]
    assert doc["sweep"]["schema"]["CloudAppEvents"]["columns"] == {"Isp": "ISP"}


def test_schema_check_reads_the_tree(tmp_path: Path, capsys) -> None:
    root = storage_tree(tmp_path / "download")
    assert main(["schema-check", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "CloudAppEvents: column Isp is spelt ISP" in out
    assert "IdentityLogonEvents: missing (optional table" in out


def test_sweep_of_a_mixed_file_reads_every_table_it_holds(tmp_path: Path, capsys) -> None:
    (tmp_path / "events.json").write_text("\n".join(elastic_lines()) + "\n", encoding="utf-8")
    out = tmp_path / "sweep.json"
    assert main(["sweep", "--data", str(tmp_path), "--store", "memory", "--json", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert {"EmailEvents", "CloudAppEvents", "IdentityLogonEvents", "EmailUrlInfo",
            "EmailAttachmentInfo"} <= set(doc["sweep"]["schema"])
    assert doc["verdicts"] == []  # no record names a connector
