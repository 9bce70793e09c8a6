"""Fixtures shared across the packages' tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def cj_federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Complete Journey demo federation (seed 7), built once per test session. Read only."""
    from loyalfed.datasets.complete_journey import build_complete_journey_federation

    out = tmp_path_factory.mktemp("cj") / "federation"
    build_complete_journey_federation(out, seed=7)
    return out
