"""The development verbs: ``demo`` (the bundled sample tenant through Azurite) and ``simulate``.

Why apart: both need the top-level ``devtools`` package of a source checkout (the simulator, the
sample tenant, Azurite), which neither the wheel nor a deployment holds. They import it when run,
never when the CLI starts, so the deployed CLI works without it and these verbs say what is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grading.cli.common import write_json
from grading.cli.state import persist, print_latest
from grading.cli.sweep import print_verdicts, sweep_export
from grading.errors import UsageError
from grading.policy import load_policy
from grading.report import render_html
from grading.scheduler import SweepServices
from grading.settings import StorageSettings, TenantSettings, WindowSettings, load_section
from grading.storage.connection import StorageConnection

CHECKOUT = Path(__file__).resolve().parents[2]
"""The source checkout this package runs from (when it does): ``devtools/`` sits beside ``grading/``."""
SAMPLE_TENANT = CHECKOUT / "devtools" / "sample_tenant"
DEVTOOLS_HINT = "this verb needs a source checkout of the grader (devtools/ beside grading/ is never deployed)"


def _checkout_on_path() -> None:
    """Make the checkout's ``devtools`` importable whatever the working directory (``python -m grading``
    from the checkout root has it already; the ``grading`` script of an editable install does not)."""
    if (CHECKOUT / "devtools" / "__init__.py").is_file() and str(CHECKOUT) not in sys.path:
        sys.path.append(str(CHECKOUT))


def add_parsers(sub: Any) -> None:
    _add_demo(sub)
    _checkout_on_path()
    try:
        from devtools.simulate import add_simulate_parser
    except ImportError:  # a deployment: no simulator
        return
    add_simulate_parser(sub)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="start Azurite, sweep the bundled sample tenant into Table Storage, stop Azurite")
    p.add_argument("--json", type=Path, default=Path(".demo/sweep.json"))
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if not SAMPLE_TENANT.is_dir():
        raise UsageError(f"the bundled sample tenant is missing at {SAMPLE_TENANT}: {DEVTOOLS_HINT}")
    code = run_demo(SAMPLE_TENANT, args.json)
    if code == 0:
        print_demo_next_steps(args.json.with_name("report.html"))
    return code


def run_demo(sample: Path, json_path: Path, out: Any = None) -> int:
    """Start Azurite, sweep the bundled sample tenant into Table Storage, read it back, stop Azurite."""
    _checkout_on_path()
    from devtools.azurite import running_azurite

    out = out or sys.stdout

    print("Starting Azurite (the local Azure Storage emulator) ...", file=out)
    with running_azurite() as azurite:
        settings = StorageSettings(connection_string=azurite.connection_string)
        tenant = load_section(TenantSettings)
        services = SweepServices.connect(StorageConnection.from_settings(settings), settings,
                                         window_settings=load_section(WindowSettings), tenant_settings=tenant,
                                         policy=load_policy(tenant.policy_file))
        print(f"Sweeping the bundled sample tenant ({sample}) ...", file=out)
        result = sweep_export(sample, now=None, window_start=None, policy_path=None)
        graded = persist(services, result, enqueue=True, data=sample, out=out)
        print_verdicts(graded.verdicts, graded.sweep, out=out)
        print("\nRead back from Table Storage (python -m grading verdicts):", file=out)
        print_latest(services.store.latest_verdicts(), out=out)
        queued = services.queue.client.get_queue_properties().approximate_message_count
        print(f"remediation queue {services.queue.name}: {queued} message(s)", file=out)
        write_json(json_path, {"verdicts": graded.verdicts, "sweep": graded.sweep})
        print(f"verdicts written to {json_path}", file=out)
        page = json_path.with_name("report.html")
        page.write_text(render_html(graded.verdicts, graded.sweep), encoding="utf-8")
        print(f"report written to {page} (open it in a browser)", file=out)
    print("Azurite stopped.", file=out)
    return 0


def print_demo_next_steps(report: Path, out: Any = None) -> None:
    """The demo's closing lines: where its report is, how to open it, and what to run next."""
    out = out or sys.stdout
    opener = {"darwin": "open", "win32": "start"}.get(sys.platform, "xdg-open")
    print(
        "\nDone. The sweep's report (one page, no server needed):\n"
        f"  {report}    open it: {opener} {report}   or in a browser: {report.resolve().as_uri()}\n"
        "Next:\n"
        "  sweep your own export (one file per table, EmailEvents and CloudAppEvents at least; README):\n"
        "    .venv/bin/python -m grading sweep --data path/to/export --store memory --html report.html\n"
        "  deploy to a tenant in report mode (it grades and notifies, changes nothing): azd up\n"
        "    (docs/operations.md walks through it)",
        file=out,
    )
