"""Sweep reports in Blob Storage: one self-contained HTML page per stored sweep.

Why Blob Storage and one page per sweep: the page (:func:`grading.report.render_html`) is what an
analyst opens and shares; Table Storage cannot hold it (an entity is at most 1 MiB) and a page per
sweep id means re-grading a window (an incomplete one, retried) overwrites its report instead of
piling up copies, exactly as the sweep record is replaced.

Blob names are ``<yyyy>/<mm>/<sweepId>.html`` by the window's end, so a month lists as a folder in
the portal or Storage Explorer. Sweep ids are made by :func:`grading.storage.store.sweep_id_for`
and are already safe; anything else is reduced to letters, digits, ``-`` and ``_`` plus a hash of
the original, so no caller can address a blob outside that scheme (``..``, ``/``, ``?``, ``#``).

Transient failures (a timeout, a 5xx, a dropped connection) are retried by the SDK's own storage
retry policy, with short back-offs: the report is written inside a timer run whose time is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings, ExponentialRetry

from grading.errors import ServiceError
from grading.report import HTML_CONTENT_TYPE, render_html
from grading.settings import SettingsError
from grading.storage.connection import StorageConnection

# Retries of one request after its first try, and the back-offs between them (the SDK's formula,
# initial + base**n, so about 3 s, 5 s and 9 s, each +-1 s): the SDK's defaults wait 15 s and more
# before each retry, too long for a page written inside an hourly sweep.
RETRY_TOTAL = 3
RETRY_INITIAL_BACKOFF = 1
RETRY_INCREMENT_BASE = 2
# Seconds to connect and to wait for each response: with the retries, a hung Blob service holds a
# sweep up about three minutes at most, well inside the function timeout (host.json).
CONNECTION_TIMEOUT = 10
READ_TIMEOUT = 30

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_-]+")


class ReportError(ServiceError):
    """The report cannot be written as configured; the message says what to set."""


def report_retry_policy() -> ExponentialRetry:
    """The storage SDK's exponential retry policy with the short back-offs above."""
    return ExponentialRetry(initial_backoff=RETRY_INITIAL_BACKOFF, increment_base=RETRY_INCREMENT_BASE,
                            retry_total=RETRY_TOTAL, random_jitter_range=1)


def safe_sweep_id(sweep_id: str) -> str:
    """*sweep_id* as it may appear in a blob name: itself when it is letters, digits, ``-`` and
    ``_`` (every id :func:`sweep_id_for` makes), else a reduced form plus a hash of the original,
    so two different ids never share a blob."""
    if _SAFE_ID.fullmatch(sweep_id):
        return sweep_id
    digest = hashlib.sha256(sweep_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    reduced = _UNSAFE_RUN.sub("-", sweep_id).strip("-_")[:80]
    return f"{reduced}-{digest}" if reduced else f"sweep-{digest}"


def report_blob_name(sweep: dict[str, Any]) -> str:
    """``<yyyy>/<mm>/<sweepId>.html``, by the (UTC) end of the sweep's window."""
    sweep_id, window_end = sweep.get("sweepId"), sweep.get("windowEnd")
    if not sweep_id or not isinstance(window_end, str):
        raise ReportError("the sweep has no sweepId or windowEnd to name its report by")
    try:
        end = datetime.fromisoformat(window_end.replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(f"the sweep's windowEnd {window_end[:40]!r} is not an ISO 8601 time") from None
    end = end.astimezone(UTC) if end.tzinfo else end.replace(tzinfo=UTC)
    return f"{end:%Y}/{end:%m}/{safe_sweep_id(str(sweep_id))}.html"


@dataclass(frozen=True)
class StoredReport:
    """Where a sweep's report landed."""

    container: str
    blob: str
    url: str

    def as_record(self) -> dict[str, str]:
        """What the sweep record holds under ``report``."""
        return {"container": self.container, "blob": self.blob, "url": self.url}


class ReportStore:
    """Writes each sweep's HTML page to one blob container (GRADER_REPORT_CONTAINER)."""

    def __init__(self, service: BlobServiceClient | None, container: str, *, unavailable: str = "",
                 folder: str = "") -> None:
        self.service = service
        self.container = container
        self.unavailable = unavailable
        self.folder = folder
        """Put before every blob name: ``tenants/<tenant id>/`` for a registered tenant
        (:func:`grading.storage.tenants.tenant_report_folder`), empty for the deployment's own."""

    @classmethod
    def open(cls, connection: StorageConnection, container: str, *, folder: str = "", **options: Any) -> ReportStore:
        """The store on *connection*'s Blob service; *options* go to the client (``transport``,
        ``retry_policy``). Settings that name no Blob service give a store whose every write
        raises :class:`ReportError` saying what to set, so the sweep is still stored without it."""
        options.setdefault("retry_policy", report_retry_policy())
        options.setdefault("connection_timeout", CONNECTION_TIMEOUT)
        options.setdefault("read_timeout", READ_TIMEOUT)
        try:
            service = connection.blob_service(**options)
        except SettingsError as exc:
            return cls(None, container, unavailable=str(exc), folder=folder)
        return cls(service, container, folder=folder)

    def save(self, verdicts: list[dict[str, Any]], sweep: dict[str, Any]) -> StoredReport:
        """Render the sweep's page and write it (replacing an earlier report of the same sweep);
        creates the container on first use if the deployment did not."""
        if self.service is None:
            raise ReportError(self.unavailable or "no Blob service configured")
        name = self.folder + report_blob_name(sweep)
        page = render_html(verdicts, sweep).encode("utf-8")
        blob = self.service.get_blob_client(self.container, name)
        try:
            self._put(blob, page)
        except ResourceNotFoundError as exc:
            if exc.error_code != "ContainerNotFound":
                raise
            with contextlib.suppress(ResourceExistsError):
                self.service.create_container(self.container)
            self._put(blob, page)
        return StoredReport(self.container, name, blob.url)

    @staticmethod
    def _put(blob: Any, page: bytes) -> None:
        blob.upload_blob(page, overwrite=True, content_settings=ContentSettings(content_type=HTML_CONTENT_TYPE))
