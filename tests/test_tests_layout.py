"""The tests' own floor plan: a test module reads on its own, importing shared code only from the helper modules."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

HELPERS = {"tests.helpers", "tests.handmade", "tests.hubserver"}  # what test modules may import from tests/


def imported_test_modules(source: str) -> set[str]:
    """The modules under ``tests`` that ``source`` imports, top-level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("tests.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "tests":
            found |= {f"tests.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests."):
            found.add(node.module)
    return found


def test_no_test_module_imports_another_test_module():
    imports = {
        path.name: imported_test_modules(path.read_text(encoding="utf-8")) for path in (ROOT / "tests").glob("*.py")
    }
    wrong = {name: sorted(modules - HELPERS) for name, modules in sorted(imports.items()) if modules - HELPERS}
    assert not wrong, f"import shared test code from {sorted(HELPERS)} only: {wrong}"


def test_the_check_sees_every_form_of_import():
    source = "import tests.test_a\nfrom tests import test_b\ndef f():\n    from tests.test_c import x\n"
    assert imported_test_modules(source) == {"tests.test_a", "tests.test_b", "tests.test_c"}
