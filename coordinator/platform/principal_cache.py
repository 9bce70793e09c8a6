"""A short-lived, bounded cache of authenticated principals, keyed by the token's SHA-256.

Every API request authenticates its bearer token; without a cache each one is a store query. The
cache keeps only *successful* look-ups (an unknown token always reaches the store), for at most
``ttl_s`` seconds and ``capacity`` entries (least recently used evicted first), so its worst-case
staleness is bounded. Revocation is never served stale from this process: the cache listens to the
service's sessions and empties itself when a flush touches a principal row (before the flush, and
again after the commit, so a request racing the commit cannot re-insert the old row for long).
Changes made by another process (a second coordinator on the same PostgreSQL, an edit by hand) are
seen after at most ``ttl_s``.

Authorisation is not cached: roles and scopes are checked on every request against the principal.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from coordinator.platform.principals import Principal, authenticate, token_digest
from coordinator.store.tables import PrincipalRow

__all__ = ["PrincipalCache"]

_TOUCHED = "loyalfed.principals_touched"


class PrincipalCache:
    """Token digest → principal, for at most ``ttl_s`` seconds; emptied on any principal change."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl_s: float = 2.0,
        capacity: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0:
            raise ValueError(f"ttl_s must be >= 0, got {ttl_s}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        event.listen(sessions, "before_flush", self._before_flush)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_soft_rollback", self._after_rollback)

    def cached(self, token: str | None) -> Principal | None:
        """The principal for ``token`` if it was authenticated less than ``ttl_s`` ago, else None."""
        if not token:
            return None
        digest = token_digest(token)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            principal, expires = entry
            if self._clock() >= expires:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return principal

    def authenticate(self, token: str | None) -> Principal:
        """Look ``token`` up in the store (raising ``NotAuthenticatedError``) and remember a success."""
        with self._lock:
            generation = self._generation
        with self._sessions() as session:
            principal = authenticate(session, token)
        digest = token_digest(token or "")  # authenticate refused a missing token already
        with self._lock:
            # A principal change committed during the look-up may have been read before it: keep it out.
            if generation == self._generation:
                self._entries[digest] = (principal, self._clock() + self._ttl_s)
                self._entries.move_to_end(digest)
                while len(self._entries) > self._capacity:
                    self._entries.popitem(last=False)
        return principal

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _before_flush(self, session: Session, _context: Any, _instances: Any) -> None:
        changed = (*session.dirty, *session.deleted)
        if any(isinstance(row, PrincipalRow) for row in changed):
            session.info[_TOUCHED] = True
            self.clear()

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_TOUCHED, False):
            self.clear()

    def _after_rollback(self, session: Session, _previous: Any) -> None:
        session.info.pop(_TOUCHED, None)
