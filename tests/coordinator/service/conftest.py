"""Fixtures of the coordinator service tests: a fresh state directory, an in-process app, a federation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from coordinator.service import CoordinatorSettings, create_app
from tests.coordinator.service.coordinator_federation import Federation, populate


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "coordinator-state"


@pytest.fixture
def client(state_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(CoordinatorSettings(state_dir=state_dir, superlink=False))) as test_client:
        yield test_client


@pytest.fixture
def federation(client: TestClient, state_dir: Path) -> Federation:
    return populate(client, (state_dir / "admin.token").read_text().strip())
