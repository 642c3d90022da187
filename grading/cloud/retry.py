"""The one retry policy both cloud sources use: throttling and transient failures, bounded.

Why our own policy rather than azure-core's ``RetryPolicy``: a sweep runs inside an Azure
Function with a hard timeout, so one query must not retry for minutes. This policy bounds
attempts *and* total time (it does not start a wait plus an attempt that would overrun the
budget), honours the service's ``Retry-After`` (seconds or an HTTP date) or a wait the service
states in its error body (Defender's CPU quota says "run queries again in 00:09:12"), and adds
jitter to exponential backoff so parallel sweeps do not retry in step. What it did is recorded
in a :class:`RetryLog` the caller passes per request, so a source can say "throttled, gave up
after 4 attempts over 95 s" instead of a bare status code.

Sleeping, the clocks and the random source are injectable so tests never wait.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

_LOG = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Throttling (429), request timeout (408) and transient server failures."""

RETRY_LOG_OPTION = "grader_retry_log"
"""Per-request keyword carrying the :class:`RetryLog` through the azure-core pipeline."""


@dataclass(frozen=True)
class RetryConfig:
    """Bounds of the retry policy (``GRADER_QUERY_MAX_ATTEMPTS``, ``..._RETRY_BUDGET_SECONDS``)."""

    max_attempts: int = 4
    budget_seconds: float = 300.0
    base_delay: float = 2.0
    max_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.budget_seconds <= 0 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("retry budget and delays must be positive, max_delay >= base_delay")


@dataclass(frozen=True)
class Attempt:
    outcome: str
    """``HTTP 429`` or the transport error's class name."""
    waited: float
    """Seconds slept after this attempt before the next one (0 for the last attempt)."""


@dataclass
class RetryLog:
    """What the policy did for one request."""

    attempts: list[Attempt] = field(default_factory=list)
    gave_up: str | None = None
    """Why retrying stopped while the service was still failing (None when it succeeded or the
    failure was not worth retrying)."""

    @property
    def count(self) -> int:
        return len(self.attempts)

    @property
    def waited(self) -> float:
        return sum(a.waited for a in self.attempts)

    def summary(self) -> str:
        """E.g. ``4 attempts over 95 s of waiting; gave up: ...`` (empty for a single attempt)."""
        if self.count <= 1 and not self.gave_up:
            return ""
        text = f"{self.count} attempt{'s' if self.count != 1 else ''}, {self.waited:.0f} s spent waiting"
        if self.gave_up:
            text += f"; {self.gave_up}"
        return text


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110)."""
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def retry_after_seconds(headers: Any, now: datetime) -> float | None:
    """The wait the service asks for in its headers (``Retry-After`` or the ms variants)."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value:
        return parse_retry_after(value, now)
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = headers.get(name)
        if value:
            seconds = parse_retry_after(value, now)
            return None if seconds is None else seconds / 1000.0
    return None


BodyHint = Callable[[Any], float | None]
"""Reads a wait from an error response body (the service's own words), or None."""


class GraderRetryPolicy(HTTPPolicy):
    """Retries 408/429/5xx and connection failures within :class:`RetryConfig`'s bounds."""

    def __init__(
        self,
        config: RetryConfig,
        *,
        service: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rand: Callable[[], float] = random.random,
        body_hint: BodyHint | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.service = service
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._rand = rand
        self._body_hint = body_hint

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': between half and all of base * 2^(n-1)."""
        ceiling = min(self.config.max_delay, self.config.base_delay * (2 ** (attempt - 1)))
        return ceiling / 2 + self._rand() * ceiling / 2

    def _wait_for(self, attempt: int, response: PipelineResponse | None) -> float:
        if response is not None:
            asked = retry_after_seconds(response.http_response.headers, self._wall_clock())
            if asked is None and self._body_hint is not None:
                asked = self._body_hint(response.http_response)
            if asked is not None:
                return asked
        return self.backoff(attempt)

    def send(self, request: PipelineRequest) -> PipelineResponse:
        log: RetryLog = request.context.options.pop(RETRY_LOG_OPTION, None) or RetryLog()
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            attempt_started = self._clock()
            response: PipelineResponse | None = None
            error: Exception | None = None
            try:
                response = self.next.send(request)
            except ClientAuthenticationError:
                raise  # no token: retrying cannot help, and the caller explains what to grant
            except (ServiceRequestError, ServiceResponseError) as exc:
                error = exc
            if response is not None and response.http_response.status_code not in RETRY_STATUSES:
                log.attempts.append(Attempt(f"HTTP {response.http_response.status_code}", 0.0))
                return response
            outcome = f"HTTP {response.http_response.status_code}" if response is not None else type(error).__name__
            took = self._clock() - attempt_started
            wait = self._wait_for(attempt, response)
            spent = self._clock() - started
            stop = None
            if attempt >= self.config.max_attempts:
                stop = f"gave up after {attempt} attempts ({outcome})"
            elif spent + wait + took > self.config.budget_seconds:
                # Assume the next attempt takes as long as this one: a query that timed out
                # after minutes is not retried when it cannot finish within the budget.
                stop = (
                    f"gave up after {attempt} attempt{'s' if attempt > 1 else ''} ({outcome}): waiting "
                    f"{wait:.0f} s and retrying would exceed the {self.config.budget_seconds:.0f} s retry "
                    "budget (GRADER_QUERY_RETRY_BUDGET_SECONDS)"
                )
            if stop:
                log.attempts.append(Attempt(outcome, 0.0))
                log.gave_up = stop
                _LOG.warning("%s: %s", self.service, stop)
                if error is not None:
                    raise error
                assert response is not None
                return response
            log.attempts.append(Attempt(outcome, wait))
            _LOG.info(
                "%s answered %s; retrying in %.1f s (attempt %d of %d)",
                self.service, outcome, wait, attempt + 1, self.config.max_attempts,
            )
            self._sleep(wait)
