"""Every app setting the grader reads, in one typed place.

Why one place: the Bicep template must set every setting the code reads (a test compares
the two through :data:`ALL_SETTINGS`), and a wrong value must fail at start-up with the
setting's name and what to do, never mid-sweep with a stack trace.

Each section is a frozen dataclass whose fields carry their environment variable, parser
and help text in ``metadata``; :func:`load_section` reads any section from an environment
mapping. Sections are small and owned by the part of the app that uses them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from grading.errors import ConfigurationError

T = TypeVar("T")


class SettingsError(ConfigurationError, ValueError):
    """A setting is missing or has a value the grader cannot use; the message names it."""


# ---------------------------------------------------------------------------------------------
# Parsers: each takes the raw text and returns the typed value or raises ValueError with a hint.

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|min|s|ms)\s*$", re.IGNORECASE)
_SPAN_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "ms": 0.001}


def parse_timespan(text: str) -> timedelta:
    """Parse a KQL-style span (``30m``, ``24h``, ``7d``, ``90s``) or ``HH:MM:SS``."""
    m = _SPAN.match(text)
    if m:
        return timedelta(seconds=float(m.group(1)) * _SPAN_UNITS[m.group(2).lower()])
    parts = text.strip().split(":")
    if len(parts) == 3 and all(p.strip().replace(".", "", 1).isdigit() for p in parts):
        h, mi, s = (float(p) for p in parts)
        return timedelta(hours=h, minutes=mi, seconds=s)
    raise ValueError("expected a duration such as 30m, 24h, 7d or 01:30:00")


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("expected a whole number") from None


def parse_positive_int(text: str) -> int:
    value = parse_int(text)
    if value <= 0:
        raise ValueError("expected a whole number above 0")
    return value


def parse_non_negative_int(text: str) -> int:
    value = parse_int(text)
    if value < 0:
        raise ValueError("expected a whole number, 0 or more")
    return value


def parse_list(text: str) -> tuple[str, ...]:
    """Comma- or semicolon-separated values; blanks dropped; order kept."""
    return tuple(item.strip() for item in re.split(r"[;,]", text) if item.strip())


def parse_domain_list(text: str) -> tuple[str, ...]:
    return tuple(d.lower().lstrip("@") for d in parse_list(text))


def parse_str(text: str) -> str:
    return text.strip()


def parse_path(text: str) -> Path:
    return Path(text.strip()).expanduser()


def parse_https_origin(text: str) -> str:
    """An ``https://host[:port]`` service endpoint (a sovereign cloud's, for instance), no path."""
    value = text.strip().rstrip("/")
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d{1,5})?", value):
        raise ValueError("expected an https endpoint such as https://graph.microsoft.com (no path)")
    return value


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        low = text.strip().lower()
        if low not in choices:
            raise ValueError("expected one of: " + ", ".join(choices))
        return low

    parse.__doc__ = "one of " + ", ".join(choices)
    return parse


def setting(env: str, parse: Callable[[str], Any], default: Any, help: str) -> Any:
    """Declare a dataclass field read from environment variable *env*.

    *default* is a typed value (``None`` where there is no default and the value is optional;
    :data:`REQUIRED` where the section cannot work without it).
    """
    meta = {"env": env, "parse": parse, "help": help}
    if default is REQUIRED:
        return dataclasses.field(metadata={**meta, "required": True})
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for list defaults so settings stay immutable")
    return dataclasses.field(default=default, metadata=meta)


REQUIRED: Any = object()

S = TypeVar("S")


def load_section(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read one settings section from *environ* (default: ``os.environ``)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata["env"]
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            if f.metadata.get("required"):
                raise SettingsError(
                    f"setting {name} is required ({f.metadata['help']}); set it in the app settings "
                    "or the environment"
                )
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise SettingsError(f"setting {name}={raw!r} is not valid: {exc}") from None
    section = cls(**values)
    check = getattr(section, "validate", None)
    if callable(check):
        check()
    return section


# ---------------------------------------------------------------------------------------------
# Sections


@dataclasses.dataclass(frozen=True)
class TelemetrySettings:
    """Where the hunting queries run."""

    source: str = setting(
        "GRADER_SOURCE",
        one_of("local", "loganalytics", "defender"),
        "local",
        "telemetry source: local (an export folder), loganalytics (Sentinel workspace) or defender "
        "(Defender advanced hunting through Microsoft Graph)",
    )
    data_dir: Path | None = setting(
        "GRADER_DATA_DIR", parse_path, None, "export folder read by the local source"
    )
    workspace_id: str | None = setting(
        "LOG_ANALYTICS_WORKSPACE_ID", parse_str, None, "Log Analytics workspace id (a GUID) for loganalytics"
    )
    query_timeout_seconds: int = setting(
        "GRADER_QUERY_TIMEOUT_SECONDS",
        parse_positive_int,
        180,
        "server-side timeout of one hunting query, in seconds (Log Analytics allows up to 600)",
    )
    log_analytics_endpoint: str = setting(
        "LOG_ANALYTICS_ENDPOINT",
        parse_https_origin,
        "https://api.loganalytics.io",
        "Log Analytics query endpoint; change it only for a sovereign cloud (e.g. https://api.loganalytics.us)",
    )
    graph_endpoint: str = setting(
        "GRAPH_ENDPOINT",
        parse_https_origin,
        "https://graph.microsoft.com",
        "Microsoft Graph endpoint for defender; change it only for a national cloud (e.g. https://graph.microsoft.us)",
    )
    query_max_attempts: int = setting(
        "GRADER_QUERY_MAX_ATTEMPTS",
        parse_positive_int,
        4,
        "how many times one hunting query is sent when the service throttles (429) or fails (5xx); 1 to 10",
    )
    query_retry_budget_seconds: int = setting(
        "GRADER_QUERY_RETRY_BUDGET_SECONDS",
        parse_positive_int,
        300,
        "the longest one hunting query may take including its retries and waits; past it the query is "
        "reported incomplete rather than retried",
    )

    def validate(self) -> None:
        if self.source == "local" and self.data_dir is None:
            raise SettingsError("setting GRADER_DATA_DIR is required when GRADER_SOURCE=local")
        if self.source == "loganalytics":
            if not self.workspace_id:
                raise SettingsError(
                    "setting LOG_ANALYTICS_WORKSPACE_ID is required when GRADER_SOURCE=loganalytics"
                )
            if not re.fullmatch(r"[0-9a-fA-F-]{36}", self.workspace_id):
                raise SettingsError(
                    f"setting LOG_ANALYTICS_WORKSPACE_ID={self.workspace_id!r} is not valid: expected the "
                    "workspace id (a GUID), not its name or resource id"
                )
        if self.query_timeout_seconds > 600:
            raise SettingsError(
                f"setting GRADER_QUERY_TIMEOUT_SECONDS={self.query_timeout_seconds} is not valid: "
                "the query services stop at 600 seconds"
            )
        if self.query_max_attempts > 10:
            raise SettingsError(
                f"setting GRADER_QUERY_MAX_ATTEMPTS={self.query_max_attempts} is not valid: expected at "
                "most 10, so a throttled service is not hammered"
            )


@dataclasses.dataclass(frozen=True)
class WindowSettings:
    """How much time a sweep grades and how far back it looks."""

    ingestion_delay: timedelta = setting(
        "GRADER_INGESTION_DELAY",
        parse_timespan,
        timedelta(minutes=30),
        "how far behind the clock live telemetry is complete; a sweep grades up to now minus this",
    )
    first_window: timedelta = setting(
        "GRADER_FIRST_WINDOW", parse_timespan, timedelta(hours=24), "what a first sweep grades"
    )
    change_lookback: timedelta = setting(
        "GRADER_CHANGE_LOOKBACK",
        parse_timespan,
        timedelta(days=7),
        "how far back connector configuration changes and admin logons are examined",
    )
    baseline_lookback: timedelta = setting(
        "GRADER_BASELINE_LOOKBACK",
        parse_timespan,
        timedelta(days=14),
        "history used to learn what is normal for each connector and admin",
    )
    max_window: timedelta = setting(
        "GRADER_MAX_WINDOW",
        parse_timespan,
        timedelta(days=3),
        "the longest window one sweep grades when catching up; older missed hours are caught up in steps",
    )
    evaluation_span: timedelta = setting(
        "GRADER_EVALUATION_SPAN",
        parse_timespan,
        timedelta(hours=24),
        "the least traffic a verdict judges: an hourly sweep still weighs each connector's last 24 h, so "
        "thresholds and volume bands do not shrink to one hour",
    )
    clock_skew: timedelta = setting(
        "GRADER_CLOCK_SKEW",
        parse_timespan,
        timedelta(minutes=15),
        "how far past this machine's clock an exported event may be dated: later rows are excluded from "
        "the sweep and reported (a stray row dated 2099 must not move --now), and --now may not be later",
    )

    sweep_deadline: timedelta = setting(
        "GRADER_SWEEP_DEADLINE",
        parse_timespan,
        timedelta(minutes=20),
        "how long one sweep may spend sending hunting queries; past it the remaining queries are not sent and "
        "the sweep is recorded incomplete with that reason (retried by the next run). Keep it below the "
        "host's functionTimeout (host.json, 30 minutes) minus one query's GRADER_QUERY_RETRY_BUDGET_SECONDS",
    )

    def validate(self) -> None:
        if self.sweep_deadline < timedelta(minutes=1):
            raise SettingsError("setting GRADER_SWEEP_DEADLINE is not valid: expected at least 1m")
        for name, value in (
            ("GRADER_FIRST_WINDOW", self.first_window),
            ("GRADER_CHANGE_LOOKBACK", self.change_lookback),
            ("GRADER_BASELINE_LOOKBACK", self.baseline_lookback),
            ("GRADER_MAX_WINDOW", self.max_window),
            ("GRADER_EVALUATION_SPAN", self.evaluation_span),
        ):
            if value < timedelta(hours=1):
                raise SettingsError(f"setting {name}={value} is not valid: expected at least 1h")
        if self.ingestion_delay < timedelta(0):
            raise SettingsError("setting GRADER_INGESTION_DELAY is not valid: expected 0 or more")
        if self.clock_skew < timedelta(0):
            raise SettingsError("setting GRADER_CLOCK_SKEW is not valid: expected 0 or more")


@dataclasses.dataclass(frozen=True)
class TenantSettings:
    """Facts about the tenant the telemetry cannot always tell."""

    tenant_domains: tuple[str, ...] = setting(
        "GRADER_TENANT_DOMAINS",
        parse_domain_list,
        (),
        "the tenant's own mail domains, added to those inferred from the data (comma-separated)",
    )
    policy_file: Path | None = setting(
        "GRADER_POLICY_FILE", parse_path, None, "JSON file overriding the grading policy's defaults"
    )
    own_object_ids: tuple[str, ...] = setting(
        "GRADER_OWN_OBJECT_IDS",
        parse_list,
        (),
        "object ids of the grader's own identity (comma-separated): its remediation (Set-…Connector "
        "-Enabled $false) is not a configuration change to grade",
    )


def parse_name_list(text: str) -> tuple[str, ...]:
    """Names that may themselves hold commas: a JSON array of strings (exact names), or a comma- or
    semicolon-separated list for the common case."""
    stripped = text.strip()
    if stripped.startswith("["):
        import json

        try:
            values = json.loads(stripped)
        except ValueError:
            raise ValueError('expected a JSON array of names such as ["Partner relay"]') from None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError("expected a JSON array of strings")
        return tuple(v.strip() for v in values if v.strip())
    return parse_list(stripped)


def parse_https_url(text: str) -> str:
    """An ``https://`` URL with a path (an incoming-webhook URL, which is itself a secret)."""
    value = text.strip()
    if not re.fullmatch(r"https://[A-Za-z0-9.-]+(:\d{1,5})?/\S*", value):
        raise ValueError("expected an https:// URL such as the Teams or Slack incoming-webhook URL")
    return value


@dataclasses.dataclass(frozen=True)
class RemediationSettings:
    """What the queue-triggered remediation may do, and where it acts .

    Safe by default: ``report`` mode performs nothing; every action that changes the tenant beyond
    disabling the connector and revoking a compromised admin's sessions is an opt-in."""

    mode: str = setting(
        "REMEDIATION_MODE", one_of("report", "enforce"), "report",
        "report (record and notify what would be done, change nothing) or enforce (act)",
    )
    protected_connectors: tuple[str, ...] = setting(
        "REMEDIATION_PROTECTED_CONNECTORS", parse_name_list, (),
        "connectors never touched whatever the verdict (comma-separated, or a JSON array for names "
        "with commas); matched without regard to case; prefix Inbound: or Outbound: to protect one kind only",
    )
    max_disables_per_hour: int = setting(
        "REMEDIATION_MAX_DISABLES_PER_HOUR", parse_non_negative_int, 3,
        "connectors disabled or removed per clock hour at most; the rest wait for `python -m grading "
        "approve ACTION_ID` (0: every disable waits for approval)",
    )
    allow_remove: bool = setting(
        "REMEDIATION_ALLOW_REMOVE", parse_bool, False,
        "opt-in: remove a connector created by the attacker instead of only disabling it",
    )
    allow_revert: bool = setting(
        "REMEDIATION_ALLOW_REVERT", parse_bool, False,
        "opt-in: restore a changed connector's previous SenderIPAddresses/SmartHosts",
    )
    revoke_sessions: bool = setting(
        "REMEDIATION_REVOKE_SESSIONS", parse_bool, True,
        "revoke the sign-in sessions of an admin the verdict says is compromised (Graph revokeSignInSessions)",
    )
    disable_account: bool = setting(
        "REMEDIATION_DISABLE_ACCOUNT", parse_bool, False,
        "opt-in: disable the compromised admin's account",
    )
    require_password_change: bool = setting(
        "REMEDIATION_REQUIRE_PASSWORD_CHANGE", parse_bool, False,
        "opt-in: force the compromised admin to change password at next sign-in",
    )
    alert_writeback: bool = setting(
        "REMEDIATION_ALERT_WRITEBACK", parse_bool, False,
        "opt-in: write classification, determination and an evidence comment to the linked Defender alerts",
    )
    resweep: bool = setting(
        "REMEDIATION_RESWEEP", parse_bool, True,
        "request an immediate sweep of all connectors after a true positive (read-only)",
    )
    sweep_request_queue: str = setting(
        "SWEEP_REQUEST_QUEUE", parse_str, "grader-sweep-requests",
        "queue on which remediation asks for an immediate sweep of all connectors",
    )
    webhook_url: str | None = setting(
        "REMEDIATION_WEBHOOK_URL", parse_https_url, None,
        "Teams or Slack incoming-webhook URL notified of every incident and action (a secret: use a "
        "Key Vault reference)",
    )
    exchange_tenant_id: str | None = setting(
        "EXCHANGE_TENANT_ID", parse_str, None,
        "the tenant id (GUID) or initial domain whose Exchange Online connectors are remediated",
    )
    exchange_organization: str | None = setting(
        "EXCHANGE_ORGANIZATION_DOMAIN", parse_str, None,
        "the tenant's initial domain (contoso.onmicrosoft.com), used to route app-only Exchange calls",
    )
    exchange_endpoint: str = setting(
        "EXCHANGE_ENDPOINT", parse_https_origin, "https://outlook.office365.com",
        "Exchange Online endpoint; change it only for a national cloud (e.g. https://outlook.office365.us)",
    )
    graph_endpoint: str = setting(
        "GRAPH_ENDPOINT", parse_https_origin, "https://graph.microsoft.com",
        "Microsoft Graph endpoint; change it only for a national cloud (e.g. https://graph.microsoft.us)",
    )

    def validate(self) -> None:
        if self.mode == "enforce":
            for env, value in (("EXCHANGE_TENANT_ID", self.exchange_tenant_id),
                               ("EXCHANGE_ORGANIZATION_DOMAIN", self.exchange_organization)):
                if not value:
                    raise SettingsError(f"setting {env} is required when REMEDIATION_MODE=enforce")
        org = self.exchange_organization
        if org and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", org):
            raise SettingsError(
                f"setting EXCHANGE_ORGANIZATION_DOMAIN={org!r} is not valid: expected a domain such as "
                "contoso.onmicrosoft.com"
            )
        tenant = self.exchange_tenant_id
        if tenant and not re.fullmatch(r"[0-9a-fA-F-]{36}|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", tenant):
            raise SettingsError(
                f"setting EXCHANGE_TENANT_ID={tenant!r} is not valid: expected the tenant id (a GUID) or "
                "its initial domain"
            )

    def protects(self, connector: str, connector_type: str = "") -> bool:
        """Whether *connector* is on the protected list (Exchange names ignore case).

        An entry ``Inbound:Name`` or ``Outbound:Name`` protects only that kind, so an attacker's
        Outbound connector named like a protected Inbound one is not shielded; a bare name protects
        both kinds."""
        name = connector.strip().casefold()
        kind = connector_type.strip().casefold()
        for entry in self.protected_connectors:
            prefix, sep, rest = entry.partition(":")
            if sep and prefix.strip().casefold() in ("inbound", "outbound"):
                if prefix.strip().casefold() == kind and rest.strip().casefold() == name:
                    return True
            elif entry.strip().casefold() == name:
                return True
        return False


def parse_ncrontab(text: str) -> str:
    """A Functions timer schedule: six NCRONTAB fields (second minute hour day month weekday)."""
    value = " ".join(text.split())
    fields = value.split(" ")
    if len(fields) != 6 or not all(re.fullmatch(r"[0-9A-Za-z*/,-]+", f) for f in fields):
        raise ValueError("expected six NCRONTAB fields such as '0 5 * * * *' "
                         "(second minute hour day month weekday)")
    return value


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    """Where the grader keeps its state (Table and Queue Storage) and when it sweeps .

    Locally ``AzureWebJobsStorage`` is a connection string (Azurite's, or ``UseDevelopmentStorage=true``).
    In Azure the app uses its managed identity: the Functions host's identity-based
    ``AzureWebJobsStorage__*`` settings, read here too so the app and the host share one account."""

    connection_string: str | None = setting(
        "AzureWebJobsStorage", parse_str, None,
        "storage connection string, for local runs and Azurite only; in Azure use the identity-based "
        "AzureWebJobsStorage__* settings",
    )
    account_name: str | None = setting(
        "AzureWebJobsStorage__accountName", parse_str, None,
        "storage account name (identity-based): the service URIs default to its public-cloud endpoints",
    )
    table_service_uri: str | None = setting(
        "AzureWebJobsStorage__tableServiceUri", parse_https_origin, None,
        "Table service URI (identity-based), e.g. https://<account>.table.core.windows.net",
    )
    queue_service_uri: str | None = setting(
        "AzureWebJobsStorage__queueServiceUri", parse_https_origin, None,
        "Queue service URI (identity-based), e.g. https://<account>.queue.core.windows.net",
    )
    blob_service_uri: str | None = setting(
        "AzureWebJobsStorage__blobServiceUri", parse_https_origin, None,
        "Blob service URI (identity-based): the Functions host keeps its timer locks there and the "
        "grader its sweep reports",
    )
    credential: str | None = setting(
        "AzureWebJobsStorage__credential", one_of("managedidentity"), None,
        "managedidentity to use the app's managed identity (with __clientId for a user-assigned one)",
    )
    client_id: str | None = setting(
        "AzureWebJobsStorage__clientId", parse_str, None,
        "client id of the user-assigned managed identity that reaches storage",
    )
    table_prefix: str = setting(
        "GRADER_TABLE_PREFIX", parse_str, "grader",
        "prefix of the grader's table names (letters and digits, starts with a letter)",
    )
    remediation_queue: str = setting(
        "REMEDIATION_QUEUE", parse_str, "grader-remediation",
        "queue that receives one message per true-positive incident (lowercase letters, digits, hyphens)",
    )
    report_container: str = setting(
        "GRADER_REPORT_CONTAINER", parse_str, "sweep-reports",
        "blob container that receives one self-contained HTML report per stored sweep, named "
        "<yyyy>/<mm>/<sweepId>.html (3-63 lowercase letters, digits and single hyphens)",
    )
    sweep_schedule: str = setting(
        "SWEEP_SCHEDULE", parse_ncrontab, "0 5 * * * *",
        "NCRONTAB schedule of the sweep timer (default hourly at minute 5)",
    )
    retention_days: int = setting(
        "GRADER_RETENTION_DAYS", parse_positive_int, 90,
        "verdicts, sweep records and incidents older than this many days are removed by the daily cleanup",
    )
    incomplete_retries: int = setting(
        "GRADER_INCOMPLETE_RETRIES", parse_non_negative_int, 3,
        "how many more times the timer re-grades a window whose sweep was incomplete before moving on",
    )

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,39}", self.table_prefix):
            raise SettingsError(
                f"setting GRADER_TABLE_PREFIX={self.table_prefix!r} is not valid: expected 1-40 letters and "
                "digits starting with a letter"
            )
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,55}[a-z0-9]", self.remediation_queue):
            raise SettingsError(
                f"setting REMEDIATION_QUEUE={self.remediation_queue!r} is not valid: expected 3-57 lowercase "
                "letters, digits and single hyphens (the host adds -poison for the poison queue)"
            )
        if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", self.report_container):
            raise SettingsError(
                f"setting GRADER_REPORT_CONTAINER={self.report_container!r} is not valid: expected 3-63 "
                "lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
            )
        if self.client_id and self.credential != "managedidentity":
            raise SettingsError(
                "setting AzureWebJobsStorage__clientId needs AzureWebJobsStorage__credential=managedidentity"
            )
        if self.account_name and not re.fullmatch(r"[a-z0-9]{3,24}", self.account_name):
            raise SettingsError(
                f"setting AzureWebJobsStorage__accountName={self.account_name!r} is not valid: expected 3-24 "
                "lowercase letters and digits"
            )


@dataclasses.dataclass(frozen=True)
class TenancySettings:
    """Many tenants from one deployment (docs/architecture.md, "Many tenants"): the queues of the
    fan-out and of the tenants' incidents, and the multi-tenant app the grader signs in to a customer
    tenant as. Nothing here is needed for one tenant: with an empty tenant registry the deployment
    behaves as it always did."""

    sweep_queue: str = setting(
        "TENANT_SWEEP_QUEUE", parse_str, "grader-tenant-sweeps",
        "queue of tenant sweeps: the hourly fan-out puts one message per due tenant on it, and a queue trigger "
        "sweeps that tenant (lowercase letters, digits, hyphens)",
    )
    remediation_queue: str = setting(
        "TENANT_REMEDIATION_QUEUE", parse_str, "grader-tenant-remediation",
        "queue of the registered tenants' true-positive incidents, each message naming its tenant "
        "(lowercase letters, digits, hyphens)",
    )
    app_client_id: str | None = setting(
        "TENANT_APP_CLIENT_ID", parse_str, None,
        "client id of the multi-tenant app registration whose federated identity credential is the app's "
        "managed identity; customer tenants consent to it (empty: no tenant can use the federated credential)",
    )
    max_concurrent_sweeps: int = setting(
        "TENANT_MAX_CONCURRENT_SWEEPS", parse_positive_int, 8,
        "tenant sweeps running at once across every instance; a sweep beyond it waits on the queue and is "
        "tried again a minute later",
    )

    def validate(self) -> None:
        for env, name in (("TENANT_SWEEP_QUEUE", self.sweep_queue),
                          ("TENANT_REMEDIATION_QUEUE", self.remediation_queue)):
            if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,55}[a-z0-9]", name):
                raise SettingsError(
                    f"setting {env}={name!r} is not valid: expected 3-57 lowercase letters, digits and single "
                    "hyphens (the host adds -poison for the poison queue)"
                )
        client = self.app_client_id
        if client and not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", client):
            raise SettingsError(
                f"setting TENANT_APP_CLIENT_ID={client!r} is not valid: expected the app registration's client "
                "id (a GUID)"
            )


ALL_SECTIONS: tuple[type, ...] = (
    TelemetrySettings, WindowSettings, TenantSettings, RemediationSettings, StorageSettings, TenancySettings,
)


def all_settings() -> dict[str, str]:
    """Every environment variable the code reads through a section, with its help text."""
    out: dict[str, str] = {}
    for cls in ALL_SECTIONS:
        for f in dataclasses.fields(cls):
            out[f.metadata["env"]] = f.metadata["help"]
    return out
