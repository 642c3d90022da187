"""Telemetry source: Defender XDR advanced hunting through Microsoft Graph ``runHuntingQuery``.

Why it looks the way it does: advanced hunting has hard limits, and each is handled by name so
a sweep reports *which* limit made a check incomplete instead of grading a partial answer:

- **30 days of data.** A sweep whose settings look further back is refused at construction;
  a query starting earlier than 30 days ago is refused before it is sent.
- **Row cap (100,000 rows).** A result that reaches it is truncated: incomplete.
- **Quotas (HTTP 429).** Calls per minute and a CPU allowance per 15-minute cycle; the body
  says which ("You have exceeded processing resources ... run queries again in 00:09:12").
  Retried within the retry budget, honouring the stated wait; if it persists, incomplete.
- **Per-request timeout.** A query that runs too long fails with the service's words.

POST ``{GRAPH_ENDPOINT}/v1.0/security/runHuntingQuery`` with ``{"Query", "Timespan"}``; the
answer is ``{"schema": [{"name"|"Name", "type"|"Type"}], "results": [{column: value}]}`` with
.NET type names (DateTime, Int64, Boolean, Object ...), mapped here to Kusto types and typed
Python values. Application permission: ThreatHunting.Read.All.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    ProxyPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from grading.cloud.identity import IdentityRecorder, token_failure
from grading.cloud.responses import clip, error_codes, error_messages, json_body, service_reason
from grading.cloud.retry import RETRY_LOG_OPTION, GraderRetryPolicy, RetryConfig, RetryLog
from grading.hunting.rendering import Dialect, RenderedQuery
from grading.settings import WindowSettings
from grading.sources.base import Column, QueryResult, TelemetrySourceError
from grading.sources.cloud_base import (
    CloudSource,
    LiveSchemaCache,
    SchemaStore,
    annotate,
    failed,
    iso_z,
    kusto_type,
    missing_tables_outcome,
    service_bounds,
    to_python,
    utc,
)

RETENTION = timedelta(days=30)
"""Advanced hunting keeps 30 days of data."""
ROW_CAP = 100_000
"""Advanced hunting API: results can return up to 100,000 rows."""
PERMISSION = "ThreatHunting.Read.All"
API_PATH = "/v1.0/security/runHuntingQuery"
READ_TIMEOUT_MARGIN = 30

_AGAIN_IN = re.compile(r"again in\s+(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})", re.IGNORECASE)
_AGAIN_IN_UNITS = re.compile(r"again in\s+(\d+(?:\.\d+)?)\s*(second|minute|hour)s?", re.IGNORECASE)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}


def sweep_lookback(window: WindowSettings) -> timedelta:
    """How far before 'now' a sweep reads: the ingestion delay, then the longest of the graded
    window and the change lookback, then the baseline history before it (docs/architecture.md, "Windows")."""
    graded = max(window.max_window, window.first_window, window.change_lookback)
    return window.ingestion_delay + graded + window.baseline_lookback


def quota_wait(response: HttpResponse) -> float | None:
    """The wait a 429 body states ("You can run queries again in 00:09:12"), in seconds."""
    for message in error_messages(json_body(response)):
        m = _AGAIN_IN.search(message)
        if m:
            days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
            return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)
        m = _AGAIN_IN_UNITS.search(message)
        if m:
            return float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()]
    return None


class DefenderSource(CloudSource):
    """Runs rendered queries (advanced-hunting dialect) through Microsoft Graph."""

    name = "defender"
    dialect = Dialect.ADVANCED_HUNTING

    def __init__(
        self,
        credential: Any,
        *,
        endpoint: str = "https://graph.microsoft.com",
        request_timeout: int = 180,
        window: WindowSettings | None = None,
        retry: RetryConfig | None = None,
        transport: HttpTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        schema_store: SchemaStore | None = None,
    ) -> None:
        if credential is None:
            raise TelemetrySourceError("the Defender source needs a credential (DefaultAzureCredential)")
        if window is not None and sweep_lookback(window) > RETENTION:
            raise TelemetrySourceError(
                f"Defender advanced hunting keeps {RETENTION.days} days of data, but the window settings "
                f"read {_days(sweep_lookback(window))} back (GRADER_INGESTION_DELAY + the longest of "
                "GRADER_MAX_WINDOW, GRADER_FIRST_WINDOW and GRADER_CHANGE_LOOKBACK + "
                "GRADER_BASELINE_LOOKBACK). Shorten GRADER_BASELINE_LOOKBACK, or use "
                "GRADER_SOURCE=loganalytics (Sentinel keeps longer history)"
            )
        self.endpoint = endpoint.rstrip("/")
        self.request_timeout = request_timeout
        self._identity = IdentityRecorder(credential)
        self._clock = clock
        self._now = now
        retry_policy = GraderRetryPolicy(
            retry or RetryConfig(), service="Defender advanced hunting", sleep=sleep, clock=clock,
            wall_clock=now, body_hint=quota_wait,
        )
        policies = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker="connector-grader"),
            ProxyPolicy(),
            ContentDecodePolicy(),
            retry_policy,
            BearerTokenCredentialPolicy(self._identity, f"{self.endpoint}/.default"),
            HttpLoggingPolicy(),
        ]
        kwargs: dict[str, Any] = {"transport": transport} if transport is not None else {}
        self._client: PipelineClient = PipelineClient(base_url=self.endpoint, policies=policies, **kwargs)
        self._schema = LiveSchemaCache(self.run, self.dialect, now, store=schema_store)

    # -- protocol (tables, live_schema, latest_event_time, close: CloudSource) -----------------

    def run(self, query: RenderedQuery) -> QueryResult:
        log = RetryLog()
        if query.dialect is not Dialect.ADVANCED_HUNTING:
            reason = f"query {query.name} is rendered for {query.dialect.value}; the defender source runs ah"
            return failed(query, reason, log, 0.0)
        oldest = self._now() - RETENTION
        if query.start is not None and utc(query.start) < oldest:
            age = _days(self._now() - utc(query.start))
            reason = (
                f"refused: the query starts at {iso_z(query.start)}, {age} ago, but Defender advanced "
                f"hunting keeps {RETENTION.days} days of data (oldest {iso_z(oldest)}); shorten the lookback "
                "or use GRADER_SOURCE=loganalytics"
            )
            return failed(query, reason, log, 0.0)
        body: dict[str, str] = {"Query": query.text}
        bounds = service_bounds(query.start, query.end)
        if bounds is not None:
            start, end = bounds
            body["Timespan"] = iso_z(start) if end is None else f"{iso_z(start)}/{iso_z(end)}"
        request = HttpRequest(
            "POST",
            self.endpoint + API_PATH,
            headers={"Content-Type": "application/json; charset=utf-8", "Accept": "application/json"},
            content=json.dumps(body).encode("utf-8"),  # ASCII-escaped: attacker text stays data
        )
        started = self._clock()
        try:
            response = self._client.send_request(
                request, read_timeout=self.request_timeout + READ_TIMEOUT_MARGIN, **{RETRY_LOG_OPTION: log}
            )
        except ClientAuthenticationError as err:
            cause = self._identity.token_error or err
            return failed(query, token_failure(self.endpoint, cause), log, self._clock() - started)
        except AzureError as err:  # no answer at all: connection failure or read timeout
            reason = f"no answer from Microsoft Graph ({type(err).__name__}: {clip(str(err), 200)})"
            return failed(query, reason, log, self._clock() - started)
        elapsed = self._clock() - started
        if response.status_code == 200:
            return self._success(query, response, log, elapsed)
        return self._failure(query, response, log, elapsed)

    # -- outcomes -------------------------------------------------------------------------------

    def _success(
        self, query: RenderedQuery, response: HttpResponse, log: RetryLog, elapsed: float
    ) -> QueryResult:
        doc = json_body(response)
        if not isinstance(doc, dict):
            return failed(query, "Microsoft Graph answered 200 without a JSON object", log, elapsed)
        schema = _field(doc, "schema") or []
        results = _field(doc, "results") or []
        columns = [
            (str(_field(c, "name")), kusto_type(_field(c, "type"))) for c in schema if isinstance(c, dict)
        ]
        try:
            rows = [_typed_row(columns, row, index) for index, row in enumerate(results)]
        except ValueError as exc:
            return failed(query, f"Defender returned a value the grader cannot read: {exc}", log, elapsed)
        result = QueryResult(name=query.name, columns=tuple(Column(n, t) for n, t in columns), rows=rows)
        if len(rows) >= ROW_CAP:
            result.complete = False
            result.truncated = True
            result.reason = (
                f"truncated: Defender advanced hunting returned {len(rows):,} rows, its row cap "
                f"({ROW_CAP:,} rows per query); rows beyond it were dropped"
            )
        return annotate(result, log, elapsed, len(response.content or b""))

    def _failure(
        self, query: RenderedQuery, response: HttpResponse, log: RetryLog, elapsed: float
    ) -> QueryResult:
        status = response.status_code
        body = json_body(response)
        messages = error_messages(body)
        code = next(iter(error_codes(body)), "")
        said = service_reason(body, f"HTTP {status} {response.reason or ''}".strip())
        lowered = " ".join(messages).lower()
        who = self._identity.describe()
        if status == 401:
            reason = (
                f"Microsoft Graph rejected the token of {who} (HTTP 401 {code}: {said}). Check the identity "
                f"is in the tenant and GRAPH_ENDPOINT ({self.endpoint}) is the tenant's cloud"
            )
        elif status == 403:
            roles = self._identity.roles()
            carried = f"its token carries the roles {', '.join(roles)}" if roles else "its token has no roles"
            reason = (
                f"{who} lacks the Microsoft Graph application permission {PERMISSION} (HTTP 403 {code}: "
                f"{said}; {carried}). Grant {PERMISSION} (application) to it and give admin consent; for a "
                "managed identity, assign the Graph app role to its service principal"
            )
        elif status == 429:
            cpu = "processing resources" in lowered or "cpu" in lowered
            quota = "CPU quota" if cpu else "request-rate quota"
            reason = (
                f"Defender advanced hunting quota reached ({quota}; HTTP 429 {code}: {said}); the tenant may "
                "make 45 calls a minute and has a CPU allowance per 15-minute cycle, so a later sweep "
                "catches up"
            )
        elif status in (408, 504) or "timeout" in lowered or "timed out" in lowered:
            reason = (
                "the query hit Defender advanced hunting's per-request time limit "
                f"(HTTP {status} {code}: {said})"
            )
        else:
            missing = missing_tables_outcome(query, messages, log, elapsed, lambda tables: (
                f"required table {tables} is not available in Defender advanced hunting "
                f"(HTTP {status} {code}: {said}); it needs Defender for Office 365 (EmailEvents) and "
                "Defender for Cloud Apps (CloudAppEvents)"))
            if missing is not None:
                return missing
            if "result size" in lowered:
                reason = f"the result exceeded Defender's result size limit (HTTP {status} {code}: {said})"
                result = failed(query, reason, log, elapsed)
                result.truncated = True
                return result
            else:
                reason = f"Defender advanced hunting failed the query (HTTP {status} {code}: {said})"
        return failed(query, reason, log, elapsed)


def _field(mapping: Any, name: str) -> Any:
    """*name* in a Graph object in whichever case the service used (``schema``/``Schema``)."""
    if not isinstance(mapping, dict):
        return None
    if name in mapping:
        return mapping[name]
    wanted = name.lower()
    return next((v for k, v in mapping.items() if k.lower() == wanted), None)


def _typed_row(columns: list[tuple[str, str]], row: Any, index: int) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise ValueError(f"row {index} is not an object")
    out: dict[str, Any] = {}
    for name, ktype in columns:
        try:
            out[name] = to_python(ktype, row.get(name))
        except ValueError as exc:
            raise ValueError(f"row {index}, column {name} ({ktype}): {exc}") from None
    return out


def _days(span: timedelta) -> str:
    days = span.total_seconds() / 86400
    return f"{days:.1f} days" if days % 1 else f"{days:.0f} days"
