"""Every PSI session id this node has answered, on disk: a session never reopens, even after a restart.

A peer must not reopen a finished run to replay or extend it (the node's API refuses a used id
with 409). Ids were kept in memory only, so a restarted node would have accepted a closed id again;
the ledger keeps each id with how its session ended (``RunStatus``) in a node-local SQLite file
created 0600 (``participant_node.private_state``). A session still open when the node stopped
cannot be resumed: at the next start it is recorded as aborted (``abort_unfinished``), and its run
record goes to the audit log like any other aborted run. Only ids, statuses, peers, purposes and
counts are stored, never a member identifier.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from participant_node.matching.run_record import MatchingRunRecord, RunStatus
from participant_node.private_state import private_file

__all__ = ["LeftOpen", "SessionLedger"]

_OPEN = "open"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS psi_sessions (
    session_id TEXT PRIMARY KEY, status TEXT NOT NULL, peer TEXT NOT NULL, purpose TEXT NOT NULL,
    mode TEXT NOT NULL, own_set_size INTEGER, peer_set_size INTEGER, opened_at TEXT NOT NULL,
    ended_at TEXT
);
"""


@dataclass(frozen=True)
class LeftOpen:
    """A session the node stopped in the middle of (now recorded as aborted)."""

    session_id: str
    peer: str
    purpose: str
    mode: str
    own_set_size: int | None
    peer_set_size: int | None

    def run_record(self, partner: str, *, at: datetime) -> MatchingRunRecord:
        return MatchingRunRecord(
            session_id=self.session_id,
            role="responder",
            partner=partner,
            peer=self.peer,
            purpose=self.purpose,
            mode=self.mode,
            own_set_size=self.own_set_size,
            peer_set_size=self.peer_set_size,
            result_cardinality=None,
            consent_snapshot_hash=None,
            at=at,
            status=RunStatus.ABORTED,
        )


class SessionLedger:
    """Session ids and how each session ended. ``path`` may be ``":memory:"`` (tests, demo)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            private_file(Path(path))  # node state: 0600 (SQLite gives its journal the same mode)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def status(self, session_id: str) -> str | None:
        """How the session ended (``"open"`` while it runs), or None for an id never used."""
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM psi_sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def opened(
        self, session_id: str, *, peer: str, purpose: str, mode: str, sizes: tuple[int, int], at: datetime
    ) -> bool:
        """Record a new session (its id is used from now on); False if the id was used before."""
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO psi_sessions (session_id, status, peer, purpose, mode, own_set_size,"
                    " peer_set_size, opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (session_id, _OPEN, peer, purpose, mode, sizes[0], sizes[1], at.isoformat()),
                )
            except sqlite3.IntegrityError:
                return False
        return True

    def ended(self, session_id: str, status: RunStatus, *, at: datetime) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE psi_sessions SET status = ?, ended_at = ? WHERE session_id = ?",
                (str(status), at.isoformat(), session_id),
            )

    def abort_unfinished(self, *, at: datetime) -> list[LeftOpen]:
        """Mark the sessions a previous process left open as aborted; returns them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT session_id, peer, purpose, mode, own_set_size, peer_set_size FROM psi_sessions"
                " WHERE status = ?",
                (_OPEN,),
            ).fetchall()
            self._db.execute(
                "UPDATE psi_sessions SET status = ?, ended_at = ? WHERE status = ?",
                (str(RunStatus.ABORTED), at.isoformat(), _OPEN),
            )
        return [LeftOpen(*row) for row in rows]
