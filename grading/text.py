"""Making attacker-controlled text safe to print or log.

Why: connector names, addresses and subjects come from telemetry an attacker writes. Printed
raw, a newline forges a log line and an escape sequence rewrites the analyst's terminal. Every
such string goes through :func:`safe_text` before it reaches a terminal or a log.

Secrets ride along in error texts too: a storage or webhook URL carries its SAS ``sig=`` or its
path key, an exception may quote an ``Authorization: Bearer`` header or a connection string's
``AccountKey=``. :func:`redact` blanks them; :func:`safe_text` applies it, and so do the audit log,
the sweep's failure record and :class:`grading.cloud.http.ServiceCallError`, so no log line,
terminal, audit row or error message repeats a secret.
"""

from __future__ import annotations

import logging
import re
import traceback
import unicodedata
from typing import Any

REDACTED = "<redacted>"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # A URL query parameter that is a credential: SAS signatures, codes, keys, tokens.
    (re.compile(r"(?i)([?&;](?:sig|signature|code|key|token|access_token|client_secret|secret|password|pwd"
                r"|apikey|api-key)=)[^&#\s\"'<>]+"), rf"\1{REDACTED}"),
    # Webhook URLs are credentials as a whole (Teams, Slack, Logic Apps, Power Automate): keep the host.
    (re.compile(r"(?i)(https?://[^/\s\"'<>]*(?:webhook|hooks\.slack\.com|logic\.azure\.com|"
                r"powerplatform|flow\.microsoft\.com)[^/\s\"'<>]*)/[^\s\"'<>]*"), rf"\1/{REDACTED}"),
    (re.compile(r"(?i)(https?://[^/\s\"'<>]+)/(webhook[^\s\"'<>]*)"), rf"\1/{REDACTED}"),
    # Authorization headers and bare JWTs.
    (re.compile(r"(?i)\b(bearer|sharedaccesssignature)(\s+)[A-Za-z0-9._~+/=%&:-]{16,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Connection-string secrets.
    (re.compile(r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|ClientSecret|Password)=[^;\s\"']+"),
     rf"\1={REDACTED}"),
)


def redact(value: object) -> str:
    """*value* as text with credentials blanked: URL query secrets (``sig=``, ``code=``, ``key=``...),
    webhook URLs past their host, bearer tokens and JWTs, connection-string keys."""
    text = str(value)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def safe_text(value: object, limit: int | None = None) -> str:
    """*value* as one printable line, secrets redacted (:func:`redact`), control and format characters
    shown as escapes, cut at *limit*."""
    text = redact(value)
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"}:
            code = ord(ch)
            out.append(
                {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
                    ch, f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
                )
            )
        else:
            out.append(ch)
    result = "".join(out)
    if limit is not None and len(result) > limit:
        result = result[: max(0, limit - 1)] + "…"
    return result


def install_log_redaction() -> None:
    """Redact every log record this process creates, from any logger (message, arguments and the
    exception's traceback text), whatever handler ships it (the Functions host, Application
    Insights, a terminal). Installed once by :mod:`grading.wiring` and the CLI; idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info))).rstrip("\n")
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
