"""Responder-side PSI sessions: state, frame caches, idle timeouts, ids that never come back.

A session id names one run. Once a session is closed, aborted or expired its id is retired: an
opening that reuses it is refused (``SessionReused``), so a peer cannot reopen a finished run and
replay or extend it. Every id is kept in the node's session ledger on disk (``session_ledger``),
so a restart does not forget them; the number of sessions a peer can open is already bounded by
the probing guard's runs per pair and day.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from participant_node.matching.errors import SessionGone, SessionReused
from participant_node.matching.member_set import MatchingSet
from participant_node.matching.session_ledger import SessionLedger
from psi.protocol import Responder
from psi.wire import Frame, MessageKind, SessionParams

__all__ = ["ResponderSession", "SessionRegistry"]


@dataclass
class ResponderSession:
    """One open session in which this node answers a peer."""

    params: SessionParams
    peer: str
    purpose: str
    matching_set: MatchingSet
    responder: Responder
    last_seen: datetime
    lock: threading.Lock = field(default_factory=threading.Lock)
    outgoing: dict[MessageKind, list[Frame]] = field(default_factory=dict)
    authentication: str | None = None  # how ``peer`` was established (peer_identity.AuthenticatedPeer)

    def frame(self, kind: MessageKind, chunk: int) -> Frame:
        """A cached outgoing frame; the responder's own elements are computed on first request."""
        with self.lock:
            own = kind in (MessageKind.RESPONDER_ELEMENTS, MessageKind.RESPONDER_CIPHERTEXTS)
            if own and MessageKind.RESPONDER_ELEMENTS not in self.outgoing:
                for frame in self.responder.element_frames():
                    self.outgoing.setdefault(frame.kind, []).append(frame)
            frames = self.outgoing.get(kind, [])
            if not 0 <= chunk < len(frames):
                raise SessionGone(f"session {self.params.session_id}: no {kind.name} chunk {chunk} (yet)")
            return frames[chunk]

    def receive(self, frame: Frame) -> list[Frame]:
        with self.lock:
            replies = self.responder.receive(frame)
            if replies and self.params.mode != "intersection":
                self.outgoing[MessageKind.INITIATOR_TAGS] = replies
                return []
            return replies


class SessionRegistry:
    """Open sessions by id, expiring after ``timeout`` without a request."""

    def __init__(
        self,
        timeout: timedelta,
        on_expire: Callable[[ResponderSession], None],
        *,
        ledger: SessionLedger | None = None,
    ) -> None:
        self.timeout = timeout
        self._on_expire = on_expire
        self.ledger = ledger if ledger is not None else SessionLedger(":memory:")
        self._sessions: dict[str, ResponderSession] = {}
        self._retired: set[str] = set()
        self._lock = threading.Lock()

    def check_new(self, session_id: str) -> None:
        """Refuse an id that is open or was ever used: a session never reopens."""
        with self._lock:
            if session_id in self._sessions:
                raise SessionReused(f"session {session_id} already exists")
            if session_id in self._retired:
                raise SessionReused(f"session {session_id} was closed and cannot be reopened")
        status = self.ledger.status(session_id)
        if status is not None:
            raise SessionReused(f"session {session_id} was used before ({status}) and cannot be reopened")

    def add(self, session: ResponderSession) -> None:
        params = session.params
        with self._lock:
            if params.session_id in self._sessions or params.session_id in self._retired:
                raise SessionReused(f"session {params.session_id} already exists")
            sizes = (params.responder_size, params.initiator_size)
            first_use = self.ledger.opened(
                params.session_id,
                peer=session.peer,
                purpose=session.purpose,
                mode=str(params.mode),
                sizes=sizes,
                at=session.last_seen,
            )
            if not first_use:
                raise SessionReused(f"session {params.session_id} was used before and cannot be reopened")
            self._sessions[params.session_id] = session

    def get(self, session_id: str, *, now: datetime) -> ResponderSession:
        self.sweep(now=now)
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise SessionGone(f"session {session_id} is unknown, finished or timed out")
        session.last_seen = now
        return session

    def pop(self, session_id: str) -> ResponderSession | None:
        """Remove an open session and retire its id."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None:
                self._retired.add(session_id)
            return session

    def sweep(self, *, now: datetime) -> None:
        with self._lock:
            stale = [s for s in self._sessions.values() if now - s.last_seen > self.timeout]
            for session in stale:
                del self._sessions[session.params.session_id]
                self._retired.add(session.params.session_id)
        for session in stale:
            self._on_expire(session)

    def __len__(self) -> int:
        return len(self._sessions)
