"""Reading what Microsoft services answer: their error bodies and their time stamps.

Why one module: Log Analytics, Graph (hunting and remediation) and Exchange Online all answer
errors as nested JSON (``error.message``, ``innererror``, ``details``) and times as ISO 8601 with
up to seven fractional digits; every client reads them the same way, so an error names the
service's own most specific words whichever client met it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_REASON_CHARS = 600


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def parse_datetime(text: str) -> datetime:
    """ISO 8601 as Kusto writes it (up to 7 fractional digits) -> timezone-aware UTC."""
    m = _ISO.match(text.strip())
    if not m:
        raise ValueError(f"not an ISO 8601 datetime: {text[:40]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    value = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), micro
    )
    if zone and zone.upper() != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        value -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return value.replace(tzinfo=UTC)


def error_messages(body: Any) -> list[str]:
    """Every message in a service error body, outermost first: ``error.message``, its
    ``innererror`` chain and its ``details`` (Log Analytics nests the useful text deepest)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        message = node.get("message")
        if isinstance(message, str) and message.strip() and message not in out:
            out.append(message.strip())
        for key in ("innererror", "innerError", "details"):
            walk(node.get(key))

    walk(body.get("error", body) if isinstance(body, dict) else body)
    return out


def error_codes(body: Any) -> list[str]:
    """Every ``code`` in a service error body, outermost first."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            code = node.get("code")
            if isinstance(code, str) and code and code not in out:
                out.append(code)
            for key in ("innererror", "innerError", "details"):
                walk(node.get(key))

    walk(body.get("error", body) if isinstance(body, dict) else body)
    return out


def leaf_messages(body: Any) -> list[str]:
    """The most specific messages of a service error body: those of nodes whose inner errors and
    details say nothing more (Log Analytics wraps its real reason in generic outer messages)."""
    out: list[str] = []

    def walk(node: Any) -> bool:
        """Collect leaves under *node*; True when something was collected."""
        if isinstance(node, list):
            return any([walk(item) for item in node])
        if not isinstance(node, dict):
            return False
        found = any([walk(node.get(key)) for key in ("innererror", "innerError", "details")])
        message = node.get("message")
        if not found and isinstance(message, str) and message.strip():
            if message.strip() not in out:
                out.append(message.strip())
            return True
        return found

    walk(body.get("error", body) if isinstance(body, dict) else body)
    return out


def service_reason(body: Any, fallback: str) -> str:
    """The service's own most specific words for a failure, bounded in length."""
    messages = leaf_messages(body)
    return clip(" / ".join(messages) if messages else fallback)


def clip(text: str, limit: int = MAX_REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_body(response: Any) -> Any:
    """The JSON body of an azure-core response, or None when it is not JSON."""
    if response is None:
        return None
    try:
        return json.loads(response.text() or "null")
    except (ValueError, TypeError, AttributeError):
        return None
