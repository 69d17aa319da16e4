"""The billing package imports nothing but the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

BILLING = Path(__file__).resolve().parents[3] / "src" / "billing"
MODULES = sorted(BILLING.rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside the package
                continue
            assert node.module is not None
            roots.add(node.module.split(".")[0])
    return roots


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BILLING)))
def test_module_imports_only_stdlib_and_billing(path: Path) -> None:
    foreign = {
        root
        for root in imported_roots(path)
        if root != "billing" and root not in sys.stdlib_module_names
    }
    assert not foreign, f"{path.name} imports outside the standard library: {sorted(foreign)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(BILLING)))
def test_module_states_its_job_in_one_line(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path.name} has no module docstring"
    assert docstring.splitlines()[0].strip()
