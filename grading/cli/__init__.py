"""``python -m grading``: sweep, show queries, keep and act on stored state, simulate, run the demo.

The only place the command line is parsed: one module per group of verbs
(:mod:`~grading.cli.sweep`, :mod:`~grading.cli.schema`, :mod:`~grading.cli.state`,
:mod:`~grading.cli.remediation`, :mod:`~grading.cli.configurations`, :mod:`~grading.cli.dev`); what a
verb does lives in the layers below. Exit codes (the contract): 0 the command completed (a sweep
whatever its verdicts), 2 bad input or usage, 1 anything else (:func:`grading.cli.common.exit_code`). Many tenants:
:mod:`~grading.cli.tenants` (``tenants`` and the ``--tenant`` option).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from grading.cli import configurations, dev, remediation, schema, state, sweep, tenants
from grading.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE, exit_code
from grading.errors import GraderError
from grading.text import install_log_redaction, safe_text

log = logging.getLogger("grading")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grading", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (sweep, schema, dev, state, remediation, tenants, configurations):
        group.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()
    try:
        return int(args.func(args))
    except GraderError as exc:
        code = exit_code(exc)
        if code == EXIT_USAGE:
            print(f"error: {safe_text(str(exc), 2000)}", file=sys.stderr)
        else:
            log.debug("command failed", exc_info=True)
            print(f"error: {type(exc).__name__}: {safe_text(str(exc), 2000)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        return EXIT_ERROR
    except Exception as exc:
        log.debug("command failed", exc_info=True)
        print(f"error: {type(exc).__name__}: {safe_text(str(exc), 2000)}", file=sys.stderr)
        return EXIT_ERROR
