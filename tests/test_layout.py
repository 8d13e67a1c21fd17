"""The harness's layout: no import cycles among the suite's modules, and imports that run only in the directions
each sub-package's docstring allows (``suite/<package>/__init__.py``). Every import counts — at module level, inside
a function (a lazy import is still a dependency) and ``importlib.import_module("mlo_bench.…")`` with a literal —
except those under ``if TYPE_CHECKING:``, which never run."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "suite"
PREFIX = "mlo_bench.suite"

#: what each sub-package may NOT import (the directions of the architecture; see each package's docstring)
FORBIDDEN = {
    "contract": ("cli", "run", "certify", "report", "measure", "models", "plugins"),
    "engine": ("cli", "certify", "report"),
    "models": ("cli", "run", "certify", "report", "measure", "plugins"),
    "measure": ("cli", "certify", "report"),
    "plugins": ("cli", "run", "certify", "report", "engine", "measure", "models"),
    "run": ("cli", "certify", "report"),
    "certify": ("cli", "report"),
    "report": ("cli", "run", "certify", "engine", "measure", "models"),
}
#: the one module of another package the report may read: the records it is a reader of
REPORT_MAY_READ = ("run.records",)


def module_name(path: Path, root: Path = SUITE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PREFIX, *parts])


def modules(root: Path = SUITE) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports(path: Path, known: set[str]) -> set[str]:
    """The suite modules ``path`` imports. ``from pkg import module`` counts as both ``pkg`` and ``pkg.module``:
    Python runs ``pkg/__init__.py`` before the module, so a package's ``__init__`` must not import back."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in known:  # mlo_bench.suite.engine.trees.tree_map -> mlo_bench.suite.engine.trees
            name = name.rpartition(".")[0]
        if name.startswith(PREFIX):
            found.add(name)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            add(node.module)
            for alias in node.names:
                add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node.args[0].value)
    return found


def graph(root: Path = SUITE) -> dict[str, set[str]]:
    mods = modules(root)
    known = set(mods)
    return {name: {d for d in imports(path, known) if d != name}
            for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def package(name: str) -> str:
    rest = name[len(PREFIX) + 1:]
    return rest.split(".")[0] if rest else ""


def violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, deps in sorted(g.items()):
        for dst in sorted(deps):
            rel = dst[len(PREFIX) + 1:]
            if package(src) == "report" and rel in REPORT_MAY_READ:
                continue
            if package(dst) in FORBIDDEN.get(package(src), ()):
                bad.append(f"{src} imports {dst}")
    return bad


def test_the_suite_has_no_import_cycles():
    assert cycles(graph()) == []


def test_imports_follow_the_architecture():
    assert violations(graph()) == []


def test_the_checks_fail_on_a_back_import(tmp_path):
    """The two checks above catch what they are for: a copy of the suite with the engine importing the CLI back
    (a cycle: the CLI reaches the engine through a run) is flagged by both."""
    import shutil

    copy = tmp_path / "suite"
    shutil.copytree(SUITE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    loop = copy / "engine" / "loop.py"
    loop.write_text(loop.read_text() + "\n\ndef _back():\n    from mlo_bench.suite.cli import main  # noqa: F401\n")
    g = graph(copy)
    assert any("mlo_bench.suite.engine.loop" in c for c in cycles(g))
    assert "mlo_bench.suite.engine.loop imports mlo_bench.suite.cli" in violations(g)


@pytest.mark.parametrize("package_dir", sorted(p.parent.name for p in SUITE.glob("*/__init__.py")))
def test_each_sub_package_says_what_lives_there_and_what_it_may_import(package_dir):
    doc = ast.get_docstring(ast.parse((SUITE / package_dir / "__init__.py").read_text())) or ""
    assert len(doc.split()) >= 20, f"suite/{package_dir}/__init__.py: a docstring saying what lives there"
    for other in FORBIDDEN.get(package_dir, ()):
        assert f"``{other}``" in doc, f"suite/{package_dir}: the docstring names what it may not import ({other})"


def test_every_suite_module_is_small():
    """Files stay about one thing: none over 400 lines."""
    big = {str(p.relative_to(ROOT)): n for p in SUITE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert big == {}


def test_old_module_paths_still_import_with_a_deprecation_warning():
    """A plugin written before the layout (``from mlo_bench.suite.optim import OptimizerConfig``) runs unmodified."""
    from mlo_bench.suite import MOVED

    for old, new in MOVED.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mod = importlib.import_module(f"{PREFIX}.{old}")
        assert mod is importlib.import_module(f"{PREFIX}.{new}"), old
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught), old
    # two old modules are packages now, re-exporting what they held
    from mlo_bench.suite.cli import main
    from mlo_bench.suite.cli.commands import main as commands_main
    from mlo_bench.suite.measure import CpuPeakRSS, PhaseTimer, instruments

    assert main is commands_main and (CpuPeakRSS, PhaseTimer) == (instruments.CpuPeakRSS, instruments.PhaseTimer)
