"""The suite's own layout: helpers live in tests/support/, test modules import only from there."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_module_imports_from_a_test_module_or_conftest() -> None:
    sources = [*TESTS.rglob("*.py"), *ROOT.glob("bench/*.py"), *ROOT.glob("demo/*.py")]
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sources
        for module in _imported_modules(path)
        if module.startswith(("tests.test_", "tests.conftest"))
        or (module.startswith("tests.") and not module.startswith("tests.support"))
    }
    assert wrong == set(), "import shared helpers from tests.support instead"


def test_the_tests_folder_holds_only_tests() -> None:
    """A helper module beside the tests would be collected or imported as one of them."""
    stray = sorted(
        path.name
        for path in TESTS.glob("*.py")
        if not path.name.startswith("test_") and path.name not in {"__init__.py", "conftest.py"}
    )
    folders = sorted(
        path.name
        for path in TESTS.iterdir()
        if path.is_dir() and path.name not in {"support", "fixtures", "__pycache__"}
    )
    assert (stray, folders) == ([], [])
