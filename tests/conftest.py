"""Fixtures shared across the packages' tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresUnavailable, running_postgres


@pytest.fixture(scope="session")
def cj_federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Complete Journey demo federation (seed 7), built once per test session. Read only."""
    from loyalfed.datasets.complete_journey import build_complete_journey_federation

    out = tmp_path_factory.mktemp("cj") / "federation"
    build_complete_journey_federation(out, seed=7)
    return out


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A SQLAlchemy URL of a real PostgreSQL server started for this test session (skips with the reason)."""
    try:
        with running_postgres() as url:
            yield url
    except PostgresUnavailable as err:
        pytest.skip(f"PostgreSQL store tests skipped: {err}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One store contract, two backends: a SQLite file and a fresh database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    from tests.postgres_server import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def in_a_flower_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps every Message with the run, node and task it belongs to, and a ServerApp runs
    inside one: tests that drive a ServerApp's strategy or grid in-process set that identity."""
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


@pytest.fixture(autouse=True)
def _state_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """State-changing CLI commands append audit events (loyalfed.cli.audit_trail) to the data
    directory's log: keep each test's in its own folder, never in the working directory."""
    monkeypatch.setenv("LOYALFED_DATA_DIR", str(tmp_path / "loyalfed-state"))


# A slow test's expected seconds on 2 quiet cores, unless its mark says (``slow(seconds=450)``).
_SLOW_DEFAULT_S = 30


def _expected_seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("slow")
    return 0.0 if mark is None else float(mark.kwargs.get("seconds", _SLOW_DEFAULT_S))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: when the suite is spread over workers (pytest-xdist, as ``make test`` does),
    the longest files start at once on separate workers instead of trailing after the short ones
    (longest-processing-time-first scheduling)."""
    items.sort(key=lambda item: -_expected_seconds(item))
