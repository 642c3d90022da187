"""Telemetry source: a Log Analytics (Microsoft Sentinel) workspace through azure-monitor-query.

Why it looks the way it does: the grader must never grade a partial answer as complete. The
Log Analytics query API answers 200 with an ``error`` beside the tables when it could not
finish (``LogsQueryPartialResult``), caps results (500,000 rows, ~100 MiB raw, 64 MB compressed), times out at the
``Prefer: wait`` server timeout and throttles with 429. Each of those comes back here as an
incomplete :class:`QueryResult` carrying the service's own reason; a table the workspace does
not have comes back as 'not checked' when the table is optional. Nothing the service does
raises to the grader; only a configuration mistake raises, at construction.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsTable

from grading.cloud.identity import IdentityRecorder, token_failure
from grading.cloud.responses import clip, error_codes, error_messages, json_body, service_reason
from grading.cloud.retry import RETRY_LOG_OPTION, GraderRetryPolicy, RetryConfig, RetryLog
from grading.hunting.rendering import Dialect, RenderedQuery, la_time_generated_bounds
from grading.sources.base import Column, QueryResult, TelemetrySourceError
from grading.sources.cloud_base import (
    CloudSource,
    LiveSchemaCache,
    SchemaStore,
    annotate,
    failed,
    iter_rows,
    kusto_type,
    missing_tables_outcome,
    not_checked,
    split_missing,
    unresolved_tables,
    with_retries,
)

ROW_CAP = 500_000
"""Log Analytics query API: maximum records returned in a single query."""
SIZE_CAP_BYTES = 100 * 1024 * 1024
"""Log Analytics query API: maximum size of data returned, ~104 MB (~100 MiB) of raw data (up to
64 MB compressed on the wire), per Azure Monitor's service limits. A response of this size without
an error is flagged as possibly truncated; one cut by the service says so itself
(E_QUERY_RESULT_SET_TOO_LARGE, a partial result)."""
READ_TIMEOUT_MARGIN = 30
"""Seconds the HTTP read waits beyond the server timeout, so the service's timeout answer wins."""
MAX_SERVER_TIMEOUT = 600

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TRUNCATION = ("E_QUERY_RESULT_SET_TOO_LARGE", "80DA0003", "exceed the set limit", "result set has exceeded")


class LogAnalyticsSource(CloudSource):
    """Runs rendered queries (Log Analytics dialect) against one workspace."""

    name = "loganalytics"
    dialect = Dialect.LOG_ANALYTICS

    def __init__(
        self,
        workspace_id: str,
        credential: Any,
        *,
        endpoint: str = "https://api.loganalytics.io",
        server_timeout: int = 180,
        retry: RetryConfig | None = None,
        transport: HttpTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        schema_store: SchemaStore | None = None,
    ) -> None:
        if not workspace_id or not _GUID.fullmatch(workspace_id.strip()):
            raise TelemetrySourceError(
                f"Log Analytics workspace id {workspace_id!r} is not valid: set LOG_ANALYTICS_WORKSPACE_ID "
                "to the workspace id (a GUID, on the workspace's Overview page), not its name or resource id"
            )
        if not 1 <= server_timeout <= MAX_SERVER_TIMEOUT:
            raise TelemetrySourceError(
                f"server timeout {server_timeout} s is not valid: Log Analytics accepts 1 to 600 seconds "
                "(GRADER_QUERY_TIMEOUT_SECONDS)"
            )
        if credential is None:
            raise TelemetrySourceError("the Log Analytics source needs a credential (DefaultAzureCredential)")
        self.workspace_id = workspace_id.strip()
        self.endpoint = endpoint.rstrip("/")
        self.server_timeout = server_timeout
        self._identity = IdentityRecorder(credential)
        self._clock = clock
        self._now = now
        self._retry = GraderRetryPolicy(
            retry or RetryConfig(), service="Log Analytics", sleep=sleep, clock=clock, wall_clock=now
        )
        kwargs: dict[str, Any] = {"endpoint": self.endpoint, "retry_policy": self._retry}
        if transport is not None:
            kwargs["transport"] = transport
        self._client = LogsQueryClient(self._identity, **kwargs)
        self._schema = LiveSchemaCache(self.run, self.dialect, now, store=schema_store)

    # -- protocol (tables, live_schema, latest_event_time, close: CloudSource) -----------------

    def run(self, query: RenderedQuery) -> QueryResult:
        log = RetryLog()
        if query.dialect is not Dialect.LOG_ANALYTICS:
            reason = f"query {query.name} is rendered for {query.dialect.value}; this source runs la"
            return failed(query, reason, log, 0.0)
        last: dict[str, Any] = {}

        def remember(pipeline_response: Any) -> None:
            last["response"] = pipeline_response.http_response

        # The service timespan filters TimeGenerated: as wide as the rendering's own TimeGenerated
        # bound, which reaches past the event window for records that arrived late.
        bounds = la_time_generated_bounds(query.start, query.end)
        timespan = None if bounds is None else (bounds[0].replace(microsecond=0), bounds[1] or self._now())
        started = self._clock()
        try:
            answer = self._client.query_workspace(
                self.workspace_id,
                query.text,
                timespan=timespan,
                server_timeout=self.server_timeout,
                include_statistics=True,
                read_timeout=self.server_timeout + READ_TIMEOUT_MARGIN,
                raw_response_hook=remember,
                **{RETRY_LOG_OPTION: log},
            )
        except HttpResponseError as err:
            return self._failure(query, err, log, self._clock() - started)
        except AzureError as err:  # no answer at all: connection failure or read timeout
            reason = f"no answer from Log Analytics ({type(err).__name__}: {clip(str(err), 200)})"
            return failed(query, reason, log, self._clock() - started)
        elapsed = self._clock() - started
        size = len(_body_bytes(last.get("response")))
        if isinstance(answer, LogsQueryPartialResult):
            return self._partial(query, answer, json_body(last.get("response")), log, size, elapsed)
        try:
            result = _to_result(query, _primary(answer.tables))
        except ValueError as exc:
            reason = f"Log Analytics returned a value the grader cannot read: {exc}"
            return failed(query, reason, log, elapsed)
        if len(result.rows) >= ROW_CAP or size >= SIZE_CAP_BYTES:
            result.complete = False
            result.truncated = True
            result.reason = (
                f"possibly truncated: Log Analytics returned {len(result.rows):,} rows / {size:,} bytes, "
                f"at its limits ({ROW_CAP:,} rows, {SIZE_CAP_BYTES:,} bytes per query)"
            )
        return annotate(result, log, elapsed, size, answer.statistics)

    # -- outcomes -------------------------------------------------------------------------------

    def _partial(
        self, query: RenderedQuery, answer: LogsQueryPartialResult, body: Any, log: RetryLog, size: int,
        elapsed: float,
    ) -> QueryResult:
        messages = error_messages(body) or [getattr(answer.partial_error, "message", "") or "partial result"]
        required, optional = split_missing(unresolved_tables(messages, query.tables))
        if optional and not required:
            return not_checked(query, optional, log, elapsed)
        try:
            result = _to_result(query, _primary(answer.partial_data or []))
        except ValueError:
            result = QueryResult(name=query.name, columns=(), rows=[])
        text = " ".join(messages + error_codes(body)).lower()
        result.truncated = any(marker.lower() in text for marker in _TRUNCATION)
        result.complete = False
        what = "a truncated" if result.truncated else "a partial"
        said = service_reason(body, messages[0])
        reason = f"Log Analytics returned {what} result ({len(result.rows):,} rows): {said}"
        result.reason = with_retries(reason, log)
        return annotate(result, log, elapsed, size, answer.statistics)

    def _failure(
        self, query: RenderedQuery, err: HttpResponseError, log: RetryLog, elapsed: float
    ) -> QueryResult:
        response = err.response
        status = getattr(response, "status_code", None)
        body = json_body(response)
        code = next(iter(error_codes(body)), "")
        said = service_reason(body, clip(str(err.message or err), 300))
        who = self._identity.describe()
        if response is None or status is None:
            if self._identity.token_error is not None:
                return failed(query, token_failure(self.endpoint, self._identity.token_error), log, elapsed)
            return failed(query, f"Log Analytics query failed without an answer: {said}", log, elapsed)
        if status == 401:
            reason = (
                f"Log Analytics rejected the token of {who} (HTTP 401 {code}: {said}). Check the identity "
                f"belongs to the workspace's tenant and LOG_ANALYTICS_ENDPOINT ({self.endpoint}) is the "
                "workspace's cloud"
            )
        elif status == 403:
            reason = (
                f"{who} may not query workspace {self.workspace_id} (HTTP 403 {code}: {said}). Grant it the "
                "'Log Analytics Reader' role (or 'Microsoft Sentinel Reader') on the workspace"
            )
        elif status == 404:
            reason = (
                f"Log Analytics has no workspace {self.workspace_id} (HTTP 404 {code}: {said}); check "
                "LOG_ANALYTICS_WORKSPACE_ID (the workspace id, a GUID) and LOG_ANALYTICS_ENDPOINT"
            )
        elif status == 429:
            reason = f"Log Analytics throttled the query (HTTP 429 {code}: {said})"
        elif status in (408, 504):
            reason = (
                f"the query did not finish within the server timeout ({self.server_timeout} s, "
                f"GRADER_QUERY_TIMEOUT_SECONDS; HTTP {status} {code}: {said})"
            )
        else:
            missing = missing_tables_outcome(query, error_messages(body), log, elapsed, lambda tables: (
                f"required table {tables} is not in workspace {self.workspace_id} "
                f"(HTTP {status} {code}: {said}); connect Microsoft Defender XDR to Microsoft Sentinel "
                "so the workspace receives EmailEvents and CloudAppEvents"))
            if missing is not None:
                return missing
            reason = f"Log Analytics failed the query (HTTP {status} {code}: {said})"
        return failed(query, reason, log, elapsed)


def _primary(tables: list[LogsTable]) -> LogsTable | None:
    for table in tables:
        if table.name == "PrimaryResult":
            return table
    return tables[0] if tables else None


def _to_result(query: RenderedQuery, table: LogsTable | None) -> QueryResult:
    if table is None:
        return QueryResult(name=query.name, columns=(), rows=[])
    pairs = zip(table.columns, table.columns_types, strict=True)
    columns = [(name, kusto_type(ktype)) for name, ktype in pairs]
    rows = list(iter_rows(columns, (_undo_str_none(columns, row) for row in table.rows)))
    return QueryResult(name=query.name, columns=tuple(Column(n, t) for n, t in columns), rows=rows)


def _undo_str_none(columns: list[tuple[str, str]], row: Any) -> list[Any]:
    """azure-monitor-query 2.0 turns every timespan and guid value into ``str(value)``, a null
    into ``"None"``; neither type has "None" as a valid value, so it is a null again here."""
    return [
        None if value == "None" and ktype in ("timespan", "guid") else value
        for (_, ktype), value in zip(columns, row, strict=False)
    ]


def _body_bytes(response: Any) -> bytes:
    if response is None:
        return b""
    try:
        return response.body() or b""
    except Exception:  # a streamed or closed body: size unknown
        return b""


