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

T = TypeVar("T")


class SettingsError(ValueError):
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

    def validate(self) -> None:
        for name, value in (
            ("GRADER_FIRST_WINDOW", self.first_window),
            ("GRADER_CHANGE_LOOKBACK", self.change_lookback),
            ("GRADER_BASELINE_LOOKBACK", self.baseline_lookback),
            ("GRADER_MAX_WINDOW", self.max_window),
        ):
            if value < timedelta(hours=1):
                raise SettingsError(f"setting {name}={value} is not valid: expected at least 1h")
        if self.ingestion_delay < timedelta(0):
            raise SettingsError("setting GRADER_INGESTION_DELAY is not valid: expected 0 or more")


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


ALL_SECTIONS: tuple[type, ...] = (TelemetrySettings, WindowSettings, TenantSettings)


def all_settings() -> dict[str, str]:
    """Every environment variable the code reads through a section, with its help text."""
    out: dict[str, str] = {}
    for cls in ALL_SECTIONS:
        for f in dataclasses.fields(cls):
            out[f.metadata["env"]] = f.metadata["help"]
    return out
