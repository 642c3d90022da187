"""Hourly aggregates of the hunting queries, kept in Table Storage so a sweep reads only new hours.

Why: the baselines (a connector's hourly traffic over 14 days, the tenant's own domains) are sums of
hourly rows. Re-reading two weeks of mail every hour spends the tenant's advanced-hunting budget;
instead each hour's rows (exactly what the query returns for that hour) are stored once and the
baselines are computed from them (docs/architecture.md, "Stored aggregates").

Layout (table role ``Aggregates``):

==================  ===================  ==============================================
PartitionKey        RowKey               holds
==================  ===================  ==============================================
``<kind>-YYYYMMDD`` ``HH``               the hour's marker: parts, final, context
``<kind>-YYYYMMDD`` ``HH-NNN``           part NNN of the hour's rows (JSON, put_json)
==================  ===================  ==============================================

An hour is written in one entity-group transaction (its parts, then its marker: same partition; the
hours of one query run that fit go together), so an hour is either whole or absent; that is what makes
an interrupted backfill resume where it stopped (hours without a marker are read again, hours with one
are not). Parts hold at most
:data:`PART_CHARS` of JSON each (well inside 1 MiB and split into 64 KiB properties by
:func:`grading.storage.entities.put_json`). An hour aggregated before its ingestion delay had passed
is marked not final and is read and replaced once more later (late rows).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from grading.storage.entities import (
    MAX_BATCH_BYTES,
    MAX_BATCH_OPERATIONS,
    Operation,
    batches,
    dumps,
    estimated_bytes,
    get_json,
    put_json,
    submit,
)

HOUR = timedelta(hours=1)
PART_CHARS = 200_000
"""JSON characters per part entity: 400 KB as UTF-16, inside the 1 MiB entity limit."""


@dataclass(frozen=True)
class HourMarker:
    hour: datetime
    parts: int
    final: bool
    context: str


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$t": value.astimezone(UTC).isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$t"}:
        return datetime.fromisoformat(value["$t"])
    return value


def encode_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _encode(v) for k, v in r.items()} for r in rows]


def decode_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{k: _decode(v) for k, v in r.items()} for r in rows]


@dataclass
class StoredSpan:
    """The stored hours of one kind over a span, as one read found them (:meth:`HourlyAggregates.span`)
    and as the sweep's own writes left them (:meth:`HourlyAggregates.write` with ``span=``)."""

    markers: dict[datetime, HourMarker]
    by_hour: dict[datetime, list[dict[str, Any]]]

    def rows(self) -> tuple[list[dict[str, Any]], set[datetime]]:
        """The rows of the stored hours in stored order (day, hour, part), and which hours are stored."""
        return [r for hour in sorted(self.by_hour) for r in self.by_hour[hour]], set(self.markers)


def _in_parts(items: Iterable[Any], size: Any) -> list[list[Any]]:
    """*items* in order, cut into parts of at most :data:`PART_CHARS` by *size* (an item larger than that
    is a part of its own); no parts for no items."""
    parts: list[list[Any]] = []
    total = 0
    for item in items:
        n = size(item)
        if not parts or total + n > PART_CHARS:
            parts.append([])
            total = 0
        parts[-1].append(item)
        total += n
    return parts


class HourlyAggregates:
    """The stored hourly rows of each aggregated query (*kind*), over one table client."""

    def __init__(self, table: TableClient):
        self.table = table
        self.requests = 0
        self.entities_written = 0
        self.chars_written = 0

    @staticmethod
    def _partition(kind: str, hour: datetime) -> str:
        return f"{kind}-{hour:%Y%m%d}"

    def _days(self, kind: str, start: datetime, end: datetime,
              select: list[str] | None = None) -> Iterable[dict[str, Any]]:
        """Every entity of *kind* in the day partitions that [start, end) touches (one query), with only
        the *select* properties when given (the markers, without the rows of every part)."""
        first = self._partition(kind, start)
        last = self._partition(kind, end - HOUR) if end > start else first
        self.requests += 1
        return self.table.query_entities(
            "PartitionKey ge @a and PartitionKey le @b", parameters={"a": first, "b": last}, select=select)

    @staticmethod
    def _hour(partition: str, hh: str) -> datetime:
        """The hour a ``<kind>-YYYYMMDD`` partition and an ``HH`` row key name (strptime is slow per entity)."""
        day = partition[-8:]
        return datetime(int(day[:4]), int(day[4:6]), int(day[6:]), int(hh), tzinfo=UTC)

    def markers(self, kind: str, start: datetime, end: datetime) -> dict[datetime, HourMarker]:
        """The hours of [start, end) that are stored, by hour."""
        out: dict[datetime, HourMarker] = {}
        for e in self._days(kind, start, end, select=["PartitionKey", "RowKey", "Parts", "Final", "Context"]):
            if "-" in e["RowKey"]:
                continue
            hour = self._hour(e["PartitionKey"], e["RowKey"])
            if start <= hour < end:
                out[hour] = HourMarker(hour, int(e.get("Parts") or 0), bool(e.get("Final")), e.get("Context") or "")
        return out

    def rows(self, kind: str, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], set[datetime]]:
        """The stored rows of the hours of [start, end), and which hours are stored."""
        return self.span(kind, start, end).rows()

    def span(self, kind: str, start: datetime, end: datetime) -> StoredSpan:
        """The markers and rows of the hours of [start, end) as stored, from one read of their days."""
        entities = list(self._days(kind, start, end))
        markers: dict[datetime, HourMarker] = {}
        for e in entities:
            if "-" not in e["RowKey"]:
                hour = self._hour(e["PartitionKey"], e["RowKey"])
                if start <= hour < end:
                    markers[hour] = HourMarker(hour, int(e.get("Parts") or 0), bool(e.get("Final")),
                                               e.get("Context") or "")
        by_hour: dict[datetime, list[dict[str, Any]]] = {hour: [] for hour in markers}
        for e in entities:
            if "-" not in e["RowKey"]:
                continue
            hh, part = e["RowKey"].split("-")
            hour = self._hour(e["PartitionKey"], hh)
            if hour in markers and int(part) < markers[hour].parts:  # a part beyond the marker's count is stale
                by_hour[hour].extend(decode_rows(get_json(e, "Rows", [])))
        return StoredSpan(markers, by_hour)

    def _hour_operations(self, kind: str, hour: datetime, rows: list[dict[str, Any]], *, final: bool, context: str
                         ) -> tuple[list[Operation], HourMarker, list[dict[str, Any]]]:
        """The hour's parts, then its marker, as upserts; its marker; and its rows as a later read returns
        them (JSON's round trip: keys sorted, lists)."""
        pk = self._partition(kind, hour)
        encoded = encode_rows(rows)
        chunks = _in_parts(encoded, lambda r: len(dumps(r)) + 1)
        operations = self._part_operations(pk, [(f"{hour:%H}-{i:03d}", chunk) for i, chunk in enumerate(chunks)],
                                           "Rows")
        marker = {"PartitionKey": pk, "RowKey": f"{hour:%H}", "Parts": len(chunks), "Final": final,
                  "Context": context, "Rows": len(encoded)}
        operations.append(("upsert", marker, {"mode": UpdateMode.REPLACE}))
        return operations, HourMarker(hour, len(chunks), final, context), decode_rows(json.loads(dumps(encoded)))

    def _part_operations(self, pk: str, parts: list[tuple[str, Any]], name: str) -> list[Operation]:
        """An upsert per (row key, value) part, the value as JSON in the *name* properties."""
        operations: list[Operation] = []
        for row_key, value in parts:
            entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": row_key}
            self.chars_written += put_json(entity, name, value, budget=PART_CHARS + 1_000)
            operations.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        return operations

    def _submit(self, operations: list[Operation]) -> None:
        submit(self.table, operations)
        self.requests += sum(1 for _ in batches(operations))
        self.entities_written += len(operations)

    def write_hour(self, kind: str, hour: datetime, rows: list[dict[str, Any]], *, final: bool, context: str
                   ) -> tuple[HourMarker, list[dict[str, Any]]]:
        """Replace the hour's rows (parts first, marker last, in one transaction where it fits); returns
        its marker and its rows as a later read returns them."""
        operations, marker, stored = self._hour_operations(kind, hour, rows, final=final, context=context)
        self._submit(operations)
        return marker, stored

    def write(self, kind: str, start: datetime, end: datetime, rows: list[dict[str, Any]], *, hour_column: str,
              final_before: datetime, context: str, span: StoredSpan | None = None) -> None:
        """Store the rows of one query run over [start, end) hour by hour; every hour of the range gets
        a marker, with no rows where the query returned none. An hour ending after *final_before* is
        stored as not final (read again once its ingestion delay has passed). *span*, read before, is
        brought up to date with what was written (so the sweep need not read the days again).

        Whole hours of one day go together into one entity-group transaction while they fit (at most
        100 entities and :data:`grading.storage.entities.MAX_BATCH_BYTES`): a backfill day is a request
        or two rather than 24, and each hour is still whole or absent (a transaction is atomic; an hour
        too large for one is written alone, its marker last)."""
        by_hour: dict[datetime, list[dict[str, Any]]] = {}
        for r in rows:
            by_hour.setdefault(r[hour_column].astimezone(UTC), []).append(r)
        group: list[Operation] = []
        group_bytes = 0
        written: list[tuple[HourMarker, list[dict[str, Any]]]] = []
        hour = start
        while hour < end:
            operations, marker, stored = self._hour_operations(
                kind, hour, by_hour.get(hour, []), final=hour + HOUR <= final_before, context=context)
            size = sum(estimated_bytes(op[1]) + 512 for op in operations)
            if group and (group[0][1]["PartitionKey"] != operations[0][1]["PartitionKey"]
                          or len(group) + len(operations) > MAX_BATCH_OPERATIONS
                          or group_bytes + size > MAX_BATCH_BYTES):
                self._submit(group)
                group, group_bytes = [], 0
            group.extend(operations)
            group_bytes += size
            written.append((marker, stored))
            hour += HOUR
        if group:
            self._submit(group)
        if span is not None:
            for marker, stored in written:
                span.markers[marker.hour] = marker
                span.by_hour[marker.hour] = stored

    def read_profile(self, kind: str) -> tuple[dict[str, datetime], datetime | None]:
        """A kind's folded profile: each key with the last hour it was seen, and the hour up to which the
        stored hours are folded into it (None: no profile yet). Written by :meth:`write_profile`."""
        self.requests += 1
        entities = list(self.table.query_entities("PartitionKey eq @p", parameters={"p": f"{kind}-profile"}))
        marker = next((e for e in entities if e["RowKey"] == "marker"), None)
        if marker is None:
            return {}, None
        parts = {f"part-{marker['Generation']}-{i:04d}" for i in range(int(marker.get("Parts") or 0))}
        seen: dict[str, datetime] = {}
        for e in entities:
            if e["RowKey"] in parts:  # {"YYYYMMDDHH": [keys last seen that hour]}
                for hour, keys in get_json(e, "Seen", {}).items():
                    when = self._hour(hour[:8], hour[8:])
                    seen.update(dict.fromkeys(keys, when))
        return seen, datetime.fromisoformat(marker["Through"])

    def write_profile(self, kind: str, seen: Mapping[str, datetime], through: datetime) -> None:
        """Replace the profile: a new generation of parts (at most :data:`PART_CHARS` of JSON each), then
        the marker naming it, then the old generation's parts go; a reader sees the old profile or the
        new one, never a mixture, however many transactions the parts take."""
        pk = f"{kind}-profile"
        generation = f"{through.astimezone(UTC):%Y%m%d%H}"
        self.requests += 1
        old = [e["RowKey"] for e in self.table.query_entities("PartitionKey eq @p", parameters={"p": pk},
                                                             select=["RowKey"])
               if e["RowKey"].startswith("part-") and not e["RowKey"].startswith(f"part-{generation}-")]
        # Keys grouped by their hour (a key costs its own characters and a few more, not a timestamp each).
        pairs = sorted(((f"{hour.astimezone(UTC):%Y%m%d%H}", key) for key, hour in seen.items()))
        chunks: list[dict[str, list[str]]] = []
        for part in _in_parts(pairs, lambda pair: len(dumps(pair[1])) + 15):
            chunks.append({})
            for hour_key, key in part:
                chunks[-1].setdefault(hour_key, []).append(key)
        operations = self._part_operations(
            pk, [(f"part-{generation}-{i:04d}", chunk) for i, chunk in enumerate(chunks)], "Seen")
        marker = {"PartitionKey": pk, "RowKey": "marker", "Parts": len(chunks), "Keys": len(seen),
                  "Generation": generation, "Through": through.astimezone(UTC).isoformat()}
        operations.append(("upsert", marker, {"mode": UpdateMode.REPLACE}))
        operations.extend(("delete", {"PartitionKey": pk, "RowKey": key}) for key in old)
        self._submit(operations)

    def cleanup(self, kinds: Iterable[str], before: datetime) -> int:
        """Delete the stored hours of days wholly before *before* (retention); returns how many entities."""
        removed = 0
        for kind in kinds:
            self.requests += 1
            old = self.table.query_entities(
                "PartitionKey ge @a and PartitionKey lt @b",
                parameters={"a": f"{kind}-", "b": self._partition(kind, before)}, select=["PartitionKey", "RowKey"])
            ops = [("delete", {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"]}) for e in old]
            removed += submit(self.table, ops)
        return removed

    def stored_chars(self, kind: str, start: datetime, end: datetime) -> int:
        """The JSON characters stored for [start, end) (what bytes per connector-day is measured from)."""
        total = 0
        for e in self._days(kind, start, end):
            total += sum(len(v) for k, v in e.items() if isinstance(v, str)) + len(json.dumps(
                {k: v for k, v in e.items() if not isinstance(v, str)}, default=str))
        return total
