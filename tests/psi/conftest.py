"""Make ``import psi`` mean the package, not this test folder."""

from __future__ import annotations

import sys
from pathlib import Path


def _prefer_repository_packages() -> None:
    """The root conftest puts tests/ on sys.path, where tests/psi/ (no __init__.py) is found as an
    empty namespace package named ``psi`` before the editable install's finder runs. Put the
    repository root first and forget namespace stand-ins imported before we got here.
    """
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    for name in [n for n in sys.modules if n.split(".")[0] in ("participant_node", "psi")]:
        if getattr(sys.modules[name], "__file__", None) is None:
            del sys.modules[name]


_prefer_repository_packages()
