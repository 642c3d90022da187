"""The ``schema-check`` verb: how the tenant's tables differ from the schema the grader ships.

Operators run it after Microsoft renames a table or a column: it asks the configured source (or an
export folder) for the live schema of every table the queries read and prints each difference the
grader adapts to (another table name, another column spelling or type, an absent optional column)
or cannot (an absent table, an absent column a query needs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grading.cli.common import EXIT_OK, write_json
from grading.errors import UsageError
from grading.text import safe_text


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "schema-check",
        help="print how the live source's table schemas differ from the shipped schema files",
    )
    p.add_argument("--data", type=Path, help="an export folder instead of the GRADER_SOURCE setting")
    p.add_argument("--json", type=Path, help="also write the resolution as JSON to this file ('-' for stdout)")
    p.set_defaults(func=cmd_schema_check)


def schema_check(source: Any, out: Any = None) -> dict[str, Any]:
    """Learn *source*'s live schema, print its differences to *out*; return the resolution's record."""
    from grading.hunting.live import differences, schema_tables

    out = out or sys.stdout
    learn = getattr(source, "live_schema", None)
    if learn is None:
        raise UsageError(f"the {source.name} source cannot report its live schema")
    resolution = learn(schema_tables(source.dialect))
    lines = differences(resolution)
    print(f"Schema of source {source.name} ({source.dialect.value}) against the shipped schema file:", file=out)
    for line in lines:
        print("  " + safe_text(line, 2000), file=out)
    if not lines:
        print("  no differences", file=out)
    return resolution.record()


def cmd_schema_check(args: argparse.Namespace) -> int:
    if args.data is not None:
        from grading.sources.local import LocalSource

        if not args.data.is_dir():
            raise UsageError(f"--data {args.data}: not a folder; pass the export folder (one file per table)")
        source: Any = LocalSource(args.data)
    else:
        from grading.wiring import telemetry_source

        source = telemetry_source()
    try:
        record = schema_check(source)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if args.json:
        write_json(args.json, record)
    return EXIT_OK
