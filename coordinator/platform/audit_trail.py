"""The coordinator's own lineage events: every state change the control plane commits.

Wraps ``audit.AuditLog`` (DIR/audit.sqlite, its signing key beside it). Events carry who (the
principal's name and role), what, and ids and hashes only — never a request body. The domain
functions call ``record`` right after their commit, in the same function, so no state change
reaches the store without its event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from audit import AuditLog, EventType, LineageEvent
from audit.head_exchange import HeadReport, head_report
from coordinator.platform.parsed_events import ParsedEvents
from coordinator.platform.principals import Principal

__all__ = ["AuditTrail", "Clock", "utc_now"]

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AuditTrail:
    """Appends the control plane's lineage events to its audit log (thread-safe)."""

    def __init__(self, log: AuditLog, *, clock: Clock = utc_now) -> None:
        self._log = log
        self._lock = threading.Lock()
        self.clock = clock
        self.events = ParsedEvents(log)  # what the audit reads walk: each entry parsed once

    @classmethod
    def open(cls, path: Path, *, clock: Clock = utc_now) -> AuditTrail:
        return cls(AuditLog.open(path), clock=clock)

    @property
    def log(self) -> AuditLog:
        return self._log

    def close(self) -> None:
        self._log.close()

    def head_report(self, *, since: int | None) -> HeadReport | None:
        """This log's newest signed head with a consistency proof from ``since`` (None when empty)."""
        with self._lock:
            if self._log.size == 0:
                return None
            return head_report(self._log.tree_head(), self._log.public_key, self._log, since=since)

    def record(self, event_type: EventType, actor: Principal | None, **fields: Any) -> LineageEvent:
        """Append one event now; ``actor`` None means the coordinator itself (role ``coordinator``)."""
        event = LineageEvent(
            event_type=event_type,
            time=self.clock(),
            actor=actor.name if actor else "coordinator",
            role=actor.role.value if actor else "coordinator",
            **fields,
        )
        with self._lock:
            self._log.append(event)
        return event

    def commit(
        self, session: Session, event_type: EventType, actor: Principal | None, **fields: Any
    ) -> LineageEvent:
        """Commit ``session`` and append the event for what it changed, as one step."""
        session.commit()
        return self.record(event_type, actor, **fields)
