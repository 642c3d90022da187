"""Test doubles for the storage and scheduling tests: contract-shaped verdicts and a scripted grader.

Why a scripted grader: the scheduling logic (watermark, catch-up, one message per incident,
suppressions) must be tested hour by hour, many sweeps per test, in seconds. ``ScriptedSweep``
stands in for :func:`grading.sweep.run_sweep` with the same signature and returns verdicts in the
contract's shape for a scripted tenant, using the grader's own ``incident_key``; storage, queue
and Azurite are real. The end-to-end tests use the real grader over a simulated tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from grading.classification import Classification
from grading.grader import incident_key
from grading.hunting.rendering import Dialect
from grading.settings import WindowSettings
from grading.sweep import SweepResult


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_verdict(
    connector: str,
    classification: str = "falsePositive",
    *,
    score: int | None = None,
    window_start: datetime,
    window_end: datetime,
    change_time: datetime | None = None,
    change_lookback: timedelta = timedelta(days=7),
    compromised_admin: bool = False,
    alert_ids: tuple[str, ...] = (),
    other_senders: int = 0,
) -> dict[str, Any]:
    """A verdict as :func:`grading.grader.grade` shapes it; a change older than the lookback is not
    seen, exactly as the real sweep would not see it."""
    changes = []
    if change_time is not None and change_time >= window_end - change_lookback:
        changes = [
            {
                "Timestamp": change_time,
                "ReportId": f"r-{connector}",
                "Operation": "Set",
                "ActionType": "Set-InboundConnector",
                "AccountId": "adm@contoso.com",
                "AccountObjectId": "oid-adm",
            }
        ]
    if score is None:
        score = {"truePositive": 90, "unknown": 50}.get(classification, 5)
    hours = []
    h = window_start
    while h < window_end:
        hours.append({"hour": iso(h), "messages": 7})
        h += timedelta(hours=1)
    admins = (
        [
            {
                "objectId": "oid-adm",
                "upn": "adm@contoso.com",
                "usualCountries": ["SE"],
                "failureBursts": 1 if compromised_admin else 0,
                "successfulBursts": 1 if compromised_admin else 0,
                "newLogonLocations": [],
            }
        ]
        if changes
        else []
    )
    return {
        "connector": connector,
        "connectorType": "Inbound",
        "classification": classification,
        "determination": "compromisedAccount" if classification == "truePositive" else None,
        "score": score,
        "findings": [
            {
                "check": "volume",
                "severity": "high" if classification == "truePositive" else "low",
                "summary": f"{connector} relayed 7 messages an hour",
                "evidence": {"hours": len(hours)},
            },
            *([{
                "check": "adminCompromise",
                "severity": "high",
                "summary": "adm@contoso.com: failed logons within a minute, then a successful logon",
                "evidence": {"admin": "adm@contoso.com", "failures": 40},
                "kind": "maliciousAct",
                "rule": "admin_burst_then_success",
            }] if compromised_admin and changes else []),
        ],
        "evidence": {
            "networkMessageIds": {"count": 7 * len(hours), "sample": ["nmid-1", "nmid-2"]},
            "created": None,
            "lastModified": iso(changes[-1]["Timestamp"]) if changes else None,
            "modifiedBy": "adm@contoso.com" if changes else None,
            "changes": [
                {
                    "time": iso(c["Timestamp"]),
                    "operation": c["Operation"],
                    "actionType": c["ActionType"],
                    "by": c["AccountId"],
                    "parameters": [{"Name": "Identity", "Value": connector}],
                }
                for c in changes
            ],
            "sourceIPs": ["203.0.113.7"],
            "alertIds": list(alert_ids),
            "admins": admins,
            "hourlyVolume": {
                "series": hours,
                "baseline": {"median": 3.0, "upper": 9.0, "p99": 12.0, "hours": 300, "cutoff": iso(window_start)},
                "baselineReason": None,
            },
            "otherSenders": [{"sender": f"user{i}@contoso.com", "messages": i} for i in range(other_senders)],
            "urls": [],
        },
        "incidentKey": incident_key(connector, changes),
        "reasonIfUnknown": "inconclusive" if classification == "unknown" else None,
    }


def make_result(
    verdicts: list[dict[str, Any]],
    *,
    window_start: datetime,
    window_end: datetime,
    source: str = "fake",
    complete: bool = True,
    errors: tuple[str, ...] = (),
) -> SweepResult:
    counts = {c.value: sum(1 for v in verdicts if v["classification"] == c) for c in Classification}
    sweep = {
        "sweepId": f"{window_end:%Y%m%dT%H%M%SZ}-random",
        "source": source,
        "dialect": "ah",
        "windowStart": iso(window_start),
        "windowEnd": iso(window_end),
        "queries": [{"name": "connector_traffic", "rows": len(verdicts), "complete": complete}],
        "queryCount": 14,
        "rowsReturned": 10 * len(verdicts),
        "connectors": len(verdicts),
        "counts": counts,
        "complete": complete,
        "errors": list(errors),
        "notChecked": [],
        "durationSeconds": 0.5,
    }
    return SweepResult(verdicts, sweep)


class FakeSource:
    """A TelemetrySource that must never be queried: the scripted grader answers instead."""

    name = "fake"
    dialect = Dialect.ADVANCED_HUNTING
    now: datetime | None = None

    def tables(self) -> frozenset[str] | None:
        return None

    def run(self, query: Any) -> Any:
        raise AssertionError("the scripted sweep does not query the source")

    def latest_event_time(self) -> datetime | None:
        return None


@dataclass
class Connector:
    classification: str = "falsePositive"
    change_time: datetime | None = None
    compromised_admin: bool = False


@dataclass
class ScriptedSweep:
    """Stands in for ``run_sweep``: grades the scripted tenant and records every window it grades.

    ``fail_next`` raises on the next call(s); ``incomplete_next`` makes the next sweep(s) incomplete
    (every verdict unknown), as missing telemetry would."""

    connectors: dict[str, Connector] = field(default_factory=dict)
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    fail_next: int = 0
    incomplete_next: int = 0

    def __call__(
        self,
        source: Any,
        *,
        now: datetime,
        window_start: datetime | None = None,
        window_settings: WindowSettings | None = None,
        sweep_id: str | None = None,
        **_: Any,
    ) -> SweepResult:
        ws = window_settings or WindowSettings()
        start = window_start or now - ws.first_window
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("the telemetry service is unreachable")
        self.windows.append((start, now))
        incomplete = self.incomplete_next > 0
        if incomplete:
            self.incomplete_next -= 1
        verdicts = [
            make_verdict(
                name,
                "unknown" if incomplete else c.classification,
                window_start=start,
                window_end=now,
                change_time=c.change_time,
                change_lookback=ws.change_lookback,
                compromised_admin=c.compromised_admin,
            )
            for name, c in sorted(self.connectors.items())
        ]
        result = make_result(
            verdicts,
            window_start=start,
            window_end=now,
            source=source.name,
            complete=not incomplete,
            errors=("mail_coverage: the query timed out",) if incomplete else (),
        )
        if sweep_id:
            result.sweep["sweepId"] = sweep_id
        return result

    def hours_graded(self) -> list[datetime]:
        out = []
        for start, end in self.windows:
            h = start
            while h < end:
                out.append(h)
                h += timedelta(hours=1)
        return out
