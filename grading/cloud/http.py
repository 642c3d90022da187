"""The one HTTP pipeline the remediation clients share (Exchange Online, Microsoft Graph, webhooks).

Why one builder: the Exchange and Graph clients must retry the same way (honour ``Retry-After`` on
429, back off on 5xx, bounded in attempts and time so the queue-triggered function never runs into
its timeout) and fail the same way: a :class:`ServiceCallError` whose message says what to fix (grant a
permission or role, check the connector name, wait for throttling). The retry policy is the
telemetry sources' :class:`~grading.cloud.retry.GraderRetryPolicy`, not a second one.

One addition: a service can say a failure is permanent even under a 5xx status (the Exchange admin
API answers a cmdlet's own error, such as an unknown connector, with HTTP 500 "Error executing
cmdlet"). :class:`StopRetrying` lets a client mark such answers so they are not retried.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    ContentDecodePolicy,
    HeadersPolicy,
    HTTPPolicy,
    ProxyPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse

from grading.cloud.identity import IdentityRecorder, token_failure
from grading.cloud.responses import clip, leaf_messages
from grading.cloud.retry import RETRY_LOG_OPTION, GraderRetryPolicy, RetryConfig, RetryLog
from grading.errors import ServiceError
from grading.text import redact

DEFAULT_RETRY = RetryConfig(max_attempts=4, budget_seconds=120.0, base_delay=2.0, max_delay=30.0)
"""Bounded well inside the Functions timeout: a throttled action is retried by the queue later."""


class ErrorKind(StrEnum):
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "notFound"
    THROTTLED = "throttled"
    BAD_REQUEST = "badRequest"
    UNAVAILABLE = "unavailable"


TRANSIENT = frozenset({ErrorKind.THROTTLED, ErrorKind.UNAVAILABLE})


class ServiceCallError(ServiceError):
    """A remediation service refused or failed a request; ``str(exc)`` says what to fix."""

    def __init__(self, kind: ErrorKind, message: str, *, service: str, status: int | None = None) -> None:
        super().__init__(redact(message))  # never a SAS signature, webhook URL or token in an error
        self.kind = kind
        self.service = service
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth retrying later (the queue redelivers the message)."""
        return self.kind in TRANSIENT


class StopRetrying(AzureError):
    """Raised inside the pipeline for an answer that retrying cannot change; carries the response."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("permanent service error")
        self.answer = response


class PermanentErrorPolicy(HTTPPolicy):
    """Sits inside the retry policy: an answer *is_permanent* recognises leaves the pipeline at once."""

    def __init__(self, is_permanent: Callable[[HttpResponse], bool]) -> None:
        super().__init__()
        self._is_permanent = is_permanent

    def send(self, request: PipelineRequest) -> PipelineResponse:
        response = self.next.send(request)
        if response.http_response.status_code >= 500 and self._is_permanent(response.http_response):
            raise StopRetrying(response.http_response)
        return response


def json_of(response: HttpResponse) -> Any:
    try:
        return json.loads(response.text() or "null")
    except (ValueError, TypeError):
        return None


def service_words(response: HttpResponse) -> str:
    """The service's own most specific words for an error answer, bounded."""
    messages = leaf_messages(json_of(response))
    return clip(" / ".join(messages) if messages else f"HTTP {response.status_code}", 500)


def retry_after_hint(response: HttpResponse) -> str:
    value = response.headers.get("Retry-After")
    return f" (it asked to wait {value} s)" if value else ""


class ServiceClient:
    """An azure-core pipeline for one service: token, retries, and error mapping by the caller.

    *credential* is an azure-identity ``TokenCredential`` (``None`` for an unauthenticated endpoint
    such as an incoming webhook, whose URL is the secret); *scope* the token scope."""

    def __init__(
        self,
        *,
        service: str,
        endpoint: str,
        credential: Any = None,
        scope: str | None = None,
        retry: RetryConfig = DEFAULT_RETRY,
        transport: HttpTransport | None = None,
        is_permanent: Callable[[HttpResponse], bool] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.service = service
        self.endpoint = endpoint.rstrip("/")
        self.identity = IdentityRecorder(credential) if credential is not None else None
        self.last_retries = RetryLog()
        policies: list[Any] = [
            RequestIdPolicy(),
            HeadersPolicy(),
            UserAgentPolicy(sdk_moniker="connector-grader-remediation"),
            ProxyPolicy(),
            ContentDecodePolicy(),
            GraderRetryPolicy(retry, service=service, sleep=sleep, clock=clock, wall_clock=now),
        ]
        if is_permanent is not None:
            policies.append(PermanentErrorPolicy(is_permanent))
        if self.identity is not None:
            policies.append(BearerTokenCredentialPolicy(self.identity, scope or f"{self.endpoint}/.default"))
        kwargs: dict[str, Any] = {"transport": transport} if transport is not None else {}
        self._client: PipelineClient = PipelineClient(base_url=self.endpoint, policies=policies, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def who(self) -> str:
        return self.identity.describe() if self.identity is not None else "the caller"

    def send(
        self, method: str, url: str, *, body: Any = None, headers: Mapping[str, str] | None = None,
    ) -> HttpResponse:
        """Send one request through the pipeline and return the final answer (after retries).

        Raises :class:`ServiceCallError` only when no answer came (no token, no connection); an error
        *answer* is returned for the client to explain with its own words."""
        all_headers = {"Accept": "application/json"}
        content = None
        if body is not None:
            all_headers["Content-Type"] = "application/json; charset=utf-8"
            content = json.dumps(body).encode("utf-8")  # ASCII-escaped: attacker text stays data
        all_headers.update(headers or {})
        request = HttpRequest(method, url, headers=all_headers, content=content)
        self.last_retries = RetryLog()
        try:
            return self._client.send_request(request, **{RETRY_LOG_OPTION: self.last_retries})
        except StopRetrying as stop:
            return stop.answer
        except ClientAuthenticationError as err:
            cause = (self.identity.token_error if self.identity else None) or err
            raise ServiceCallError(ErrorKind.AUTHENTICATION, token_failure(self.endpoint, cause),
                               service=self.service) from None
        except AzureError as err:
            raise ServiceCallError(
                ErrorKind.UNAVAILABLE,
                f"no answer from {self.service} ({type(err).__name__}: {clip(str(err), 200)}); the queue "
                "retries the message later",
                service=self.service,
            ) from None

    def error(self, response: HttpResponse, what: str, *, permission: str, not_found: str) -> ServiceCallError:
        """The :class:`ServiceCallError` for an error answer to *what* (e.g. ``Set-InboundConnector``),
        with *permission* (what to grant) and *not_found* (what is missing) in the caller's words."""
        status = response.status_code
        words = service_words(response)
        retries = self.last_retries.summary()
        tail = f" [{retries}]" if retries else ""
        if status == 401:
            kind, text = ErrorKind.AUTHENTICATION, (
                f"{self.service} did not accept the token of {self.who()} for {what} ({words}); check that "
                "the identity belongs to the tenant and the app registration is consented"
            )
        elif status == 403:
            kind, text = ErrorKind.PERMISSION, (
                f"{self.service} refused {what} for {self.who()}: missing permission or role. {permission} "
                f"(service said: {words})"
            )
        elif status == 404:
            kind, text = ErrorKind.NOT_FOUND, f"{what}: {not_found} (service said: {words})"
        elif status == 429:
            kind, text = ErrorKind.THROTTLED, (
                f"{self.service} is throttling {what}{retry_after_hint(response)}; the queue retries the "
                f"message later (service said: {words})"
            )
        elif status >= 500:
            kind, text = ErrorKind.UNAVAILABLE, (
                f"{self.service} failed {what} with HTTP {status}; the queue retries the message later "
                f"(service said: {words})"
            )
        else:
            kind, text = ErrorKind.BAD_REQUEST, f"{self.service} rejected {what} (HTTP {status}): {words}"
        return ServiceCallError(kind, text + tail, service=self.service, status=status)
