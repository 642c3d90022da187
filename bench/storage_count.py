"""Count the storage requests (Table, Queue, Blob) of storing one sweep, on a real Azurite.

Why count on the wire: "requests per sweep" is what the storage account bills and throttles,
and an entity-group transaction is one request however many entities it carries. The counter is
an azure-core ``raw_request_hook`` (the SDK's CustomHookPolicy, after the retry policy, so a
retried request counts again) given to the clients this module builds; the grader's storage code
is used unchanged: :class:`CountingConnection` is a :class:`StorageConnection` whose clients carry
the hook, and everything else goes through ``SweepServices.connect`` as in the Functions app.

What is measured is what ``python -m grading sweep --store table`` does after grading
(:func:`grading.scheduler.store_result`: verdicts, connector states, the HTML report's blob, the
sweep record; then :func:`grading.scheduler.publish_incidents`: incident claims and queue
messages), plus the timer's watermark claim and finish around it, counted apart.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from grading.scheduler import SweepServices, publish_incidents, store_result
from grading.settings import StorageSettings
from grading.storage.connection import StorageConnection
from grading.storage.watermark import WindowClaim
from grading.sweep import SweepResult


@dataclass(frozen=True)
class Request:
    """One HTTP request as the counter saw it."""

    service: str
    """``table``, ``queue`` or ``blob`` (the sweep's HTML report)."""
    kind: str
    """``batch``, ``insert``, ``upsert`` (PUT/MERGE/PATCH of one entity), ``delete``, ``read``
    (GET of an entity or a query page), ``create`` (a table, queue or container), ``send`` (a queue
    message), ``upload`` (a blob)."""
    entities: int
    """Entities written by the request (the operations of a transaction; 1 for a single write)."""


def _leaf_requests(http_request: Any) -> int:
    """The operations inside a multipart (``$batch``) request: its changeset's parts."""
    info = getattr(http_request, "multipart_mixed_info", None)
    if not info:
        return 1
    return sum(_leaf_requests(part) for part in info[0])


def classify(service: str, http_request: Any) -> Request:
    """What a request to *service* does, from its method and URL (and its parts, for a transaction)."""
    method = http_request.method.upper()
    path = urlsplit(http_request.url).path
    if service == "blob":
        if method == "PUT" and "restype=container" in urlsplit(http_request.url).query:
            return Request("blob", "create", 0)
        return Request("blob", "upload" if method == "PUT" else "read", 0)
    if service == "queue":
        if method == "POST" and path.endswith("/messages"):
            return Request("queue", "send", 0)
        return Request("queue", "create" if method == "PUT" else "read", 0)
    if path.endswith("/$batch"):
        return Request("table", "batch", _leaf_requests(http_request))
    if method == "POST" and path.rstrip("/").endswith("/Tables"):
        return Request("table", "create", 0)
    if method == "POST":
        return Request("table", "insert", 1)
    if method in ("PUT", "MERGE", "PATCH"):
        return Request("table", "upsert", 1)
    if method == "DELETE":
        return Request("table", "delete", 1)
    return Request("table", "read", 0)


@dataclass
class RequestCounter:
    """Every request the hooked clients sent, in order; :meth:`mark` starts a new phase."""

    requests: list[tuple[str, Request]] = field(default_factory=list)
    phase: str = "setup"

    def hook(self, service: str) -> Any:
        """A ``raw_request_hook`` recording each request to *service* under the current phase."""
        def record(pipeline_request: Any) -> None:
            self.requests.append((self.phase, classify(service, pipeline_request.http_request)))

        return record

    def mark(self, phase: str) -> None:
        self.phase = phase

    def summary(self, phase: str) -> dict[str, Any]:
        """Requests of *phase* by kind, and the entities per write request."""
        seen = [r for p, r in self.requests if p == phase]
        writes = [r for r in seen if r.entities > 0]
        batches = [r for r in seen if r.kind == "batch"]
        entities = sum(r.entities for r in writes)
        return {
            "requests": len(seen),
            "byKind": dict(sorted(Counter(f"{r.service} {r.kind}" for r in seen).items())),
            "writeRequests": len(writes),
            "entitiesWritten": entities,
            "entitiesPerWriteRequest": round(entities / len(writes), 1) if writes else None,
            "batches": len(batches),
            "entitiesPerBatch": round(sum(r.entities for r in batches) / len(batches), 1) if batches else None,
            "largestBatch": max((r.entities for r in batches), default=0),
        }


@dataclass(frozen=True)
class CountingConnection(StorageConnection):
    """A connection-string connection whose Table and Queue clients report every request."""

    counter: RequestCounter = field(default_factory=RequestCounter)

    def table_service(self) -> TableServiceClient:
        assert self.connection_string is not None
        return TableServiceClient.from_connection_string(self.connection_string,
                                                         raw_request_hook=self.counter.hook("table"))

    def queue(self, name: str) -> QueueClient:
        assert self.connection_string is not None
        return QueueClient.from_connection_string(self.connection_string, name,
                                                  raw_request_hook=self.counter.hook("queue"))

    def blob_service(self, **options: Any) -> Any:
        """The sweep report's Blob client, built as the grader builds it, plus the hook."""
        return super().blob_service(raw_request_hook=self.counter.hook("blob"), **options)


def store_counted(result: SweepResult, connection_string: str, *, source: str,
                  prefix: str | None = None) -> dict[str, Any]:
    """Store *result* in fresh tables on the storage account of *connection_string* and return the
    requests it took: the sweep (verdicts, connector states, record, incidents and queue messages)
    and the timer's watermark claim and finish, each phase apart."""
    prefix = prefix or f"bench{uuid.uuid4().hex[:10]}"
    counter = RequestCounter()
    settings = StorageSettings(connection_string=connection_string, table_prefix=prefix,
                               remediation_queue=f"{prefix}-remediation".lower())
    services = SweepServices.connect(CountingConnection(connection_string=connection_string, counter=counter), settings)
    start = datetime.fromisoformat(result.sweep["windowStart"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(result.sweep["windowEnd"].replace("Z", "+00:00"))

    counter.mark("watermark")
    claim = services.watermark.claim(now=end, plan=lambda _wm: (start, end), run_id="bench")
    counter.mark("sweep")
    graded = store_result(services, result, source=source)
    enqueued = publish_incidents(services, graded)
    counter.mark("watermark")
    if isinstance(claim, WindowClaim):
        services.watermark.finish(claim, complete=graded.complete, retries=0, sweep_id=graded.sweep_id, now=end)
    counter.mark("done")
    return {
        "tablePrefix": prefix,
        "verdicts": len(graded.verdicts),
        "enqueued": len(enqueued),
        "setup": counter.summary("setup"),
        "sweep": counter.summary("sweep"),
        "watermark": counter.summary("watermark"),
    }
