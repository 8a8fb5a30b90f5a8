"""The shape of the package, checked: what the README's layout paragraph and each
sub-package's docstring promise (the import contract itself runs in ``make lint``)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import grimp
import pytest

from forwarder.delivery.states import State

PACKAGE = Path(__file__).resolve().parents[1] / "forwarder"
STAGES = ("text", "rules", "imap", "delivery", "gateway", "configfile")
#: The pure core, as pyproject.toml's import contract lists it.
PURE = (
    "forwarder.text",
    "forwarder.rules",
    "forwarder.configfile",
    "forwarder.mail",
    "forwarder.records",
    "forwarder.pipeline",
    "forwarder.delivery.policy",
    "forwarder.delivery.receipts",
    "forwarder.delivery.states",
    "forwarder.gateway.account",
    "forwarder.gateway.request",
    "forwarder.gateway.replies",
    "forwarder.imap.bodystructure",
    "forwarder.ops.status",
    "forwarder.ops.readiness",
    "forwarder.ops.alerts",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def test_there_is_no_import_cycle_at_run_time() -> None:
    graph = grimp.build_graph("forwarder", exclude_type_checking_imports=True)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(edges.get(module, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_says_what_it_holds_and_may_import(stage: str) -> None:
    doc = importlib.import_module(f"forwarder.{stage}").__doc__ or ""
    assert "Holds" in doc
    assert "May import" in doc


def _pure_files() -> list[tuple[str, Path]]:
    return [
        (name, path)
        for name, path in _modules().items()
        if any(name == p or name.startswith(p + ".") for p in PURE)
    ]


@pytest.mark.parametrize(("name", "path"), _pure_files(), ids=lambda v: str(v))
def test_the_pure_core_never_configures_logging(name: str, path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "logging.config" not in imported
    calls = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"basicConfig", "addHandler", "setLevel", "dictConfig"}


def test_no_outbox_state_is_spelled_outside_the_state_machine() -> None:
    """State names live in ``delivery/states.py``; elsewhere code says ``State.X``.

    Not states, so allowed: words of the gateway's replies ("sent" in a message) and a rule
    test's ``held:`` (quiet hours held the mail).
    """
    names = {s.value for s in State}
    allowed = {
        PACKAGE / "delivery" / "states.py",
        PACKAGE / "gateway" / "replies.py",
        PACKAGE / "rules" / "ruletests.py",
    }
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert found == []
