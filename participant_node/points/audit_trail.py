"""Lineage events of the points interchange, written in the same transaction as the change they record.

Each reserve, post and void of an interchange transfer, each link session and each settlement is a
``LineageEvent`` keyed by the transfer id and a hash of the link token (never a member id). The
event is validated when built and stored in the node's ``points_audit_outbox`` table inside the
ledger's transaction, so a committed change always has its event; ``AuditForwarder`` moves them to
the audit log in batches (one fsync per batch) and deletes what the log has made durable. A crash
between the two appends nothing twice: rows are deleted only after the log's commit returned, and
a restarted forwarder resends what is left, which the log records again (at-least-once; each event
names its transfer, so a duplicate is recognisable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select

from audit.lineage_event import EventType, LineageEvent, Role
from participant_node.points.store_schema import TABLES
from policies.purpose import Purpose

__all__ = ["AuditForwarder", "EventSink", "record_event"]

_OUTBOX = TABLES["points_audit_outbox"]


class EventSink(Protocol):
    def append_batch(self, events: Sequence[LineageEvent]) -> list[int]: ...


def record_event(
    conn: Connection,
    event_type: EventType,
    *,
    partner: str,
    peer: str,
    at_us: int,
    transfer_id: str | None = None,
    link_hash: str | None = None,
    details: dict[str, int | float | str] | None = None,
    artefacts: Sequence[tuple[str, str]] = (),
) -> None:
    """Validate a lineage event and queue it in the current transaction."""
    fields: dict[str, Any] = {
        "event_type": event_type,
        "time": datetime.fromtimestamp(at_us / 1_000_000, UTC),
        "actor": f"{partner} node",
        "role": Role.NODE,
        "partner": partner,
        "partners": tuple(sorted({partner, peer})),
        "purpose": Purpose.POINTS_INTERCHANGE.value,
        "transfer_id": transfer_id,
        "link_token_hash": link_hash,
        "details": details or {},
        "outputs": [{"name": name, "sha256": digest} for name, digest in artefacts],
    }
    event = LineageEvent.model_validate(fields)
    conn.execute(_OUTBOX.insert(), [{"body": event.canonical_bytes().decode("utf-8")}])


class AuditForwarder:
    """Drains the node's queued events into an audit log (local file or the audit service)."""

    def __init__(
        self, engine: Engine, sink_factory: Callable[[], EventSink | None], *, batch: int = 2_000
    ) -> None:
        self._engine, self._sink_factory, self._batch = engine, sink_factory, batch
        self._lock = threading.Lock()
        self.forwarded = 0

    def drain(self) -> int:
        """Forward every queued event; returns how many were forwarded in this call."""
        sink = self._sink_factory()
        if sink is None:
            return 0
        moved = 0
        with self._lock:
            while True:
                with self._engine.connect() as conn:
                    rows = conn.execute(
                        select(_OUTBOX.c.seq, _OUTBOX.c.body).order_by(_OUTBOX.c.seq).limit(self._batch)
                    ).all()
                if not rows:
                    break
                sink.append_batch([LineageEvent.from_canonical(row.body.encode("utf-8")) for row in rows])
                with self._engine.begin() as conn:
                    conn.execute(_OUTBOX.delete().where(_OUTBOX.c.seq <= rows[-1].seq))
                moved += len(rows)
        self.forwarded += moved
        return moved
