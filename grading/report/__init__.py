"""A sweep as JSON, Markdown and one self-contained HTML page.

How to call it (CLI ``sweep --html/--markdown``, the scheduled sweep writing to blob storage)::

    from grading.report import render_html
    page = render_html(result.verdicts, result.sweep)      # str; store as UTF-8, text/html

Input is exactly the sweep JSON's two parts (``{"verdicts": [...], "sweep": {...}}`` from
:mod:`grading.sweep`), so a stored sweep document renders the same page later.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from grading.report.markdown import render_markdown_text
from grading.report.page import CSP, DATA_ELEMENT_ID, render_page

__all__ = ["CSP", "DATA_ELEMENT_ID", "HTML_CONTENT_TYPE", "render_html", "render_json", "render_markdown", "write_text"]

HTML_CONTENT_TYPE = "text/html; charset=utf-8"


def render_html(verdicts: list[dict[str, Any]], sweep: dict[str, Any], *, generated_at: datetime | None = None) -> str:
    """One self-contained HTML page (no scripts, fonts or external resources) of the sweep."""
    return render_page(verdicts, sweep, generated_at=generated_at)


def render_markdown(verdicts: list[dict[str, Any]], sweep: dict[str, Any]) -> str:
    """The sweep as Markdown: overview tables by classification, then each flagged connector."""
    return render_markdown_text(verdicts, sweep)


def render_json(verdicts: list[dict[str, Any]], sweep: dict[str, Any]) -> str:
    """The sweep document ``{"verdicts", "sweep"}`` as JSON text (the CLI's ``--json`` shape)."""
    return json.dumps({"verdicts": verdicts, "sweep": sweep}, indent=2, ensure_ascii=False, default=str) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write a rendered report as UTF-8 (``-`` writes to stdout), creating the folder if needed."""
    if str(path) == "-":
        sys.stdout.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
