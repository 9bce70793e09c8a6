"""Lineage events of the points interchange, written in the same transaction as the change they record.

Each reserve, post and void of an interchange transfer is recorded in a ``LineageEvent`` that lists
the transfer by its id and a hash of its link token (never a member id): one event per kind and
peer for the transfers one transaction handles. Each link session and each settlement is an event
too. An event is validated when built and stored in the node's ``points_audit_outbox`` table inside the
ledger's transaction, so a committed change always has its event; ``AuditForwarder`` moves them to
the audit log in batches (one fsync per batch) and deletes what the log has made durable. A crash
between the two appends nothing twice: rows are deleted only after the log's commit returned, and
a restarted forwarder resends what is left, which the log records again (at-least-once; each event
names its transfers, so a duplicate is recognisable).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import select

from audit.audit_log import CanonicalEvent
from audit.lineage_event import MAX_TRANSFERS_PER_EVENT, EventType, LineageEvent, Role
from participant_node.points.ledger import Ledger, LedgerTx
from participant_node.points.store_schema import TABLES
from policies.purpose import Purpose

__all__ = ["AuditForwarder", "EventSink", "RecordedTransfer", "record_event", "record_transfers"]

_OUTBOX = TABLES["points_audit_outbox"]


class EventSink(Protocol):
    def append_batch(self, events: Sequence[LineageEvent | CanonicalEvent]) -> list[int]: ...


class RecordedTransfer(NamedTuple):
    """What a batch event says of one transfer: its id, the link token's hash and its amounts."""

    transfer_id: str
    link_hash: str | None
    points: int
    credited: int
    fee: int | None = None


def record_transfers(
    tx: LedgerTx,
    event_type: EventType,
    *,
    partner: str,
    peer: str,
    side: str,
    transfers: Sequence[RecordedTransfer],
) -> None:
    """One lineage event for the transfers a transaction reserved, posted or voided with ``peer``.

    The event lists every transfer (its id, the hash of its link token, its amounts); its details
    count them and sum their amounts. Each transfer is found by its id in the log
    (``LineageEvent.names_transfer``, ``AuditLog.events(transfer_id=…)``). One event per batch
    instead of one per transfer: the log's per-entry costs (a leaf hash, Merkle nodes, a row) are
    paid once per transaction.
    """
    for start in range(0, len(transfers), MAX_TRANSFERS_PER_EVENT):
        part = transfers[start : start + MAX_TRANSFERS_PER_EVENT]
        details: dict[str, int | float | str] = {
            "transfers": len(part),
            "points": sum(t.points for t in part),
            "credited": sum(t.credited for t in part),
        }
        if any(t.fee is not None for t in part):
            details["fee"] = sum(t.fee or 0 for t in part)
        details["side"] = side
        refs = [
            {
                "transfer_id": t.transfer_id,
                "link_token_hash": t.link_hash,
                "points": t.points,
                "credited": t.credited,
                "fee": t.fee,
            }
            for t in part
        ]
        when = datetime.fromtimestamp(tx.now_us / 1_000_000, UTC)
        _keep(tx, _validated(event_type, partner, peer, when, details=details, transfers=refs))


def record_event(
    tx: LedgerTx,
    event_type: EventType,
    *,
    partner: str,
    peer: str,
    at_us: int,
    details: dict[str, int | float | str] | None = None,
    artefacts: Sequence[tuple[str, str]] = (),
    policy_hash: str | None = None,
) -> None:
    """Validate a lineage event of a step that is not a transfer (a link session, a settlement);
    it is stored with the transaction's other writes when it commits.

    ``policy_hash`` is the content hash of the interchange agreement the step runs under.
    """
    when = datetime.fromtimestamp(at_us / 1_000_000, UTC)
    event = _validated(event_type, partner, peer, when, details=details, artefacts=artefacts)
    if policy_hash is not None:
        event = LineageEvent.model_validate(event.model_dump() | {"policy_hash": policy_hash})
    _keep(tx, event)


def _keep(tx: LedgerTx, event: LineageEvent) -> None:
    body = event.canonical_bytes().decode("utf-8")
    tx.events.append({"body": body})
    _RECENT.keep(body, event)


class _RecentEvents:
    """Events recorded by this process, by their stored body, until forwarded.

    The forwarder hands the audit log the event validated when it was recorded instead of parsing
    and validating its stored body again: the log commits to that same body either way. Bodies
    from before a restart (or evicted, or of a transaction that rolled back) are parsed and
    validated from the table as before.
    """

    def __init__(self, limit: int = 10_000) -> None:
        self._events: OrderedDict[str, LineageEvent] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def keep(self, body: str, event: LineageEvent) -> None:
        with self._lock:
            self._events[body] = event
            while len(self._events) > self._limit:
                self._events.popitem(last=False)

    def take(self, body: str) -> LineageEvent:
        with self._lock:
            event = self._events.pop(body, None)
        return event if event is not None else LineageEvent.from_canonical(body.encode("utf-8"))


_RECENT = _RecentEvents()


def _validated(
    event_type: EventType,
    partner: str,
    peer: str,
    when: datetime,
    *,
    details: dict[str, int | float | str] | None = None,
    artefacts: Sequence[tuple[str, str]] = (),
    transfers: list[dict[str, Any]] | None = None,
) -> LineageEvent:
    return LineageEvent.model_validate(
        {
            "event_type": event_type,
            "time": when,
            "actor": f"{partner} node",
            "role": Role.NODE,
            "partner": partner,
            "partners": tuple(sorted({partner, peer})),
            "purpose": Purpose.POINTS_INTERCHANGE.value,
            "details": details or {},
            "outputs": [{"name": name, "sha256": digest} for name, digest in artefacts],
            "transfers": transfers,
        }
    )


class AuditForwarder:
    """Drains the node's queued events into an audit log (local file or the audit service)."""

    def __init__(
        self, ledger: Ledger, sink_factory: Callable[[], EventSink | None], *, batch: int = 2_000
    ) -> None:
        self._ledger, self._sink_factory, self._batch = ledger, sink_factory, batch
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
                with self._ledger.reading() as conn:
                    rows = conn.execute(
                        select(_OUTBOX.c.seq, _OUTBOX.c.body).order_by(_OUTBOX.c.seq).limit(self._batch)
                    ).all()
                if not rows:
                    break
                sink.append_batch([_RECENT.take(row.body) for row in rows])
                with self._ledger.transaction() as tx:
                    tx.conn.execute(_OUTBOX.delete().where(_OUTBOX.c.seq <= rows[-1].seq))
                moved += len(rows)
        self.forwarded += moved
        return moved
