"""The Log Analytics and Defender sources against canned service answers.

The answers go through azure-core's real ``RequestsTransport`` with a ``requests`` adapter that
plays back responses in each service's documented JSON shape, so the SDK pipeline (token,
retry, decoding, azure-monitor-query's result models) runs as in production and nothing
reaches the network. Sleeping is a fake clock's: retries are asserted, never waited for.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport

from grading.cloud.retry import GraderRetryPolicy, RetryConfig, parse_retry_after
from grading.hunting.rendering import Dialect, RenderedQuery, la_time_generated_bounds
from grading.settings import SettingsError, TelemetrySettings, WindowSettings, load_section
from grading.sources import loganalytics
from grading.sources.base import TelemetrySource, TelemetrySourceError
from grading.sources.defender import DefenderSource, quota_wait, sweep_lookback
from grading.sources.factory import make_source
from grading.sources.loganalytics import LogAnalyticsSource

WORKSPACE = "4f6a1c3e-9b2d-4e8f-a1b2-c3d4e5f60718"
NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=1)
END = NOW - timedelta(minutes=30)


# ---------------------------------------------------------------------------------------------
# Harness: canned HTTP answers, a credential, a clock


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class CannedService(requests.adapters.HTTPAdapter):
    """Answers each request with the next canned reply and records what was sent."""

    def __init__(self, *replies: Reply) -> None:
        super().__init__()
        self.replies = list(replies)
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        assert self.replies, f"unexpected extra request to {request.url}"
        self.requests.append(request)
        self.timeouts.append(kwargs.get("timeout"))
        reply = self.replies.pop(0)
        if reply.status == 0:  # the connection fails before any answer
            raise requests.exceptions.ConnectionError("connection refused")
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(data),
            headers={"Content-Type": "application/json; charset=utf-8", **reply.headers},
            status=reply.status,
            reason="canned",
            preload_content=False,
        )
        return self.build_response(request, raw)

    def transport(self) -> RequestsTransport:
        session = requests.Session()
        session.mount("https://", self)
        session.mount("http://", self)
        return RequestsTransport(session=session, session_owner=False)

    def body(self, index: int = 0) -> dict[str, Any]:
        return json.loads(self.requests[index].body)


def jwt(claims: dict[str, Any]) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


MI_CLAIMS = {
    "appid": "0b1c2d3e-0000-4000-8000-00000000aaaa",
    "oid": "5e6f7a8b-0000-4000-8000-00000000bbbb",
    "tid": "9c8d7e6f-0000-4000-8000-00000000cccc",
    "xms_mirid": "/subscriptions/x/resourcegroups/rg/providers/Microsoft.Web/sites/func-grader",
    "roles": ["User.Read.All"],
}


class FakeCredential:
    """A TokenCredential handing out a JWT-shaped token for the managed identity above."""

    def __init__(self, claims: dict[str, Any] | None = None, error: Exception | None = None) -> None:
        self.claims = MI_CLAIMS if claims is None else claims
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(jwt(self.claims), int(time.time()) + 3600)


class InfoCredential(FakeCredential):
    """The newer credential protocol (``get_token_info``), as DefaultAzureCredential has."""

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        token = self.get_token(*scopes)
        return AccessTokenInfo(token.token, token.expires_on)


class FakeClock:
    """Monotonic time, wall time and sleep in one; sleeping advances both and is recorded."""

    def __init__(self, now: datetime = NOW) -> None:
        self.wall = now
        self.mono = 1000.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall


def la_query(tables: set[str] | None = None, start: datetime | None = START) -> RenderedQuery:
    return RenderedQuery(
        "connector_volume",
        'EmailEvents | where Connectors == "Contoso \\"relay\\"" | take 10',
        Dialect.LOG_ANALYTICS,
        frozenset(tables or {"EmailEvents"}),
        start,
        END,
    )


def ah_query(tables: set[str] | None = None, start: datetime | None = START, text: str | None = None):
    return RenderedQuery(
        "connector_volume",
        text or "EmailEvents | take 10",
        Dialect.ADVANCED_HUNTING,
        frozenset(tables or {"EmailEvents"}),
        start,
        END,
    )


def build(
    source: str,
    service: CannedService,
    clock: FakeClock,
    credential: FakeCredential | None = None,
    window: WindowSettings | None = None,
    **env: str,
) -> Any:
    settings = load_section(
        TelemetrySettings,
        {"GRADER_SOURCE": source, "LOG_ANALYTICS_WORKSPACE_ID": WORKSPACE, **env},
    )
    return make_source(
        settings,
        window=window,
        credential=credential or FakeCredential(),
        transport=service.transport(),
        sleep=clock.sleep,
        clock=clock.monotonic,
        now=clock.now,
    )


# ---------------------------------------------------------------------------------------------
# Log Analytics: canned answers in the query API's shape (tables / columns / rows, error)

LA_COLUMNS = [
    {"name": "Timestamp", "type": "datetime"},
    {"name": "Connector", "type": "string"},
    {"name": "Messages", "type": "long"},
    {"name": "Recipients", "type": "dynamic"},
    {"name": "IsAdminOperation", "type": "bool"},
    {"name": "Share", "type": "real"},
    {"name": "Gap", "type": "timespan"},
    {"name": "ReportId", "type": "guid"},
]
LA_ROWS = [
    [
        "2025-03-19T11:07:50.7688641Z",
        'Contoso "relay" <x>',
        1342,
        '["fabrikam.com","contoso.com"]',
        True,
        0.25,
        "1.02:03:04.5000000",
        "e2f3a4b5-0000-4000-8000-000000000001",
    ],
    [None, "", None, None, False, None, None, None],
]


def la_tables(rows: list[list[Any]] | None = None) -> dict[str, Any]:
    return {
        "tables": [
            {"name": "PrimaryResult", "columns": LA_COLUMNS, "rows": LA_ROWS if rows is None else rows}
        ]
    }


def la_partial(inner_message: str, rows: list[list[Any]] | None = None) -> dict[str, Any]:
    body = la_tables(rows)
    body["error"] = {
        "code": "PartialError",
        "message": "There were some errors when processing your query.",
        "details": [
            {
                "code": "EngineError",
                "message": "Something went wrong processing your query on the server.",
                "innererror": {
                    "code": "-2133196797",
                    "message": inner_message,
                    "severity": 2,
                    "severityName": "Error",
                },
            }
        ],
    }
    return body


def la_error(code: str, message: str, inner: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "code": code,
        "correlationId": "c0ffee00-0000-4000-8000-000000000000",
    }
    if inner:
        error["innererror"] = inner
    return {"error": error}


def test_la_success_gives_typed_rows_and_sends_the_window_and_server_timeout():
    service, clock, cred = CannedService(Reply(200, la_tables())), FakeClock(), FakeCredential()
    source = build("loganalytics", service, clock, cred)

    result = source.run(la_query())

    assert result.complete and result.reason is None and not result.truncated
    assert [(c.name, c.type) for c in result.columns] == [(c["name"], c["type"]) for c in LA_COLUMNS]
    first, second = result.rows
    assert first == {
        "Timestamp": datetime(2025, 3, 19, 11, 7, 50, 768864, tzinfo=UTC),
        "Connector": 'Contoso "relay" <x>',
        "Messages": 1342,
        "Recipients": ["fabrikam.com", "contoso.com"],
        "IsAdminOperation": True,
        "Share": 0.25,
        "Gap": timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=500),
        "ReportId": "e2f3a4b5-0000-4000-8000-000000000001",
    }
    assert first["Timestamp"].utcoffset() == timedelta(0)
    assert second == {
        "Timestamp": None,
        "Connector": "",
        "Messages": None,
        "Recipients": None,
        "IsAdminOperation": False,
        "Share": None,
        "Gap": None,
        "ReportId": None,
    }

    (sent,) = service.requests
    assert sent.url == f"https://api.loganalytics.io/v1/workspaces/{WORKSPACE}/query"
    assert sent.headers["Authorization"] == "Bearer " + jwt(MI_CLAIMS)
    assert "wait=180" in sent.headers["Prefer"]
    body = service.body()
    assert body["query"] == la_query().text
    lower, upper = body["timespan"].split("/")
    assert datetime.fromisoformat(lower) <= START and datetime.fromisoformat(upper) >= END
    assert cred.scopes == [("https://api.loganalytics.io/.default",)]
    _connect_timeout, read_timeout = service.timeouts[0]
    assert read_timeout > 180, "the HTTP read must outwait the server timeout"
    assert result.stats["attempts"] == 1 and clock.slept == []


def test_la_partial_result_is_incomplete_with_the_service_reason_and_keeps_rows():
    reason = "Partial query failure: Low memory condition (E_LOW_MEMORY_CONDITION). (0x8007000E)"
    service, clock = CannedService(Reply(200, la_partial(reason))), FakeClock()

    result = build("loganalytics", service, clock).run(la_query())

    assert not result.complete and not result.truncated
    assert "E_LOW_MEMORY_CONDITION" in result.reason and "partial" in result.reason
    assert len(result.rows) == 2 and result.rows[0]["Messages"] == 1342


def test_la_result_over_the_size_limit_is_truncated():
    reason = (
        "The results of this query exceed the set limit of 64000000 bytes, so not all records were "
        "returned (E_QUERY_RESULT_SET_TOO_LARGE, 0x80DA0003, see https://aka.ms/kustoquerylimits for more "
        "information and possible solutions)."
    )
    service, clock = CannedService(Reply(200, la_partial(reason))), FakeClock()

    result = build("loganalytics", service, clock).run(la_query())

    assert result.truncated and not result.complete
    assert "E_QUERY_RESULT_SET_TOO_LARGE" in result.reason and "truncated" in result.reason


def test_la_result_at_the_row_cap_without_an_error_is_flagged_possibly_truncated(monkeypatch):
    monkeypatch.setattr(loganalytics, "ROW_CAP", 3)  # 500,000 real rows would only slow the test
    rows = [[f"2025-03-19T1{i}:00:00Z", f"c{i}", i, "[]", False, 0.0, "00:00:01", None] for i in range(3)]
    service, clock = CannedService(Reply(200, la_tables(rows))), FakeClock()

    result = build("loganalytics", service, clock).run(la_query())

    assert result.truncated and not result.complete and "possibly truncated" in result.reason
    assert len(result.rows) == 3


class _Sized:
    """A response body of *n* bytes, without holding them."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize(("size", "flagged"), [(60_000_000, False), (104_000_000, False), (104_857_600, True)])
def test_la_size_flag_is_the_documented_response_limit(monkeypatch, size, flagged):
    """Azure Monitor's service limits: the Log Analytics query API returns at most ~104 MB (~100 MiB)
    of raw data. A complete answer under that is complete (it used to be flagged from 57.6 MB)."""
    assert loganalytics.SIZE_CAP_BYTES == 100 * 1024 * 1024
    monkeypatch.setattr(loganalytics, "_body_bytes", lambda response: _Sized(size))
    service, clock = CannedService(Reply(200, la_tables())), FakeClock()

    result = build("loganalytics", service, clock).run(la_query())

    assert result.complete is not flagged and result.truncated is flagged
    assert ("possibly truncated" in (result.reason or "")) is flagged


def test_la_timespan_covers_the_renderings_time_generated_bound():
    service, clock = CannedService(Reply(200, la_tables())), FakeClock()

    build("loganalytics", service, clock).run(la_query())

    lower, upper = (datetime.fromisoformat(t) for t in service.body()["timespan"].split("/"))
    low_bound, high_bound = la_time_generated_bounds(START, END)
    assert lower <= low_bound and upper >= high_bound


def test_la_429_is_retried_after_retry_after_then_succeeds():
    service = CannedService(
        Reply(429, la_error("ThrottledError", "Too many requests"), {"Retry-After": "7"}),
        Reply(200, la_tables()),
    )
    clock = FakeClock()

    result = build("loganalytics", service, clock).run(la_query())

    assert result.complete and len(result.rows) == 2
    assert clock.slept == [7.0]
    assert len(service.requests) == 2 and result.stats["attempts"] == 2
    assert result.stats["retryWaitSeconds"] == 7.0


def test_la_retry_after_as_an_http_date_is_honoured():
    when = (NOW + timedelta(seconds=42)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    service = CannedService(
        Reply(503, la_error("ServiceUnavailable", "busy"), {"Retry-After": when}), Reply(200, la_tables())
    )
    clock = FakeClock()

    assert build("loganalytics", service, clock).run(la_query()).complete
    assert clock.slept == [42.0]


def test_la_persistent_5xx_gives_up_after_the_attempt_limit_with_backoff():
    replies = [Reply(503, la_error("ServiceUnavailable", "The service is temporarily unavailable"))] * 4
    service, clock = CannedService(*replies), FakeClock()

    result = build("loganalytics", service, clock, GRADER_QUERY_MAX_ATTEMPTS="4").run(la_query())

    assert not result.complete and result.rows == []
    assert "HTTP 503" in result.reason and "temporarily unavailable" in result.reason
    assert "gave up after 4 attempts" in result.reason
    assert len(service.requests) == 4 and len(clock.slept) == 3
    # exponential backoff with jitter: attempt n waits between half and all of 2 s * 2^(n-1)
    for n, waited in enumerate(clock.slept, start=1):
        assert 2.0 * 2 ** (n - 1) / 2 <= waited <= 2.0 * 2 ** (n - 1)


def test_la_connection_failures_are_retried_then_reported_without_raising():
    service, clock = CannedService(Reply(0, None), Reply(0, None), Reply(0, None)), FakeClock()

    result = build("loganalytics", service, clock, GRADER_QUERY_MAX_ATTEMPTS="3").run(la_query())

    assert not result.complete and "no answer from Log Analytics" in result.reason
    assert len(service.requests) == 3 and len(clock.slept) == 2


def test_la_retry_after_longer_than_the_budget_is_not_waited_for():
    service = CannedService(
        Reply(429, la_error("ThrottledError", "Too many requests"), {"Retry-After": "900"})
    )
    clock = FakeClock()

    result = build("loganalytics", service, clock, GRADER_QUERY_RETRY_BUDGET_SECONDS="300").run(la_query())

    assert not result.complete and clock.slept == [] and len(service.requests) == 1
    assert "HTTP 429" in result.reason and "GRADER_QUERY_RETRY_BUDGET_SECONDS" in result.reason


def test_la_403_names_the_role_to_grant_and_the_identity_and_is_not_retried():
    body = la_error(
        "InsufficientAccessError",
        "The provided credentials have insufficient access to perform the requested operation",
    )
    service, clock = CannedService(Reply(403, body)), FakeClock()

    result = build("loganalytics", service, clock).run(la_query())

    assert not result.complete
    assert "Log Analytics Reader" in result.reason and WORKSPACE in result.reason
    assert "managed identity 'func-grader'" in result.reason and MI_CLAIMS["appid"] in result.reason
    assert "insufficient access" in result.reason
    assert len(service.requests) == 1 and clock.slept == []


def test_la_no_token_at_all_says_how_to_get_one_without_sending_the_query():
    service, clock = CannedService(), FakeClock()
    cred = FakeCredential(
        error=ClientAuthenticationError("ManagedIdentityCredential: no managed identity endpoint")
    )

    result = build("loganalytics", service, clock, cred).run(la_query())

    assert not result.complete and service.requests == []
    assert "could not get a token" in result.reason and "managed identity" in result.reason


def semantic_error(name: str) -> dict[str, Any]:
    return la_error(
        "BadArgumentError",
        "The request had some invalid properties",
        {
            "code": "SemanticError",
            "message": "A semantic error occurred.",
            "innererror": {
                "code": "SEM0100",
                "message": f"'extend' operator: Failed to resolve table or column expression named '{name}'",
            },
        },
    )


def test_la_missing_optional_table_is_not_checked():
    service, clock = CannedService(Reply(400, semantic_error("IdentityLogonEvents"))), FakeClock()

    result = build("loganalytics", service, clock).run(la_query({"EmailEvents", "IdentityLogonEvents"}))

    assert result.missing_tables == ("IdentityLogonEvents",) and not result.checked
    assert result.rows == []


def test_la_missing_required_table_is_a_failure_naming_it():
    service, clock = CannedService(Reply(400, semantic_error("CloudAppEvents"))), FakeClock()

    result = build("loganalytics", service, clock).run(la_query({"EmailEvents", "CloudAppEvents"}))

    # Incomplete (never "not checked"), and the table is named so a schema probe knows it is absent.
    assert not result.complete and result.missing_tables == ("CloudAppEvents",)
    assert "required table CloudAppEvents" in result.reason


def test_la_unknown_column_is_a_failure_not_a_missing_table():
    service, clock = CannedService(Reply(400, semantic_error("SenderIPv4x"))), FakeClock()

    result = build("loganalytics", service, clock).run(la_query({"EmailEvents"}))

    assert not result.complete and result.missing_tables == ()
    assert "SenderIPv4x" in result.reason


# ---------------------------------------------------------------------------------------------
# Defender advanced hunting through Graph: {"schema": [...], "results": [...]}

AH_SCHEMA = [
    {"name": "Timestamp", "type": "DateTime"},
    {"name": "Connector", "type": "String"},
    {"name": "Messages", "type": "Int64"},
    {"name": "RawEventData", "type": "Object"},
    {"name": "IPTags", "type": "Object"},
    {"name": "IsAdminOperation", "type": "Boolean"},
    {"name": "Share", "type": "Double"},
    {"name": "Port", "type": "Int32"},
]
AH_RESULTS = [
    {
        "Timestamp": "2025-03-19T11:07:50.7688641Z",
        "Connector": 'Ünïcode relay "x"',
        "Messages": 1342,
        "RawEventData": {"Parameters": [{"Name": "Enabled", "Value": "True"}]},
        "IPTags": '["Tor"]',
        "IsAdminOperation": True,
        "Share": 0.5,
        "Port": 25,
    },
    {
        "Timestamp": "2025-03-19T12:00:00Z",
        "Connector": "",
        "Messages": 0,
        "RawEventData": None,
        "IPTags": None,
        "IsAdminOperation": False,
        "Share": None,
        "Port": None,
    },
]


def graph_error(status_code: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": status_code,
            "message": message,
            "innerError": {"date": "2025-03-20T12:00:00", "request-id": "1f0c7f3e-0000-4000-8000-0000"},
        }
    }


def test_defender_success_maps_the_schema_to_typed_rows_and_posts_query_and_timespan():
    body = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
        "schema": AH_SCHEMA,
        "results": AH_RESULTS,
    }
    service, clock, cred = CannedService(Reply(200, body)), FakeClock(), FakeCredential()
    text = 'EmailEvents | where Connectors == "Ünïcode relay \\"x\\"" | take 10'

    result = build("defender", service, clock, cred).run(ah_query(text=text))

    assert result.complete and not result.truncated
    assert [(c.name, c.type) for c in result.columns] == [
        ("Timestamp", "datetime"),
        ("Connector", "string"),
        ("Messages", "long"),
        ("RawEventData", "dynamic"),
        ("IPTags", "dynamic"),
        ("IsAdminOperation", "bool"),
        ("Share", "real"),
        ("Port", "int"),
    ]
    first, second = result.rows
    assert first["Timestamp"] == datetime(2025, 3, 19, 11, 7, 50, 768864, tzinfo=UTC)
    assert first["Connector"] == 'Ünïcode relay "x"'
    assert first["RawEventData"] == {"Parameters": [{"Name": "Enabled", "Value": "True"}]}
    assert first["IPTags"] == ["Tor"]  # dynamic sent as JSON text is parsed too
    assert (first["Messages"], first["IsAdminOperation"], first["Share"], first["Port"]) == (
        1342,
        True,
        0.5,
        25,
    )
    assert second == {
        "Timestamp": datetime(2025, 3, 19, 12, tzinfo=UTC),
        "Connector": "",
        "Messages": 0,
        "RawEventData": None,
        "IPTags": None,
        "IsAdminOperation": False,
        "Share": None,
        "Port": None,
    }

    (sent,) = service.requests
    assert sent.method == "POST" and sent.url == "https://graph.microsoft.com/v1.0/security/runHuntingQuery"
    assert sent.headers["Authorization"].startswith("Bearer ")
    assert cred.scopes == [("https://graph.microsoft.com/.default",)]
    sent_body = service.body()
    assert sent_body["Query"] == text  # the exact query text, attacker characters kept as data
    assert sent.body.isascii()
    lower, upper = sent_body["Timespan"].split("/")
    assert datetime.fromisoformat(lower) <= START and datetime.fromisoformat(upper) >= END


def test_defender_schema_with_capitalised_keys_is_read_too():
    body = {
        "Schema": [{"Name": "Timestamp", "Type": "DateTime"}, {"Name": "Gap", "Type": "TimeSpan"}],
        "Results": [{"Timestamp": "2025-03-19T11:07:50Z", "Gap": "00:05:00"}],
    }
    service, clock = CannedService(Reply(200, body)), FakeClock()

    result = build("defender", service, clock).run(ah_query())

    assert result.rows == [
        {"Timestamp": datetime(2025, 3, 19, 11, 7, 50, tzinfo=UTC), "Gap": timedelta(minutes=5)}
    ]


def test_defender_result_at_the_row_cap_is_truncated():
    body = {"schema": [{"name": "n", "type": "Int64"}], "results": [{"n": i} for i in range(100_000)]}
    service, clock = CannedService(Reply(200, body)), FakeClock()

    result = build("defender", service, clock).run(ah_query())

    assert result.truncated and not result.complete
    assert "100,000" in result.reason and len(result.rows) == 100_000


def test_defender_429_quota_body_wait_is_honoured_then_succeeds():
    quota = graph_error(
        "TooManyRequests",
        "You have exceeded processing resources allocated to this tenant. "
        "You can run queries again in 00:01:30.",
    )
    service = CannedService(Reply(429, quota), Reply(200, {"schema": AH_SCHEMA, "results": AH_RESULTS}))
    clock = FakeClock()

    result = build("defender", service, clock).run(ah_query())

    assert result.complete and len(result.rows) == 2
    assert clock.slept == [90.0]


def test_defender_persistent_quota_marks_the_query_incomplete_naming_the_quota():
    quota = graph_error(
        "TooManyRequests",
        "You have exceeded processing resources allocated to this tenant. "
        "You can run queries again in 00:00:20.",
    )
    service, clock = CannedService(*[Reply(429, quota)] * 3), FakeClock()

    result = build("defender", service, clock, GRADER_QUERY_MAX_ATTEMPTS="3").run(ah_query())

    assert not result.complete and result.rows == []
    assert "CPU quota" in result.reason and "HTTP 429" in result.reason
    assert "gave up after 3 attempts" in result.reason
    assert clock.slept == [20.0, 20.0]


def test_defender_persistent_5xx_fails_after_bounded_retries():
    service = CannedService(*[Reply(502, graph_error("BadGateway", "upstream failed"))] * 4)
    clock = FakeClock()

    result = build("defender", service, clock).run(ah_query())

    assert not result.complete and "HTTP 502" in result.reason and "upstream failed" in result.reason
    assert len(service.requests) == 4 and len(clock.slept) == 3


def test_defender_403_names_the_missing_graph_permission_and_the_identity():
    body = graph_error(
        "Forbidden",
        "Missing application roles. API required roles: ThreatHunting.Read.All, "
        "application roles: User.Read.All",
    )
    service, clock, cred = CannedService(Reply(403, body)), FakeClock(), InfoCredential()

    result = build("defender", service, clock, cred).run(ah_query())

    assert cred.scopes == [("https://graph.microsoft.com/.default",)]
    assert not result.complete and len(service.requests) == 1
    assert "lacks the Microsoft Graph application permission ThreatHunting.Read.All" in result.reason
    assert "managed identity 'func-grader'" in result.reason and MI_CLAIMS["oid"] in result.reason
    assert "User.Read.All" in result.reason  # what its token does carry


def test_defender_no_token_at_all_says_how_to_get_one_without_sending_the_query():
    service, clock = CannedService(), FakeClock()
    cred = InfoCredential(
        error=ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")
    )

    result = build("defender", service, clock, cred).run(ah_query())

    assert not result.complete and service.requests == []
    assert "could not get a token for https://graph.microsoft.com/.default" in result.reason
    assert "DefaultAzureCredential failed" in result.reason


def test_defender_missing_optional_table_is_not_checked():
    body = graph_error(
        "BadRequest",
        "'where' operator: Failed to resolve table or column expression named "
        "'AADSignInEventsBeta'. Fix semantic errors in your query.",
    )
    service, clock = CannedService(Reply(400, body)), FakeClock()

    result = build("defender", service, clock).run(ah_query({"AADSignInEventsBeta", "CloudAppEvents"}))

    assert result.missing_tables == ("AADSignInEventsBeta",) and not result.checked


def test_defender_per_request_timeout_is_reported_by_name():
    service, clock = (
        CannedService(Reply(400, graph_error("BadRequest", "Query exceeded the timeout period."))),
        FakeClock(),
    )

    result = build("defender", service, clock).run(ah_query())

    assert not result.complete and "per-request time limit" in result.reason
    assert "Query exceeded the timeout period" in result.reason and len(service.requests) == 1


def test_a_query_rendered_for_the_other_dialect_is_refused_without_sending_it():
    service, clock = CannedService(), FakeClock()
    la, ah = build("loganalytics", service, clock), build("defender", service, clock)

    for source, query in ((la, ah_query()), (ah, la_query())):
        result = source.run(query)
        assert not result.complete and "rendered for" in result.reason
    assert service.requests == []


def test_defender_refuses_a_query_older_than_30_days_without_sending_it():
    service, clock = CannedService(), FakeClock()

    result = build("defender", service, clock).run(ah_query(start=NOW - timedelta(days=31)))

    assert not result.complete and service.requests == []
    assert "30 days" in result.reason and "refused" in result.reason


def test_defender_refuses_window_settings_reaching_past_30_days_at_start_up():
    window = load_section(WindowSettings, {"GRADER_BASELINE_LOOKBACK": "28d"})
    assert sweep_lookback(window) > timedelta(days=30)

    with pytest.raises(TelemetrySourceError, match=r"30 days.*GRADER_BASELINE_LOOKBACK"):
        build("defender", CannedService(), FakeClock(), window=window)

    defaults = load_section(WindowSettings, {})
    assert isinstance(build("defender", CannedService(), FakeClock(), window=defaults), DefenderSource)


# ---------------------------------------------------------------------------------------------
# Retry pieces and the factory


def test_retry_after_parses_seconds_and_http_dates():
    assert parse_retry_after("12", NOW) == 12.0
    assert parse_retry_after("Thu, 20 Mar 2025 12:01:00 GMT", NOW) == 60.0
    assert parse_retry_after("Thu, 20 Mar 2025 11:00:00 GMT", NOW) == 0.0  # in the past: no wait
    assert parse_retry_after("soon", NOW) is None


def test_quota_wait_reads_the_wait_stated_in_the_body():
    class Body:
        def __init__(self, message: str) -> None:
            self.message = message

        def text(self) -> str:
            return json.dumps(graph_error("TooManyRequests", self.message))

    assert quota_wait(Body("You can run queries again in 00:09:12.")) == 552.0
    assert quota_wait(Body("Rate limit hit. Try again in 30 seconds")) == 30.0
    assert quota_wait(Body("Too many requests")) is None


def test_backoff_grows_exponentially_and_is_capped():
    policy = GraderRetryPolicy(RetryConfig(base_delay=2, max_delay=10), service="x", rand=lambda: 1.0)
    assert [policy.backoff(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    low = GraderRetryPolicy(RetryConfig(base_delay=2, max_delay=10), service="x", rand=lambda: 0.0)
    assert [low.backoff(n) for n in range(1, 4)] == [1.0, 2.0, 4.0]


def test_factory_builds_each_cloud_source_behind_the_protocol():
    la = build("loganalytics", CannedService(), FakeClock())
    ah = build("defender", CannedService(), FakeClock())
    assert isinstance(la, LogAnalyticsSource) and la.dialect is Dialect.LOG_ANALYTICS
    assert isinstance(ah, DefenderSource) and ah.dialect is Dialect.ADVANCED_HUNTING
    for source in (la, ah):
        assert isinstance(source, TelemetrySource) and source.tables() is None


def test_factory_builds_the_local_source_from_an_export_folder(tmp_path):
    from grading.sources import local

    # a portal export holds only the columns its query projected; the loader fills the rest
    (tmp_path / "EmailEvents.csv").write_text("Timestamp,NetworkMessageId,Connectors\n2025-03-19T10:00:00Z,m-1,Relay\n")
    (tmp_path / "CloudAppEvents.csv").write_text(
        "Timestamp,ActionType\n2025-03-19T09:00:00Z,Set-InboundConnector\n"
    )

    source = make_source(TelemetrySettings(source="local", data_dir=tmp_path))

    assert isinstance(source, local.LocalSource) and isinstance(source, TelemetrySource)
    assert source.dialect is Dialect.ADVANCED_HUNTING


def test_factory_surfaces_a_bad_export_folder_at_start_up(tmp_path):
    with pytest.raises(TelemetrySourceError, match="EmailEvents"):
        make_source(TelemetrySettings(source="local", data_dir=tmp_path))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GRADER_SOURCE": "splunk"}, "GRADER_SOURCE"),
        ({"GRADER_SOURCE": "loganalytics"}, "LOG_ANALYTICS_WORKSPACE_ID"),
        ({"GRADER_SOURCE": "loganalytics", "LOG_ANALYTICS_WORKSPACE_ID": "my-workspace"}, "GUID"),
        ({"GRADER_SOURCE": "local"}, "GRADER_DATA_DIR"),
        ({"GRADER_SOURCE": "defender", "GRAPH_ENDPOINT": "graph.microsoft.com"}, "GRAPH_ENDPOINT"),
        ({"GRADER_SOURCE": "defender", "GRADER_QUERY_MAX_ATTEMPTS": "50"}, "GRADER_QUERY_MAX_ATTEMPTS"),
    ],
)
def test_bad_or_missing_settings_fail_at_start_up_naming_the_setting(env, message):
    with pytest.raises(SettingsError, match=message):
        load_section(TelemetrySettings, env)


def test_factory_checks_a_section_built_in_code():
    with pytest.raises(TelemetrySourceError, match="GRADER_SOURCE"):
        make_source(TelemetrySettings(source="splunk"), credential=FakeCredential())
    with pytest.raises(SettingsError, match="LOG_ANALYTICS_WORKSPACE_ID"):
        make_source(TelemetrySettings(source="loganalytics"), credential=FakeCredential())


def test_la_source_refuses_a_workspace_name_at_construction():
    with pytest.raises(TelemetrySourceError, match="workspace id"):
        LogAnalyticsSource("contoso-sentinel", FakeCredential())


def test_sovereign_cloud_endpoints_set_the_url_and_token_scope():
    service, clock, cred = (
        CannedService(Reply(200, {"schema": [], "results": []})),
        FakeClock(),
        FakeCredential(),
    )
    source = build("defender", service, clock, cred, GRAPH_ENDPOINT="https://graph.microsoft.us/")

    assert source.run(ah_query()).complete
    assert service.requests[0].url == "https://graph.microsoft.us/v1.0/security/runHuntingQuery"
    assert cred.scopes == [("https://graph.microsoft.us/.default",)]
