"""Fixtures of the points tests: one ledger contract on both storage backends."""

from __future__ import annotations

import pytest


@pytest.fixture
def ledger_url(database_url: str) -> str:
    """A SQLite file or a fresh database on the session's real PostgreSQL server."""
    return database_url
