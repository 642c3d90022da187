"""The newcomer's first run: the prerequisite check, what `make demo` runs, the Chromium installer's
advice where apt-get is missing, and the demo's closing lines.

The prerequisite check is exercised with fake `python3`, `node` and `npm` executables first on
PATH that print old versions, as a machine with Python 3.10 and Node 18 would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "tools" / "check_prereqs.sh"
INSTALL_CHROMIUM = ROOT / "tools" / "install_chromium.sh"


def _fake_tool(folder: Path, name: str, output: str) -> None:
    """An executable *name* in *folder* that prints *output* whatever it is asked."""
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n", encoding="utf-8")
    path.chmod(0o755)


def _check(fakes: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("PY", "NODE", "NPM", "MAKE")}
    environ["PATH"] = f"{fakes}{os.pathsep}{environ.get('PATH', '')}"
    environ.update(env)
    return subprocess.run(["sh", str(CHECK)], capture_output=True, text=True, env=environ, timeout=60, check=False)


def _python_needed() -> str:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    return spec.removeprefix(">=")


def _node_needed() -> str:
    return json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["engines"]["node"].removeprefix(">=")


def test_prerequisite_check_names_each_old_tool_with_found_and_needed_versions(tmp_path: Path) -> None:
    _fake_tool(tmp_path, "python3", "3.10.12")
    _fake_tool(tmp_path, "node", "v18.19.0")
    _fake_tool(tmp_path, "npm", "9.2.0")

    result = _check(tmp_path)

    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    python = next(line for line in lines if line.strip().startswith("Python:"))
    assert "3.10.12" in python and f"needs {_python_needed()} or newer" in python
    node = next(line for line in lines if line.strip().startswith("Node:"))
    assert "18.19.0" in node and f"needs {_node_needed()} or newer" in node
    assert not any(line.strip().startswith("npm:") for line in lines), "npm 9 is new enough"
    assert result.stderr.count("how to get it:") == 2


def test_prerequisite_check_names_missing_tools(tmp_path: Path) -> None:
    _fake_tool(tmp_path, "python3", "3.12.3")
    missing = str(tmp_path / "absent")

    result = _check(tmp_path, NODE=f"{missing}/node", NPM=f"{missing}/npm")

    assert result.returncode == 1
    assert f"Node: {missing}/node not found; needs Node {_node_needed()} or newer" in result.stderr
    assert f"npm: {missing}/npm not found" in result.stderr
    assert "Python:" not in result.stderr


def test_prerequisite_check_passes_quietly_on_new_enough_tools(tmp_path: Path) -> None:
    _fake_tool(tmp_path, "python3", "3.11.4")
    _fake_tool(tmp_path, "node", "v20.11.1")
    _fake_tool(tmp_path, "npm", "10.2.4")
    _fake_tool(tmp_path, "make", "GNU Make 4.3")

    result = _check(tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == "Prerequisites: Python 3.11.4 (python3), Node 20.11.1, npm 10.2.4, make 4.3"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_runs_no_chromium_installer_but_make_test_does() -> None:
    # -B: every target out of date, as in a fresh clone; -n: print the commands, run none. Run as a
    # top-level make even under `make test` (no inherited MAKEFLAGS, no "Entering directory" lines).
    environ = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}

    def planned(target: str) -> str:
        return subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, env=environ,
                              capture_output=True, text=True, timeout=60, check=True).stdout

    demo = planned("demo").splitlines()
    assert not [line for line in demo if "install_chromium" in line]
    assert "check_prereqs.sh" in demo[0], "the prerequisites are checked before anything is installed"
    assert "-m grading demo" in demo[-1]
    assert "install_chromium" in planned("test")


def test_chromium_installer_says_how_to_get_chromium_without_apt_get(tmp_path: Path) -> None:
    # Only what the script needs on PATH: no chromium, no apt-get.
    for tool in ("bash", "id", "cat"):
        (tmp_path / tool).symlink_to(shutil.which(tool))
    environ = {k: v for k, v in os.environ.items() if k != "CHROMIUM"}
    environ["PATH"] = str(tmp_path)

    result = subprocess.run([str(tmp_path / "bash"), str(INSTALL_CHROMIUM)], capture_output=True, text=True,
                            env=environ, timeout=60, check=False)

    assert result.returncode == 1
    assert "apt-get is not available" in result.stderr
    assert "brew install --cask chromium" in result.stderr and "sudo dnf install chromium" in result.stderr
    assert "make demo does not need it" in result.stderr


def test_demo_ends_with_where_the_report_is_and_what_to_run_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import grading.cli.dev
    from grading.cli import main

    monkeypatch.setattr(grading.cli.dev, "run_demo", lambda sample, json_path: 0)

    assert main(["demo", "--json", str(tmp_path / "sweep.json")]) == 0

    out = capsys.readouterr().out
    report = tmp_path / "report.html"
    assert str(report) in out and report.resolve().as_uri() in out
    assert ("open " if sys.platform == "darwin" else "xdg-open ") in out or sys.platform == "win32"
    assert "python -m grading sweep --data" in out
    assert "azd up" in out
