"""Making attacker-controlled text safe to print or log.

Why: connector names, addresses and subjects come from telemetry an attacker writes. Printed
raw, a newline forges a log line and an escape sequence rewrites the analyst's terminal. Every
such string goes through :func:`safe_text` before it reaches a terminal or a log.
"""

from __future__ import annotations

import unicodedata


def safe_text(value: object, limit: int | None = None) -> str:
    """*value* as one printable line: control and format characters shown as escapes, cut at *limit*."""
    text = str(value)
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
