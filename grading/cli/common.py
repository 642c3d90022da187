"""What every group of verbs shares: exit codes, instants, JSON and table output.

Exit codes (the contract): 0 the command completed (a sweep whatever its verdicts), 2 bad input or
usage, 1 anything else. :func:`exit_code` is the one place that maps the error families of
:mod:`grading.errors` to them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from grading.errors import CALLER_ERRORS

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def exit_code(error: BaseException) -> int:
    """2 for the families that are the caller's to fix (usage, configuration, input), else 1."""
    return EXIT_USAGE if isinstance(error, CALLER_ERRORS) else EXIT_ERROR


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; a value without a zone is refused (the grader works in UTC)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-11-20T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC")
    return value.astimezone(UTC)


def write_json(path: Path, doc: Any) -> None:
    """*doc* as indented JSON to *path*, or to stdout for ``-``."""
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str)
    if str(path) == "-":
        sys.stdout.write(text + "\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def print_table(rows: list[tuple[str, ...]], out: Any) -> None:
    """Rows as aligned columns; the last column is left free (it holds long notes)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + "  " + r[-1], file=out)
