"""The floor plan, enforced: every import edge between the project's packages points down.

synthcore (the ground floor) imports none of the others; eval and training import only synthcore; builders
imports synthcore and eval; nothing imports training but training itself. Function-local imports count too, so
no import can hide a cycle. Within a package no two files import each other, however indirectly (a circle of files
is one module in all but name, and the first to be imported sees the others half made).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGES = ("synthcore", "builders", "eval", "training")
ALLOWED = {
    "synthcore": {"synthcore"},
    "eval": {"synthcore", "eval"},
    "training": {"synthcore", "training"},
    "builders": {"synthcore", "eval", "builders"},
    "build.py": {"builders"},
    # Benchmarks measure each layer from outside, as the tests do (the probe benchmark times training's loop).
    "benchmarks": {"synthcore", "eval", "builders", "training", "benchmarks"},
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """The project packages a file imports, with the line of each import (top-level or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in PACKAGES}
    return found


def sources() -> list[tuple[str, Path]]:
    files = [("build.py", ROOT / "build.py")]
    for layer in ("synthcore", "builders", "eval", "training", "benchmarks"):
        files += [(layer, path) for path in sorted((ROOT / layer).rglob("*.py"))]
    return files


@pytest.mark.parametrize("layer, path", sources(), ids=lambda x: str(x.relative_to(ROOT)) if isinstance(x, Path) else x)
def test_imports_point_down(layer: str, path: Path):
    allowed = ALLOWED[layer]
    wrong = sorted(
        f"line {line}: imports {package}" for package, line in imported_packages(path) if package not in allowed
    )
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) may import only {sorted(allowed)}: {wrong}"


def test_the_rules_see_every_package():
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    assert packages - {"benchmarks", "tests"} == set(PACKAGES)


def module_file(name: str) -> Path | None:
    """The file of a dotted module name of the project (a package's ``__init__.py``), or None."""
    path = ROOT.joinpath(*name.split("."))
    return next((f for f in (path.with_suffix(".py"), path / "__init__.py") if f.exists()), None)


def imported_files(path: Path) -> set[Path]:
    """The project files a file imports, top-level or not; ``from a.b import c`` imports ``a/b`` and, where it is
    a module, ``a/b/c.py``."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    found = {module_file(name) for name in names if name.split(".")[0] in PACKAGES}
    return found - {None, path}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_circle_between_the_files_of_a_package(package: str):
    files = sorted((ROOT / package).rglob("*.py"))
    graph = {path: {f for f in imported_files(path) if package in f.relative_to(ROOT).parts[:1]} for path in files}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        circle = " -> ".join(str(p.relative_to(ROOT)) for p in err.args[1])
        pytest.fail(f"import circle in {package}: {circle}")
