"""Guards against probing a peer's membership through repeated PSI runs.

Three rules (issue 4 item 4): a minimum set size, a cap on runs per partner pair per rolling
24 hours, and refusal of a set that is mostly new since the last run with the same peer. State
lives in a node-local SQLite file: run times and 8-byte digests of the last set's keyed items
(never identifiers; they never leave the node either).
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from participant_node.matching.config import MatchingConfig
from participant_node.matching.errors import MatchingRefused, RefusalRule
from participant_node.private_state import private_file

__all__ = ["ProbingGuard"]

_DIGEST_BYTES = 8
_SCHEMA = """
CREATE TABLE IF NOT EXISTS psi_runs (peer TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS psi_last_set (peer TEXT PRIMARY KEY, digests BLOB NOT NULL);
"""


def _digests(items: Sequence[bytes]) -> set[bytes]:
    return {hashlib.sha256(item).digest()[:_DIGEST_BYTES] for item in items}


class ProbingGuard:
    """Checks and records PSI runs per peer. ``path`` may be ``":memory:"`` in tests."""

    def __init__(self, path: Path | str, config: MatchingConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            private_file(Path(path))  # node state: 0600 (SQLite gives its journal the same mode)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def check_peer_size(self, peer: str, peer_size: int) -> None:
        """The peer's announced set must be large enough not to single out members."""
        if peer_size < self.config.min_set_size:
            raise MatchingRefused(
                f"run with {peer} refused: its set of {peer_size} is below the minimum of "
                f"{self.config.min_set_size}",
                rule=RefusalRule.SET_TOO_SMALL,
            )
        if peer_size > self.config.max_set_size:
            raise MatchingRefused(
                f"run with {peer} refused: set of {peer_size} exceeds {self.config.max_set_size}",
                rule=RefusalRule.SET_TOO_LARGE,
            )

    def check(self, peer: str, items: Sequence[bytes], peer_size: int, *, now: datetime) -> None:
        """Raise ``MatchingRefused`` if this run would break a rule; otherwise return."""
        self.check_peer_size(peer, peer_size)
        if len(items) < self.config.min_set_size:
            raise MatchingRefused(
                f"run with {peer} refused: our consented set of {len(items)} is below the minimum of "
                f"{self.config.min_set_size}",
                rule=RefusalRule.SET_TOO_SMALL,
            )
        since = (now - timedelta(days=1)).isoformat()
        with self._lock:
            (runs,) = self._db.execute(
                "SELECT COUNT(*) FROM psi_runs WHERE peer = ? AND at > ?", (peer, since)
            ).fetchone()
            row = self._db.execute("SELECT digests FROM psi_last_set WHERE peer = ?", (peer,)).fetchone()
        if runs >= self.config.max_runs_per_pair_per_day:
            raise MatchingRefused(
                f"run with {peer} refused: {runs} runs in the last 24 h "
                f"(cap {self.config.max_runs_per_pair_per_day})",
                rule=RefusalRule.RUNS_PER_DAY,
            )
        if row is not None and items:
            previous = {row[0][i : i + _DIGEST_BYTES] for i in range(0, len(row[0]), _DIGEST_BYTES)}
            new = len(_digests(items) - previous) / len(items)
            if new > self.config.max_new_fraction:
                raise MatchingRefused(
                    f"run with {peer} refused: {new:.0%} of the set is new since the last run "
                    f"(limit {self.config.max_new_fraction:.0%})",
                    rule=RefusalRule.MOSTLY_NEW_SET,
                )

    def record(self, peer: str, items: Sequence[bytes], *, now: datetime) -> None:
        """Remember this run (time and set digests) for later checks."""
        blob = b"".join(sorted(_digests(items)))
        with self._lock, self._db:
            self._db.execute("INSERT INTO psi_runs (peer, at) VALUES (?, ?)", (peer, now.isoformat()))
            self._db.execute(
                "INSERT INTO psi_last_set (peer, digests) VALUES (?, ?) "
                "ON CONFLICT(peer) DO UPDATE SET digests = excluded.digests",
                (peer, blob),
            )
