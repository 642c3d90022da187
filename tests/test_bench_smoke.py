"""The benchmark (``python -m bench.run``) still runs, end to end, at a tiny size.

Figures are never asserted here (they depend on the machine); what is checked is that every step
runs and that what it reports is what it claims to be: rows scanned are the rows in each
query's time range, the grading replay grades the connectors asked for, and a sweep's verdicts
and connector states are written as entity-group transactions.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bench.playbook_queries import QUERIES
from bench.run import main
from bench.tenants import TenantSpec, ensure_tenant, format_count, is_cached, parse_count
from devtools.azurite import Azurite
from grading.hunting.rendering import load_queries

TINY = TenantSpec(emails_per_day=300, days=4, connectors=6, seed=3)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory, azurite: Azurite) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENCH_AZURITE", azurite.connection_string)
    try:
        code = main(["--sizes", str(TINY.emails_per_day), "--days", str(TINY.days),
                     "--connectors", str(TINY.connectors), "--seed", str(TINY.seed), "--grade-connectors", "40",
                     "--playbook-timeout", "120", "--out", str(out / "scratch"), "--json", str(out / "r.json")])
    finally:
        mp.undo()
    assert code == 0
    return {"doc": json.loads((out / "r.json").read_text(encoding="utf-8")), "root": out / "scratch" / "tenants"}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_every_query_of_the_sweep_is_reported(bench_run: dict[str, Any]) -> None:
    [tenant] = bench_run["doc"]["tenants"]
    sweep = tenant["sweep"]
    assert sweep["complete"], sweep["errors"]
    # One entry per query run: every query of the sweep is there, once, but for the correspondents, read a
    # day a run without a store (their days' rows merge into one row per domain, so fewer come out).
    labels = [q["name"] for q in tenant["queries"]]
    assert len(set(labels)) == sweep["queryCount"]
    assert {n for n in labels if labels.count(n) > 1} == {"correspondents"}
    assert sum(q["rows"] for q in tenant["queries"]) >= sweep["rowsReturned"]
    assert tenant["sweepSeconds"] > 0 and tenant["memoryAfterSweepMB"]["VmHWM"] > 0


def test_rows_scanned_are_the_email_events_in_each_querys_time_range(bench_run: dict[str, Any]) -> None:
    [tenant] = bench_run["doc"]["tenants"]
    times = pq.read_table(bench_run["root"] / TINY.name / "EmailEvents.parquet", columns=["Timestamp"])["Timestamp"]
    mail_queries = [q for q in tenant["queries"] if "EmailEvents" in load_queries()[q["query"]].tables]
    assert mail_queries
    for q in mail_queries:
        start, end = _utc(q["from"]), _utc(q["to"])
        inside = pc.and_(pc.greater_equal(times, start), pc.less(times, end))
        assert q["scannedEmailEvents"] == pc.sum(inside).as_py(), q["name"]


def test_grading_is_replayed_for_the_tenant_and_for_the_connectors_asked(bench_run: dict[str, Any]) -> None:
    [tenant] = bench_run["doc"]["tenants"]
    assert tenant["grading"]["connectors"] == tenant["sweep"]["connectors"]
    assert tenant["grading"]["counts"] == tenant["sweep"]["counts"]
    scaled = tenant["gradingScaled"]
    assert scaled["connectors"] == 40 and sum(scaled["counts"].values()) == 40


def test_a_sweeps_verdicts_and_states_are_written_in_transactions(bench_run: dict[str, Any]) -> None:
    [tenant] = bench_run["doc"]["tenants"]
    stored = tenant["storage"]
    verdicts = stored["verdicts"]
    assert verdicts == tenant["sweep"]["connectors"] <= 100
    sweep = stored["sweep"]
    # One transaction for the sweep's verdicts, one for the connector states (each under 100 entities).
    assert sweep["byKind"]["table batch"] == 2
    assert sweep["entitiesPerBatch"] == verdicts and sweep["largestBatch"] == verdicts
    assert stored["watermark"]["requests"] >= 2


def test_the_playbooks_sample_queries_run_on_the_same_export(bench_run: dict[str, Any]) -> None:
    [tenant] = bench_run["doc"]["tenants"]
    assert [q["name"] for q in tenant["playbook"]] == list(QUERIES)
    assert all(q["complete"] and q["rows"] is not None for q in tenant["playbook"])


def test_a_generated_tenant_is_reused_not_generated_again(bench_run: dict[str, Any]) -> None:
    root = bench_run["root"]
    assert is_cached(TINY, root)
    said: list[str] = []
    assert ensure_tenant(TINY, root, log=said.append) == root / TINY.name
    assert said == []
    assert not is_cached(TenantSpec(300, 4, 6, seed=4), root)


def test_sizes_read_as_people_write_them() -> None:
    assert [parse_count(t) for t in ("10k", "100K", "1m", "2500", "1.5k")] == [10_000, 100_000, 1_000_000, 2500, 1500]
    assert format_count(1_000_000) == "1m" and format_count(2500) == "2500"
    for bad in ("", "ten", "0", "1.5", "-3k"):
        with pytest.raises(ValueError):
            parse_count(bad)
