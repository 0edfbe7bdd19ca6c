"""The tests mirror the packages, and reach what they share through fixtures: a test module
imports nothing from tests/ (helpers live in conftest.py files and tests/support/), and no test
module but this one sits directly in tests/."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imports_of_tests(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level or module == "tests" or module.startswith("tests."):
                found.append(
                    f"{path.relative_to(TESTS)}:{node.lineno} from {'.' * node.level}{module}"
                )
        elif isinstance(node, ast.Import):
            found += [
                f"{path.relative_to(TESTS)}:{node.lineno} import {alias.name}"
                for alias in node.names
                if alias.name == "tests" or alias.name.startswith("tests.")
            ]
    return found


def test_no_test_module_imports_from_tests():
    imports = [
        line for path in sorted(TESTS.rglob("test_*.py")) for line in _imports_of_tests(path)
    ]
    assert imports == [], "use a fixture (conftest.py) instead:\n" + "\n".join(imports)


def test_test_modules_sit_in_the_folder_of_their_package():
    loose = sorted(path.name for path in TESTS.glob("test_*.py") if path.name != "test_layout.py")
    assert loose == []
