"""The coordinator's audit log entries, each parsed once.

The log is append-only and every entry is checked into the Merkle tree, so an entry parsed once
stays true: the reads the console makes (lineage, erasures, anomalies, OpenLineage) walk the parsed
entries in memory and parse only what was appended since the last read, instead of parsing every
event of the log on every request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from audit import AuditLog
from audit.audit_log import LogEntry

__all__ = ["ParsedEvents"]


class ParsedEvents:
    """A read-through cache of ``log``'s entries, in log order (thread-safe)."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self._entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def iter_events(self) -> Iterable[LogEntry]:
        """Every entry, the new ones read and parsed now (a snapshot: later appends are not seen)."""
        with self._lock:
            if self._log.size > len(self._entries):
                after = self._entries[-1][0] if self._entries else -1
                self._entries.extend(self._log.iter_events(after=after))
            return self._entries[:]
