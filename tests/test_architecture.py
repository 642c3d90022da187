"""The layout keeps its promises: layers import downwards only, no cycles, nothing dev-only deployed,
shared KQL blocks identical, comments that point only inside the repository.

The layers (``docs/architecture.md``), lowest first; a module may import from its own layer or
below, never above:

0. settings, policy, errors, text, classification
1. hunting (queries, schemas, rendering), cloud (HTTP, retry, identity), incident (queue contract)
2. grader, sources, storage, remediation, report
3. sweep, scheduler, tenancy, alert_links
4. wiring
5. cli (and ``__main__``)
6. devtools (never deployed)
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grading"

LAYERS: dict[str, int] = {
    "grading": 0, "grading.settings": 0, "grading.policy": 0, "grading.errors": 0, "grading.text": 0,
    "grading.classification": 0,
    "grading.hunting": 1, "grading.cloud": 1, "grading.incident": 1,
    "grading.grader": 2, "grading.sources": 2, "grading.storage": 2, "grading.remediation": 2, "grading.report": 2,
    "grading.sweep": 3, "grading.scheduler": 3, "grading.tenancy": 3, "grading.alert_links": 3,
    "grading.wiring": 4,
    "grading.cli": 5, "grading.__main__": 5,
    "devtools": 6,
}
LAZY_DEVTOOLS = "grading.cli.dev"
"""The one module allowed to reach up into devtools, and only inside functions (its verbs import the
simulator and Azurite when run, so a deployment without devtools still starts the CLI)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS prefix of *module*; a module no layer names fails loudly."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS and (prefix != "grading" or module == "grading"):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def imports(path: Path, me: str | None = None) -> list[tuple[str, bool]]:
    """(imported grading or devtools module, at module level?) for every import in *path* (module *me*, by
    default the one its place in grading/ names), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = me or module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    in_functions = {id(child) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for child in ast.walk(node) if isinstance(child, (ast.Import, ast.ImportFrom))}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                names = [".".join(base + ([node.module] if node.module else []))]
            else:
                names = [node.module or ""]
            # `from grading.cli import dev` imports the submodule grading.cli.dev
            names += [f"{names[0]}.{a.name}" for a in node.names
                      if _is_module(f"{names[0]}.{a.name}")]
        for name in names:
            if name in ("grading", "devtools") or name.startswith(("grading.", "devtools.")):
                found.append((name, id(node) not in in_functions))
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


@functools.cache
def _graph() -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_runs_down_the_layers() -> None:
    upward = []
    for module, deps in _graph().items():
        for dep, top in deps:
            if layer_of(dep) <= layer_of(module):
                continue
            if module == LAZY_DEVTOOLS and dep.startswith("devtools") and not top:
                continue
            upward.append(f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, deps in _graph().items():
        for dep, _top in deps:
            target = dep if _is_module(dep) else dep.rpartition(".")[0]
            if target != module:
                graph[module].add(target)
    # Tarjan's strongly connected components: any component of two or more modules is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_layer_test_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: an upward import and a lazy devtools import are caught (a probe module read
    as if it were grading/storage/_layer_probe.py, written outside the package)."""
    probe = tmp_path / "_layer_probe.py"
    probe.write_text("from grading.scheduler import plan_window\n\ndef f():\n    import devtools.azurite\n")
    deps = imports(probe, "grading.storage._layer_probe")
    assert ("grading.scheduler", True) in deps and ("devtools.azurite", False) in deps
    assert layer_of("grading.scheduler") > layer_of("grading.storage._layer_probe")


def test_function_app_runs_only_what_wiring_builds() -> None:
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    used = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    used = {name for name in used if name.startswith("grading")}
    assert used == {"grading.wiring"}, f"function_app.py imports {sorted(used)}; only grading.wiring is allowed"


# ---------------------------------------------------------------------------------------------
# What a deployment ships


def deployed_files() -> list[str]:
    """The files `azd deploy` / `func azure functionapp publish` upload: every file of the project
    folder that `.funcignore` (gitignore syntax) lets through, read with git's own matcher."""
    def git(*args: str) -> list[str]:
        out = subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if line]

    ignore = ["--exclude-from", str(ROOT / ".funcignore")]
    tracked_ignored = set(git("ls-files", "--cached", "--ignored", *ignore))
    tracked = [f for f in git("ls-files", "--cached") if f not in tracked_ignored]
    untracked = git("ls-files", "--others", *ignore)  # .venv, node_modules, caches on this machine
    return sorted({*tracked, *untracked})


NEVER_DEPLOYED = ("devtools/", "tests/", "bench/", "node_modules/", "tools/", ".venv/", "infra/", ".git/")


def test_a_deployment_ships_the_app_and_nothing_dev_only() -> None:
    shipped = deployed_files()
    leaks = [f for f in shipped if f.startswith(NEVER_DEPLOYED) or "sample_tenant" in f or "simulate" in f]
    assert not leaks, f"{len(leaks)} dev-only files would be deployed, e.g. {leaks[:5]}: list them in .funcignore"
    for needed in ("function_app.py", "host.json", "requirements.txt", "grading/wiring.py",
                   "grading/hunting/queries/connector_traffic.kql", "grading/report/style.css"):
        assert needed in shipped, f"{needed} is not deployed: .funcignore excludes it"


def test_the_wheel_holds_neither_the_simulator_nor_the_sample_tenant() -> None:
    """What `pip install .` packages, as setuptools finds it from pyproject.toml: the grading packages
    and their data files only (a wheel build here would need a newer setuptools from the network)."""
    import tomllib

    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    packages = find_packages(str(ROOT), include=config["packages"]["find"]["include"])
    assert "grading" in packages and "grading.cli" in packages
    assert not [p for p in packages if not p.startswith("grading")], packages
    data = [pattern for patterns in config["package-data"].values() for pattern in patterns]
    assert not [d for d in data if "devtools" in d or "sample_tenant" in d], data


def test_the_deployed_package_imports_without_devtools(tmp_path: Path) -> None:
    """Copy what a deployment ships and import every deployed module there, devtools absent."""
    import shutil
    import sys

    for rel in deployed_files():
        if rel.startswith("grading/") or rel == "function_app.py":
            dest = tmp_path / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / rel, dest)
    modules = [".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__")
               for p in sorted((tmp_path / "grading").rglob("*.py")) if p.name != "__main__.py"]
    code = ("import importlib, importlib.util, sys\n"
            "sys.path = [sys.argv[1]] + [p for p in sys.path if p not in ('', sys.argv[1])]\n"
            # the development checkout's editable install would otherwise map grading.* back to it
            "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
            "for m in sys.argv[2:]:\n    importlib.import_module(m)\n"
            "import grading; assert grading.__file__.startswith(sys.argv[1]), grading.__file__\n"
            "assert importlib.util.find_spec('devtools') is None, 'devtools is importable'\n"
            "from grading.cli import main; raise SystemExit(main(['queries']))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path), "function_app", *modules],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "connector_traffic" in result.stdout


# ---------------------------------------------------------------------------------------------
# KQL blocks that each file must repeat (every file pastes into Defender alone)

SHARED = re.compile(r"^// shared: (\w+)")


def shared_blocks() -> dict[str, dict[str, str]]:
    """marker -> {file: the marked `let` statement, up to the line that ends it with `;`}."""
    blocks: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted((PACKAGE / "hunting" / "queries").glob("*.kql")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = SHARED.match(line)
            if not m:
                continue
            body = []
            for follow in lines[i + 1:]:
                body.append(follow)
                if follow.rstrip().endswith(";"):
                    break
            blocks[m.group(1)][path.name] = "\n".join(body)
    return blocks


def test_every_shared_kql_block_is_identical_wherever_it_is_pasted() -> None:
    blocks = shared_blocks()
    assert {"connector_admins", "relayed_messages"} <= set(blocks)
    for name, copies in blocks.items():
        assert len(copies) >= 2, f"// shared: {name} marks a single block ({list(copies)}): drop the marker"
        reference_file, reference = next(iter(copies.items()))
        for file, text in copies.items():
            assert text == reference, f"// shared: {name} in {file} differs from {reference_file}:\n{text}"


# ---------------------------------------------------------------------------------------------
# Comments point inside the repository

OUTSIDE = re.compile(r"\b(DESIGN\.md|TABLES\.md|PLAYBOOK\.md|shared/reference)\b|\b[Ii]ssue #?\d+\b|\(issue \d+\)")


@pytest.mark.parametrize("folder", ["grading", "tests", "bench", "tools", "infra"])
def test_comments_point_only_at_files_in_the_repository(folder: str) -> None:
    offenders = []
    for path in sorted((ROOT / folder).rglob("*")):
        if path.suffix not in {".py", ".kql", ".js", ".sh", ".bicep", ".ps1", ".json"} or "sample_tenant" in path.parts:
            continue
        if path.name == "test_architecture.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not offenders, "references outside the repository (move what they need into docs/):\n" + "\n".join(
        offenders[:40])


def test_no_test_skips_over_a_broken_project_import() -> None:
    """``importorskip`` on the project's own modules would turn a broken import into a silent skip."""
    offenders = [f"{p.name}:{n}" for p in sorted((ROOT / "tests").rglob("*.py")) if p.name != "test_architecture.py"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"importorskip\(\s*[\"'](grading|bench|tests)", line)]
    assert not offenders, f"importorskip on project modules: {offenders}"
