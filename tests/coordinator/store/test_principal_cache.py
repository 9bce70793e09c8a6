"""The principal cache on a real SQLite store: hits skip the store, revocation in this process is
never served stale, a change by another process is seen after the TTL, size is bounded, and a
failed look-up is never remembered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from coordinator.platform.errors import NotAuthenticatedError
from coordinator.platform.principal_cache import PrincipalCache
from coordinator.platform.principals import create_principal
from coordinator.store.database import open_store
from coordinator.store.tables import PrincipalRow
from policies.roles import Role

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    engine, factory = open_store(f"sqlite:///{tmp_path / 'coordinator.sqlite'}")
    yield factory
    engine.dispose()


def _issue(sessions: sessionmaker[Session], name: str) -> str:
    with sessions() as session:
        _principal, token = create_principal(
            session, name=name, role=Role.ANALYST, organisation="federation", now=NOW
        )
        session.commit()
    return token


def _count_queries(sessions: sessionmaker[Session]) -> list[str]:
    seen: list[str] = []
    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_hit_skips_the_store_and_revocation_here_is_never_stale(sessions: sessionmaker[Session]) -> None:
    clock = ManualClock()
    cache = PrincipalCache(sessions, ttl_s=60.0, clock=clock)
    token = _issue(sessions, "analyst one")
    assert cache.cached(token) is None
    assert cache.authenticate(token).name == "analyst one"
    queries = _count_queries(sessions)
    assert cache.cached(token) is not None and queries == []
    with sessions() as session:  # any revocation through the service's sessions (a run's end, …)
        row = session.scalars(select(PrincipalRow).where(PrincipalRow.name == "analyst one")).one()
        row.revoked_at = NOW
        session.commit()
    assert cache.cached(token) is None
    with pytest.raises(NotAuthenticatedError):
        cache.authenticate(token)
    assert cache.cached(token) is None  # failures are not remembered


def test_a_change_by_another_process_is_seen_after_the_ttl(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'coordinator.sqlite'}"
    engine, sessions = open_store(url)
    other_engine, other_sessions = open_store(url)  # another process's engine: no shared events
    clock = ManualClock()
    cache = PrincipalCache(sessions, ttl_s=2.0, clock=clock)
    token = _issue(sessions, "analyst two")
    cache.authenticate(token)
    with other_sessions() as session:
        session.execute(update(PrincipalRow).values(revoked_at=NOW))
        session.commit()
    clock.now += 1.9
    assert cache.cached(token) is not None  # the documented bound: at most ttl_s stale
    clock.now += 0.2
    assert cache.cached(token) is None
    with pytest.raises(NotAuthenticatedError):
        cache.authenticate(token)
    other_engine.dispose()
    engine.dispose()


def test_size_is_bounded_least_recently_used_first(sessions: sessionmaker[Session]) -> None:
    cache = PrincipalCache(sessions, ttl_s=60.0, capacity=2, clock=ManualClock())
    first, second, third = (_issue(sessions, f"analyst {n}") for n in ("a", "b", "c"))
    cache.authenticate(first)
    cache.authenticate(second)
    assert cache.cached(first) is not None  # first is now the most recently used
    cache.authenticate(third)
    assert len(cache) == 2
    assert cache.cached(second) is None and cache.cached(first) is not None
    with pytest.raises(NotAuthenticatedError):
        cache.authenticate("not-a-token")
    with pytest.raises(ValueError, match="capacity"):
        PrincipalCache(sessions, capacity=0)
