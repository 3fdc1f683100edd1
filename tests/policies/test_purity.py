"""policies/ stays sans-I/O: no simulator, broker, torch, clock, threads or sockets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

POLICIES = Path(__file__).resolve().parents[2] / "policies"
FORBIDDEN = {"simpy", "pulsar", "torch", "time", "threading", "asyncio", "socket", "subprocess", "sim", "live"}
FILES = sorted(POLICIES.rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                roots.add(arg.value.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                roots.add(arg.value.split(".")[0])
    return roots


def test_there_are_files_to_check():
    assert len(FILES) > 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(POLICIES)))
def test_no_forbidden_imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = imported_roots(tree) & FORBIDDEN
    assert not bad, f"{path} imports {sorted(bad)}; policies/ must stay sans-I/O"


def test_the_check_catches_forbidden_imports():
    tree = ast.parse("import time\nfrom sim.driver import x\nimport numpy\n__import__('socket')\n")
    assert imported_roots(tree) & FORBIDDEN == {"time", "sim", "socket"}
