"""The timer's watermark: the end of the last graded window, and a lease on the next one.

Why etag-guarded: a late timer run (``past_due``), a host restart and the next scheduled run can
overlap. Each run reads the watermark, plans its window from it, and claims the window by writing
a lease with ``If-Match`` on the etag it read; of two racing runs exactly one write succeeds and the
other stops ("busy"). The winner advances the watermark with the etag of its own claim. A lease
expires (a run that died), so the hours are never stuck; a window is graded once, never twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableEntity, UpdateMode

from grading.storage.entities import without_none

log = logging.getLogger(__name__)

SCHEDULER_PARTITION = "scheduler"
WATERMARK_ROW = "watermark"
DEFAULT_LEASE = timedelta(minutes=30)
"""As long as host.json's functionTimeout (30 minutes): a run the host stopped frees its window by
then. The scheduler lengthens it when GRADER_SWEEP_DEADLINE needs more (grading/scheduler.py)."""

Planner = Callable[[datetime | None], tuple[datetime, datetime] | None]


@dataclass
class WindowClaim:
    """The window a run may grade, held under its lease."""

    start: datetime
    end: datetime
    first: bool
    """No watermark was stored: this is the first sweep."""
    run_id: str
    etag: str
    entity: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def incomplete_attempts(self) -> int:
        """Earlier incomplete sweeps of a window starting where this one does."""
        if self.entity.get("IncompleteStart") == self.start:
            return int(self.entity.get("IncompleteAttempts") or 0)
        return 0


@dataclass(frozen=True)
class NoWindow:
    """Why a run has nothing to grade: ``caught-up`` (the watermark is at the planned end) or
    ``busy`` (another run holds the lease or won the race)."""

    reason: str
    watermark: datetime | None = None
    holder: str | None = None


def _conflict(exc: HttpResponseError) -> bool:
    return isinstance(exc, (ResourceModifiedError, ResourceExistsError)) or exc.status_code in (409, 412)


class WatermarkStore:
    def __init__(self, table: TableClient, row: str = WATERMARK_ROW) -> None:
        self.table = table
        self.row = row

    def read(self) -> TableEntity | None:
        try:
            return self.table.get_entity(SCHEDULER_PARTITION, self.row)
        except ResourceNotFoundError:
            return None

    def watermark(self) -> datetime | None:
        entity = self.read()
        return entity.get("Watermark") if entity else None

    def claim(self, *, now: datetime, plan: Planner, run_id: str,
              lease: timedelta = DEFAULT_LEASE) -> WindowClaim | NoWindow:
        """Plan the next window from the stored watermark and claim it for *run_id*."""
        current = self.read()
        watermark = current.get("Watermark") if current else None
        if current and current.get("LeaseOwner") and current.get("LeaseUntil") and current["LeaseUntil"] > now:
            return NoWindow("busy", watermark, current["LeaseOwner"])
        window = plan(watermark)
        if window is None:
            return NoWindow("caught-up", watermark)
        entity: dict[str, Any] = dict(current) if current else {"PartitionKey": SCHEDULER_PARTITION,
                                                                 "RowKey": self.row}
        entity.update({"LeaseOwner": run_id, "LeaseUntil": now + lease, "LeaseWindowStart": window[0],
                       "LeaseWindowEnd": window[1]})
        try:
            if current is None:
                meta = self.table.create_entity(entity)
            else:
                meta = self.table.update_entity(entity, mode=UpdateMode.REPLACE, etag=current.metadata["etag"],
                                                match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if _conflict(exc):
                return NoWindow("busy", watermark)
            raise
        return WindowClaim(window[0], window[1], watermark is None, run_id, meta["etag"], entity)

    def finish(self, claim: WindowClaim, *, complete: bool, retries: int, sweep_id: str, now: datetime) -> bool:
        """Release the lease; advance the watermark to the window's end if the sweep was complete,
        or if it was incomplete more than *retries* times already, else keep it at the window's
        start (so the next run re-grades it). Returns whether it advanced."""
        attempts = claim.incomplete_attempts + (0 if complete else 1)
        advance = complete or attempts > retries
        entity = dict(claim.entity)
        entity.update({"LeaseOwner": None, "LeaseUntil": None, "LeaseWindowStart": None, "LeaseWindowEnd": None,
                       "LastSweepId": sweep_id, "LastRunAt": now,
                       "LastStatus": "complete" if complete else "incomplete"})
        if advance:
            entity.update({"Watermark": claim.end, "IncompleteStart": None, "IncompleteAttempts": None})
        else:
            entity.update({"Watermark": claim.start, "IncompleteStart": claim.start, "IncompleteAttempts": attempts})
        self._write(claim, entity)
        return advance

    def release(self, claim: WindowClaim, *, now: datetime, error: str) -> None:
        """Give the lease back after a failed sweep; the watermark stays at the window's start, so
        the next run grades these hours again."""
        entity = dict(claim.entity)
        entity.update({"LeaseOwner": None, "LeaseUntil": None, "LeaseWindowStart": None, "LeaseWindowEnd": None,
                       "LastRunAt": now, "LastStatus": "failed", "LastError": error[:4000],
                       # A first sweep that failed pins its start, so its hours are not dropped either.
                       "Watermark": claim.start})
        self._write(claim, entity)

    def _write(self, claim: WindowClaim, entity: dict[str, Any]) -> None:
        try:
            self.table.update_entity(without_none(entity), mode=UpdateMode.REPLACE, etag=claim.etag,
                                     match_condition=MatchConditions.IfNotModified)
        except HttpResponseError as exc:
            if not _conflict(exc):
                raise
            # Our lease expired and another run took the window over; it owns the watermark now.
            log.warning("run %s lost its lease on the window %s .. %s; the run that took it over records it",
                        claim.run_id, claim.start.isoformat(), claim.end.isoformat())
