"""Build the telemetry source the settings ask for, failing at start-up on a bad setting.

Why a factory: the sweep, the CLI and the Functions app all need "the source", and a wrong or
missing setting (no workspace id, an unknown source name, a lookback Defender cannot serve)
must stop the app before the first query with a message naming the setting, not fail
mid-sweep. Heavy imports (azure-identity, the local source's duckdb) happen only for the
source chosen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core.pipeline.transport import HttpTransport

from grading.cloud.retry import RetryConfig
from grading.settings import TelemetrySettings, WindowSettings
from grading.sources.base import TelemetrySource, TelemetrySourceError

SOURCES = ("local", "loganalytics", "defender")


def retry_config(settings: TelemetrySettings) -> RetryConfig:
    """The retry bounds of GRADER_QUERY_MAX_ATTEMPTS and GRADER_QUERY_RETRY_BUDGET_SECONDS."""
    return RetryConfig(
        max_attempts=settings.query_max_attempts, budget_seconds=float(settings.query_retry_budget_seconds)
    )


def default_credential() -> Any:
    """DefaultAzureCredential: the Function App's managed identity in Azure (AZURE_CLIENT_ID picks
    a user-assigned one), a developer's sign-in elsewhere."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def make_source(
    settings: TelemetrySettings,
    *,
    window: WindowSettings | None = None,
    credential: Any = None,
    transport: HttpTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    schema_store: Any = None,
) -> TelemetrySource:
    """The source GRADER_SOURCE names. *window* lets the Defender source refuse, now, a lookback
    past its 30 days; *schema_store* (a ``cloud_base.SchemaStore``) keeps learnt table schemas
    across the sources built for successive runs; *credential*, *transport*, *sleep*, *clock* and
    *now* are for tests.

    Raises :class:`grading.settings.SettingsError` for a bad setting and
    :class:`TelemetrySourceError` for a source that cannot be built.
    """
    if settings.source not in SOURCES:
        raise TelemetrySourceError(
            f"setting GRADER_SOURCE={settings.source!r} is not valid: expected one of: {', '.join(SOURCES)}"
        )
    settings.validate()  # a section built in code skipped load_section's checks
    if window is not None:
        window.validate()
    if settings.source == "local":
        from grading.sources.local import LocalSource

        assert settings.data_dir is not None  # validate() checked it
        skew = (window or WindowSettings()).clock_skew
        return LocalSource(settings.data_dir, not_after=datetime.now(UTC) + skew)
    retry = retry_config(settings)
    credential = credential if credential is not None else default_credential()
    if settings.source == "loganalytics":
        from grading.sources.loganalytics import LogAnalyticsSource

        assert settings.workspace_id is not None  # validate() checked it
        return LogAnalyticsSource(
            settings.workspace_id,
            credential,
            endpoint=settings.log_analytics_endpoint,
            server_timeout=settings.query_timeout_seconds,
            retry=retry,
            transport=transport,
            sleep=sleep,
            clock=clock,
            now=now,
            schema_store=schema_store,
        )
    from grading.sources.defender import DefenderSource

    return DefenderSource(
        credential,
        endpoint=settings.graph_endpoint,
        request_timeout=settings.query_timeout_seconds,
        window=window,
        retry=retry,
        transport=transport,
        sleep=sleep,
        clock=clock,
        now=now,
        schema_store=schema_store,
    )
