"""Table Storage of sweeps, verdicts, per-connector state and analyst suppressions.

Why this shape:

* A sweep is written verdicts first (entity-group transactions in the sweep's partition), then the
  connector states, then its sweep record last: the record is the commit marker, so a sweep with
  a record is whole, and a re-run over a window whose *complete* record exists writes nothing.
* Sweep ids are derived from the window and the source (:func:`sweep_id_for`), so grading the same
  window again lands on the same keys instead of piling up duplicates.
* The latest-verdict state of a connector is updated by complete sweeps only (an incomplete sweep's
  ``unknown`` would otherwise hide a standing true positive), and never by a sweep of an older
  window than the one it holds.
* An analyst's suppression is pinned to the connector's ``incidentKey``: it holds while the
  connector's configuration is the one the analyst looked at and lapses when it changes.
* ``incidentKey`` stays stable after the connector's last change ages out of the change lookback:
  the key the state holds is carried over, so an ongoing incident stays one incident.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode

from grading.classification import LISTING_ORDER, Classification
from grading.errors import InputError
from grading.storage.connection import StorageConnection
from grading.storage.entities import EntityTooLarge, get_json, put_json, submit, without_none
from grading.storage.keys import encode_key
from grading.storage.tables import GraderTables
from grading.text import safe_text

log = logging.getLogger(__name__)

CONNECTOR_PARTITION = "connector"
SWEEP_PARTITION = "sweep"
MAX_REASON_CHARS = 1000


class GradedSweep(Protocol):
    """What the store keeps of a sweep (:class:`grading.sweep.SweepResult` is one): declared here so
    storage depends on the shape it reads, not on the sweep that produces it."""

    verdicts: list[dict[str, Any]]
    sweep: dict[str, Any]

    @property
    def complete(self) -> bool: ...


class StoreError(InputError):
    """A store operation that cannot be done as asked; the message says why and what to do."""


def _cut(text: Any, limit: int) -> str:
    """*text* as stored: raw (escaped only when printed or logged), cut to *limit* characters."""
    value = "" if text is None else str(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def source_key(source: Any) -> str:
    """What identifies a source's data in sweep ids: its name, plus the export folder of a local
    source (two exports graded over the same window are two sweeps, not one)."""
    folder = getattr(source, "folder", None)
    return f"{source.name}:{Path(folder).resolve()}" if folder else str(source.name)


def sweep_id_for(window_start: datetime, window_end: datetime, source: str) -> str:
    """The id of the sweep of one window from one source: ``<windowEnd>-<hash>``, readable and
    sortable by window end, the same every time that window is graded."""
    digest = hashlib.sha256(f"{_iso(window_start)}|{_iso(window_end)}|{source}".encode()).hexdigest()[:8]
    return f"{window_end.astimezone(UTC):%Y%m%dT%H%M%SZ}-{digest}"


# ---------------------------------------------------------------------------------------------
# Trimming a verdict that does not fit one entity


MAX_STORED_LIST = 100


def _cap_lists(value: Any) -> Any:
    if isinstance(value, list):
        return [_cap_lists(v) for v in value[:MAX_STORED_LIST]]
    if isinstance(value, dict):
        return {k: _cap_lists(v) for k, v in value.items()}
    return value


def _cap_all_lists(v: dict[str, Any]) -> None:
    v["evidence"] = _cap_lists(v["evidence"])
    v["findings"] = [{**f, "evidence": _cap_lists(f.get("evidence"))} for f in v.get("findings") or ()]


def _drop_other_senders(v: dict[str, Any]) -> None:
    v["evidence"]["otherSenders"] = []


def _drop_urls(v: dict[str, Any]) -> None:
    v["evidence"]["urls"] = []


def _drop_change_parameters(v: dict[str, Any]) -> None:
    for change in v["evidence"].get("changes") or ():
        change["parameters"] = []


def _drop_finding_evidence(v: dict[str, Any]) -> None:
    for finding in v.get("findings") or ():
        finding["evidence"] = {}


def _drop_hourly_series(v: dict[str, Any]) -> None:
    (v["evidence"].get("hourlyVolume") or {})["series"] = []


def _keep_summary_only(v: dict[str, Any]) -> None:
    ev = v["evidence"]
    v["evidence"] = {k: ev.get(k) for k in ("created", "lastModified", "modifiedBy", "alertIds")}
    v["findings"] = [{**f, "summary": _cut(f.get("summary"), 500)} for f in v.get("findings") or ()][:20]


_TRIM_STEPS: tuple[tuple[str, Callable[[dict[str, Any]], None]], ...] = (
    (f"evidence lists cut to their first {MAX_STORED_LIST} items", _cap_all_lists),
    ("evidence.otherSenders", _drop_other_senders),
    ("evidence.urls", _drop_urls),
    ("evidence.changes[].parameters", _drop_change_parameters),
    ("findings[].evidence", _drop_finding_evidence),
    ("evidence.hourlyVolume.series", _drop_hourly_series),
    ("evidence (all but created, lastModified, modifiedBy, alertIds)", _keep_summary_only),
)


def _put_verdict(entity: dict[str, Any], verdict: dict[str, Any]) -> list[str]:
    """Store *verdict* as JSON in *entity*, trimming it step by step (largest, least needed parts
    first) until it fits; returns what was trimmed (also recorded in ``evidence.storageTrimmed``)."""
    trimmed: list[str] = []
    current = verdict
    for label, step in ((None, None), *_TRIM_STEPS):
        if step is not None:
            current = copy.deepcopy(current)
            current.setdefault("evidence", {})
            step(current)
            trimmed.append(str(label))
            current["evidence"]["storageTrimmed"] = list(trimmed)
        try:
            put_json(entity, "Verdict", current)
            return trimmed
        except EntityTooLarge:
            continue
    raise StoreError(f"the verdict of {_cut(verdict.get('connector'), 80)} does not fit an entity even "
                     "trimmed to its summary")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class PersistOutcome:
    sweep_id: str
    written: bool
    """False when a complete sweep of the same window was already stored: nothing was written."""
    verdicts: list[dict[str, Any]]
    trimmed: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Suppression:
    connector: str
    incident_key: str
    by: str
    reason: str
    at: datetime
    graded_classification: str

    def as_dict(self) -> dict[str, Any]:
        return {"connector": self.connector, "incidentKey": self.incident_key, "by": self.by,
                "reason": self.reason, "at": _iso(self.at), "gradedClassification": self.graded_classification}


def _suppression_of(state: Mapping[str, Any]) -> Suppression | None:
    key = state.get("SuppressedIncidentKey")
    if not key:
        return None
    return Suppression(state["Connector"], key, state.get("SuppressedBy", ""), state.get("SuppressedReason", ""),
                       state["SuppressedAt"], state.get("SuppressedClassification", ""))


# ---------------------------------------------------------------------------------------------


class GraderStore:
    """Sweeps, verdicts, connector states and suppressions in Table Storage."""

    def __init__(self, tables: GraderTables, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.tables = tables
        self.clock = clock

    @classmethod
    def open(cls, connection: StorageConnection, prefix: str = "grader", **kwargs: Any) -> GraderStore:
        return cls(GraderTables.open(connection, prefix), **kwargs)

    # -- reading -------------------------------------------------------------------------------

    def connector_states(self) -> dict[str, TableEntity]:
        """Every connector's state entity, by connector name."""
        rows = self.tables.connectors.query_entities("PartitionKey eq @p", parameters={"p": CONNECTOR_PARTITION})
        return {row["Connector"]: row for row in rows}

    def latest_state_of(self, connector: str) -> TableEntity | None:
        """The newest state among every spelling of *connector* (Exchange names are case-insensitive,
        and a connector's state is stored under the spelling its latest sweep saw, which can change):
        what a check of "graded otherwise since" must read, never one spelling's older row."""
        wanted = connector.casefold()
        rows = [row for name, row in self.connector_states().items() if str(name).casefold() == wanted]
        return max(rows, key=lambda r: (r.get("WindowEnd") is not None, r.get("WindowEnd") or 0), default=None)

    def connector_state(self, connector: str) -> TableEntity | None:
        try:
            return self.tables.connectors.get_entity(CONNECTOR_PARTITION, encode_key(connector))
        except ResourceNotFoundError:
            return None

    def get_sweep(self, sweep_id: str) -> dict[str, Any] | None:
        """A stored sweep record (the sweep dict plus ``status``, ``recordedAt``, ``enqueued``)."""
        try:
            entity = self.tables.sweeps.get_entity(SWEEP_PARTITION, encode_key(sweep_id))
        except ResourceNotFoundError:
            return None
        return _sweep_from_entity(entity)

    def sweeps(self) -> list[dict[str, Any]]:
        """Sweep records (failed attempts included), newest window first."""
        rows = self.tables.sweeps.query_entities("PartitionKey eq @p", parameters={"p": SWEEP_PARTITION})
        out = [_sweep_from_entity(e) for e in rows]
        out.sort(key=lambda s: (s.get("windowEnd") or "", s.get("recordedAt") or ""), reverse=True)
        return out

    def sweep_verdicts(self, sweep_id: str) -> list[dict[str, Any]]:
        """The full verdicts stored for one sweep, in the sweep's order."""
        rows = self.tables.verdicts.query_entities("PartitionKey eq @p", parameters={"p": encode_key(sweep_id)})
        verdicts = [get_json(e, "Verdict") for e in rows]
        return _sorted([v for v in verdicts if v is not None])

    def verdict_row(self, sweep_id: str, connector: str) -> TableEntity | None:
        """The stored verdict entity of *connector* in sweep *sweep_id* (its columns and ``Verdict``)."""
        try:
            return self.tables.verdicts.get_entity(encode_key(sweep_id), encode_key(connector))
        except ResourceNotFoundError:
            return None

    def latest_verdict(self, connector: str) -> dict[str, Any] | None:
        """The full verdict of *connector* from the latest sweep that graded it, or None."""
        state = self.connector_state(connector)
        if state is None or not state.get("SweepId"):
            return None
        row = self.verdict_row(state["SweepId"], connector)
        return get_json(row, "Verdict") if row is not None else None

    def latest_verdicts(self) -> list[dict[str, Any]]:
        """Each connector's latest verdict summary (suppression applied), TPs first."""
        out = [_state_summary(e) for e in self.connector_states().values()]
        out.sort(key=lambda s: (LISTING_ORDER.get(s["classification"], 9), -int(s["score"] or 0), s["connector"]))
        return out

    def history(self, connector: str, *, full: bool = False) -> list[dict[str, Any]]:
        """Every stored verdict of *connector*, newest window first (*full*: the whole verdict).

        The Verdicts table is partitioned by sweep, so this filters across partitions; retention
        (GRADER_RETENTION_DAYS) bounds what it reads."""
        rows = self.tables.verdicts.query_entities("Connector eq @c", parameters={"c": connector})
        out = []
        for e in rows:
            item = {
                "sweepId": e.get("SweepId") or e["PartitionKey"],
                "windowStart": _iso(e["WindowStart"]), "windowEnd": _iso(e["WindowEnd"]),
                "classification": e.get("Classification"), "determination": e.get("Determination"),
                "score": e.get("Score"), "incidentKey": e.get("IncidentKey"),
                "suppressed": bool(e.get("Suppressed")),
            }
            if full:
                item["verdict"] = get_json(e, "Verdict")
            out.append(item)
        out.sort(key=lambda h: h["windowEnd"], reverse=True)
        return out

    # -- the state overlay: incident continuity and suppressions --------------------------------

    def apply_state(self, verdicts: list[dict[str, Any]], states: Mapping[str, Mapping[str, Any]] | None = None
                    ) -> list[dict[str, Any]]:
        """Carry each connector's incident key across the change lookback and honour suppressions
        (in place; also returned, re-sorted)."""
        states = self.connector_states() if states is None else states
        for verdict in verdicts:
            state = states.get(verdict["connector"])
            if not state:
                continue
            evidence = verdict.setdefault("evidence", {})
            if not evidence.get("lastModified") and state.get("LastChange") and state.get("IncidentKey"):
                # The change that defined the incident left the lookback; the configuration is the same.
                verdict["incidentKey"] = state["IncidentKey"]
                evidence["incidentChange"] = state["LastChange"]
            suppression = _suppression_of(state)
            if suppression is None:
                continue
            if suppression.incident_key == verdict["incidentKey"]:
                _suppress_verdict(verdict, suppression)
            else:
                verdict["findings"] = [*verdict.get("findings", []), {
                    "check": "suppression", "severity": "informational",
                    "summary": (f"A suppression by {suppression.by} no longer applies: the connector's "
                                "configuration changed since"),
                    "evidence": {**suppression.as_dict(), "lifted": True},
                }]
                evidence["suppressionLifted"] = suppression.as_dict()
        verdicts[:] = _sorted(verdicts)
        return verdicts

    # -- writing -------------------------------------------------------------------------------

    def persist_sweep(self, result: GradedSweep, *, source: str | None = None,
                      before_record: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None
                      ) -> PersistOutcome:
        """Store a sweep: verdicts, connector states, then its record (the commit marker).

        Renames the sweep to its canonical id (:func:`sweep_id_for`) and applies the state overlay
        to its verdicts (so what is printed is what is stored). A complete sweep of the same
        window already stored means nothing is written. *source* is the :func:`source_key` of the
        source it ran on (default: the source name the sweep records). *before_record* is called
        with the sweep and its verdicts, as stored, just before the record is written: what it
        adds to the sweep (the report's location) is part of the record."""
        sweep = result.sweep
        start, end = parse_iso(sweep["windowStart"]), parse_iso(sweep["windowEnd"])
        sweep_id = sweep_id_for(start, end, source or sweep["source"])
        sweep["sweepId"] = sweep_id
        states = self.connector_states()
        self.apply_state(result.verdicts, states)
        sweep["counts"] = {c.value: sum(1 for v in result.verdicts if v["classification"] == c) for c in Classification}
        existing = self.get_sweep(sweep_id)
        if existing and existing.get("status") == "complete":
            log.info("sweep %s: this window was already graded completely; nothing written", sweep_id)
            return PersistOutcome(sweep_id, False, result.verdicts)

        trimmed: dict[str, list[str]] = {}
        operations = []
        for verdict in result.verdicts:
            entity, cut = self._verdict_entity(sweep_id, start, end, verdict)
            if cut:
                trimmed[verdict["connector"]] = cut
                # Deliberate and recorded (evidence.storageTrimmed, the record's TrimmedVerdicts): not a fault.
                log.info("sweep %s: the verdict of %s was trimmed to fit Table Storage: %s", sweep_id,
                            safe_text(verdict["connector"], 80), ", ".join(cut))
            operations.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        submit(self.tables.verdicts, operations)

        state_ops = []
        for verdict in result.verdicts:
            state = states.get(verdict["connector"])
            if state is not None and (not result.complete or (state.get("WindowEnd") and state["WindowEnd"] > end)):
                continue  # keep the state of a complete, newer sweep
            state_ops.append(("upsert", self._state_entity(sweep_id, start, end, verdict), {"mode": UpdateMode.MERGE}))
        submit(self.tables.connectors, state_ops)

        if before_record is not None:
            before_record(sweep, result.verdicts)
        self._write_sweep_record(sweep, start, end, trimmed)
        return PersistOutcome(sweep_id, True, result.verdicts, trimmed)

    def record_failed_sweep(self, *, sweep_id: str, window_start: datetime, window_end: datetime, source: str,
                            error: str) -> str:
        """Record a sweep that raised before it had results; returns the record's id. Failed attempts
        keep their own rows, so a later success does not erase that the window once failed."""
        now = self.clock()
        record_id = f"{sweep_id}~failed~{now:%Y%m%dT%H%M%S%fZ}"
        entity = {
            "PartitionKey": SWEEP_PARTITION, "RowKey": encode_key(record_id), "SweepId": record_id,
            "Status": "failed", "Complete": False, "WindowStart": window_start, "WindowEnd": window_end,
            "Source": source, "RecordedAt": now, "Error": _cut(error, 4000),
        }
        self.tables.sweeps.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return record_id

    def note_enqueued(self, sweep_id: str, incident_keys: Iterable[str]) -> None:
        """Add the incidents a sweep put on the remediation queue to its record."""
        keys = list(incident_keys)
        self.tables.sweeps.update_entity(
            {"PartitionKey": SWEEP_PARTITION, "RowKey": encode_key(sweep_id), "Enqueued": len(keys),
             "EnqueuedKeys": _cut(",".join(keys), 30000)},
            mode=UpdateMode.MERGE,
        )

    def suppress(self, connector: str, *, reason: str, by: str) -> Suppression:
        """Mark *connector*'s latest verdict a false positive until its configuration changes.

        Etag-guarded: a sweep that updates the state meanwhile makes this re-read and retry, so the
        suppression always pins the incident key it was decided on."""
        reason = reason.strip()
        if not reason:
            raise StoreError("a suppression needs a reason (--reason): it is shown on every later verdict")
        if len(reason) > MAX_REASON_CHARS:
            raise StoreError(f"the reason is longer than {MAX_REASON_CHARS} characters")
        by = by.strip() or "unknown analyst"
        for _attempt in range(5):
            state = self.connector_state(connector)
            if state is None:
                raise StoreError(f"no stored verdict for connector '{_cut(connector, 200)}': run a sweep "
                                 "first; `python -m grading verdicts` lists the connectors known to the store")
            now = self.clock()
            graded = state.get("GradedClassification") or state.get("Classification") or Classification.UNKNOWN
            updated = {k: v for k, v in state.items() if k != "Determination"}
            updated.update({
                "Classification": Classification.FALSE_POSITIVE, "SuppressedIncidentKey": state["IncidentKey"],
                "SuppressedBy": _cut(by, 200), "SuppressedReason": reason, "SuppressedAt": now,
                "SuppressedClassification": graded,
            })
            try:
                self.tables.connectors.update_entity(updated, mode=UpdateMode.REPLACE, etag=state.metadata["etag"],
                                                     match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                continue
            except HttpResponseError as exc:
                if exc.status_code == 412:
                    continue
                raise
            return Suppression(connector, state["IncidentKey"], updated["SuppressedBy"], reason, now, graded)
        raise StoreError("the connector's state kept changing while suppressing (a sweep is running); retry")

    # -- retention -----------------------------------------------------------------------------

    def cleanup(self, *, older_than: timedelta, keep_incidents: Iterable[str] = ()) -> dict[str, int]:
        """Remove verdicts, sweep records, incidents and connector states older than *older_than*
        (by window end, claim time and last-seen time). Incidents of a connector whose current
        state still holds them are kept, so an ongoing incident is not enqueued again."""
        cutoff = self.clock() - older_than
        removed = {"verdicts": 0, "sweeps": 0, "incidents": 0, "connectors": 0}
        removed["verdicts"] = _delete_where(self.tables.verdicts, "WindowEnd lt @t", cutoff)
        removed["sweeps"] = _delete_where(self.tables.sweeps, "WindowEnd lt @t", cutoff)
        removed["connectors"] = _delete_where(self.tables.connectors, "LastSeen lt @t", cutoff)
        live = {s.get("IncidentKey") for s in self.connector_states().values()} | set(keep_incidents)
        removed["incidents"] = _delete_where(self.tables.incidents, "ClaimedAt lt @t", cutoff,
                                             keep=lambda e: e.get("IncidentKey") in live)
        return removed

    # -- entities ------------------------------------------------------------------------------

    def _verdict_entity(self, sweep_id: str, start: datetime, end: datetime, verdict: dict[str, Any]
                        ) -> tuple[dict[str, Any], list[str]]:
        entity: dict[str, Any] = {
            "PartitionKey": encode_key(sweep_id), "RowKey": encode_key(verdict["connector"]),
            "SweepId": sweep_id, "Connector": verdict["connector"], "ConnectorType": verdict["connectorType"],
            "Classification": verdict["classification"], "Determination": verdict.get("determination"),
            "Score": int(verdict["score"]), "IncidentKey": verdict["incidentKey"],
            "WindowStart": start, "WindowEnd": end,
            "Suppressed": bool((verdict.get("evidence") or {}).get("suppression")),
        }
        cut = _put_verdict(entity, verdict)
        if cut:
            entity["Trimmed"] = ", ".join(cut)
        return without_none(entity), cut

    def _state_entity(self, sweep_id: str, start: datetime, end: datetime, verdict: dict[str, Any]
                      ) -> dict[str, Any]:
        evidence = verdict.get("evidence") or {}
        suppression = evidence.get("suppression") or {}
        hourly = evidence.get("hourlyVolume") or {}
        entity: dict[str, Any] = {
            "PartitionKey": CONNECTOR_PARTITION, "RowKey": encode_key(verdict["connector"]),
            "Connector": verdict["connector"], "ConnectorType": verdict["connectorType"],
            "Classification": verdict["classification"],
            "GradedClassification": suppression.get("gradedClassification") or verdict["classification"],
            # MERGE keeps absent properties, so "no determination" is written as an empty string.
            "Determination": verdict.get("determination") or "",
            "Score": int(verdict["score"]), "IncidentKey": verdict["incidentKey"],
            "LastChange": evidence.get("lastModified") or evidence.get("incidentChange") or "",
            "SweepId": sweep_id, "WindowStart": start, "WindowEnd": end, "LastSeen": end,
            "ReasonIfUnknown": _cut(verdict.get("reasonIfUnknown"), 2000),
        }
        put_json(entity, "TopFindings", [
            {"check": f.get("check"), "severity": f.get("severity"), "summary": _cut(f.get("summary"), 300)}
            for f in (verdict.get("findings") or [])[:3]
        ])
        put_json(entity, "Baseline", {"band": hourly.get("baseline"), "reason": hourly.get("baselineReason"),
                                      "asOf": _iso(start)})
        return without_none(entity)

    def _write_sweep_record(self, sweep: dict[str, Any], start: datetime, end: datetime,
                            trimmed: Mapping[str, list[str]]) -> None:
        complete = bool(sweep["complete"])
        entity: dict[str, Any] = {
            "PartitionKey": SWEEP_PARTITION, "RowKey": encode_key(sweep["sweepId"]), "SweepId": sweep["sweepId"],
            "Status": "complete" if complete else "incomplete", "Complete": complete,
            "WindowStart": start, "WindowEnd": end, "Source": sweep["source"],
            "QueryCount": int(sweep.get("queryCount") or 0), "RowsReturned": int(sweep.get("rowsReturned") or 0),
            "Connectors": int(sweep.get("connectors") or 0),
            "DurationSeconds": float(sweep.get("durationSeconds") or 0.0), "RecordedAt": self.clock(),
            "TrimmedVerdicts": len(trimmed),
            "ReportBlob": (sweep.get("report") or {}).get("blob"),
        }
        for classification, count in sweep["counts"].items():
            entity[f"Count{classification[0].upper()}{classification[1:]}"] = int(count)
        try:
            put_json(entity, "Record", sweep)
        except EntityTooLarge:
            slim = {**sweep, "queries": [], "notChecked": sweep.get("notChecked", [])[:50],
                    "errors": [_cut(e, 2000) for e in sweep.get("errors", [])[:50]], "trimmed": True}
            put_json(entity, "Record", slim)
        self.tables.sweeps.upsert_entity(without_none(entity), mode=UpdateMode.REPLACE)


# ---------------------------------------------------------------------------------------------


def _suppress_verdict(verdict: dict[str, Any], suppression: Suppression) -> None:
    graded = verdict["classification"]
    note = {**suppression.as_dict(), "gradedClassification": graded,
            "gradedDetermination": verdict.get("determination"),
            "suppressedOn": suppression.graded_classification}
    verdict["findings"] = [{
        "check": "suppression", "severity": "informational",
        "summary": (f"Suppressed as a false positive by {suppression.by} on {suppression.at:%Y-%m-%d}: "
                    f"{suppression.reason} (graded {graded} before the suppression)"),
        "evidence": note,
    }, *verdict.get("findings", [])]
    verdict["evidence"]["suppression"] = note
    verdict["classification"] = Classification.FALSE_POSITIVE
    verdict["determination"] = None
    verdict["reasonIfUnknown"] = None


def _sorted(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(verdicts, key=lambda v: (LISTING_ORDER[v["classification"]], -v["score"], v["connector"]))


def _state_summary(e: Mapping[str, Any]) -> dict[str, Any]:
    suppression = _suppression_of(e)
    return {
        "connector": e["Connector"], "connectorType": e.get("ConnectorType"),
        "classification": e.get("Classification"), "gradedClassification": e.get("GradedClassification"),
        "determination": e.get("Determination") or None, "score": e.get("Score"),
        "incidentKey": e.get("IncidentKey"), "sweepId": e.get("SweepId"),
        "windowStart": _iso(e["WindowStart"]), "windowEnd": _iso(e["WindowEnd"]),
        "lastChange": e.get("LastChange") or None, "reasonIfUnknown": e.get("ReasonIfUnknown") or None,
        "topFindings": get_json(e, "TopFindings", []), "baseline": get_json(e, "Baseline"),
        "suppression": suppression.as_dict() if suppression else None,
        "suppressionActive": bool(suppression and suppression.incident_key == e.get("IncidentKey")),
    }


def _sweep_from_entity(e: Mapping[str, Any]) -> dict[str, Any]:
    record = get_json(e, "Record") or {
        "sweepId": e.get("SweepId"), "source": e.get("Source"), "complete": False,
        "windowStart": _iso(e["WindowStart"]), "windowEnd": _iso(e["WindowEnd"]),
        "errors": [e.get("Error", "")],
    }
    return {**record, "sweepId": e.get("SweepId") or record.get("sweepId"), "status": e.get("Status"),
            "recordedAt": _iso(e["RecordedAt"]) if e.get("RecordedAt") else None,
            "enqueued": int(e.get("Enqueued") or 0)}


def _delete_where(table: Any, query: str, cutoff: datetime,
                  keep: Callable[[Mapping[str, Any]], bool] | None = None) -> int:
    rows = table.query_entities(query, parameters={"t": cutoff})
    ops = [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]})
           for e in rows if keep is None or not keep(e)]
    return submit(table, ops)
