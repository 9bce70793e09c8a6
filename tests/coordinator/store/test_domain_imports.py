"""The control plane's domain and store never import the web framework (routes stay the only edge)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3] / "coordinator"
WEB = ("fastapi", "starlette", "uvicorn")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["platform", "store"])
def test_domain_modules_do_not_import_the_web_framework(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if n.split(".")[0] in WEB)
        for path in modules
    }
    assert {path: names for path, names in offenders.items() if names} == {}
