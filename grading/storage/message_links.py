"""Which connector relayed each alert evidence message, kept so a sweep looks each message id up once.

Why: linking an alert to a connector by its evidence messages needs EmailEvents (the message's
``Connectors``) over the change lookback; reading seven days of mail every hour for a handful of
message ids costs 168 hours of EmailEvents rows a sweep. An id's answer does not change once its
rows have arrived, so it is stored here and the hourly sweep reads EmailEvents only for ids it has
not answered yet (grading/alert_links.py; docs/architecture.md, "Stored aggregates").

Layout (table role ``Aggregates``, beside the hourly kinds, so per-tenant prefixes, purge and the
maintenance's retention cover it):

===========================  =====================  ===========================================
PartitionKey                 RowKey                 holds
===========================  =====================  ===========================================
``alert_messages-YYYYMMDD``  the id, encoded        ``MessageId``, ``Links`` (JSON: [connector,
(the day of the latest       (:func:`encode_key`)   latest message time] pairs, at most
alert naming the id)                                :data:`MAX_LINKS`), ``Final``, ``AlertTime``,
                                                    ``CheckedAt``
===========================  =====================  ===========================================

An id with no link (not relayed by a connector, or its rows not arrived yet) is stored too, with no
links; it is ``Final`` only once the ingestion delay has passed since its alert (late rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.data.tables import TableClient, UpdateMode

from grading.storage.entities import EntityTooLarge, get_json, put_json, submit
from grading.storage.keys import encode_key

KIND = "alert_messages"
"""The partition prefix (``<KIND>-YYYYMMDD``), as the hourly kinds', so :meth:`HourlyAggregates.cleanup`
deletes old days of it too."""
MAX_LINKS = 20
"""Connectors kept per message id (a message is relayed by one; more is not a link worth keeping)."""
LINKS_BUDGET = 200_000
"""JSON characters of one id's links (split into 32,000-character properties by :func:`put_json`); an
id whose links or id would not fit (names no Exchange organisation allows) is not stored, so it is
looked up again by the next sweep rather than refused by the service."""
MAX_ID_CHARS = 1_000
"""The longest message id stored (a NetworkMessageId is a GUID: 36 characters)."""


@dataclass(frozen=True)
class MessageLink:
    """What one lookup said of one evidence message id."""

    message_id: str
    connectors: tuple[tuple[str, datetime], ...]
    """(connector, the message's latest EmailEvents time through it); empty: no connector relayed it."""
    final: bool
    """False where the id was not found before the ingestion delay had passed since its alert."""
    alert_time: datetime
    checked_at: datetime
    """The window end of the lookup that answered it."""


def _day(t: datetime) -> str:
    return f"{KIND}-{t.astimezone(UTC):%Y%m%d}"


class StoredMessageLinks:
    """The stored answers of the evidence-message lookup, over the Aggregates table client."""

    def __init__(self, table: TableClient):
        self.table = table
        self.requests = 0
        self.entities_written = 0

    def read(self, start: datetime, end: datetime) -> dict[str, MessageLink]:
        """The answers stored for alerts of [start, end) (the day partitions it touches; one query).
        An id stored under two alerts' days: its final answer, else its latest."""
        first, last = _day(start), _day(end - timedelta(microseconds=1) if end > start else start)
        self.requests += 1
        out: dict[str, MessageLink] = {}
        for e in self.table.query_entities("PartitionKey ge @a and PartitionKey le @b",
                                           parameters={"a": first, "b": last}):
            link = MessageLink(
                message_id=str(e.get("MessageId") or ""),
                connectors=tuple((str(c), datetime.fromisoformat(t)) for c, t in get_json(e, "Links", [])),
                final=bool(e.get("Final")),
                alert_time=_utc(e["AlertTime"]),
                checked_at=_utc(e["CheckedAt"]),
            )
            held = out.get(link.message_id)
            if held is None or (link.final, link.checked_at) > (held.final, held.checked_at):
                out[link.message_id] = link
        return out

    def write(self, links: Iterable[MessageLink]) -> int:
        """Store (replace) each id's answer under the day of its alert; returns how many entities."""
        operations = []
        for link in links:
            if len(link.message_id) > MAX_ID_CHARS:
                continue
            entity = {"PartitionKey": _day(link.alert_time), "RowKey": encode_key(link.message_id),
                      "MessageId": link.message_id, "Final": link.final,
                      "AlertTime": link.alert_time.astimezone(UTC), "CheckedAt": link.checked_at.astimezone(UTC)}
            pairs = [[c, t.astimezone(UTC).isoformat()] for c, t in link.connectors[:MAX_LINKS]]
            try:
                put_json(entity, "Links", pairs, budget=LINKS_BUDGET)
            except EntityTooLarge:
                continue
            operations.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
        done = submit(self.table, operations)
        self.requests += -(-done // 100)
        self.entities_written += done
        return done


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
