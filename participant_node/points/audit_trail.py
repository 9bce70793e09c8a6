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

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

from sqlalchemy import select

from audit.audit_log import CanonicalEvent
from audit.errors import AuditError
from audit.lineage_event import EventType, LineageEvent, Role
from participant_node.points.ledger import Ledger, LedgerTx
from participant_node.points.store_schema import TABLES
from participant_node.points.wire import check_transfer_id
from policies.purpose import Purpose

__all__ = ["AuditForwarder", "EventSink", "record_event"]

_OUTBOX = TABLES["points_audit_outbox"]


class EventSink(Protocol):
    def append_batch(self, events: Sequence[LineageEvent | CanonicalEvent]) -> list[int]: ...


def record_event(
    tx: LedgerTx,
    event_type: EventType,
    *,
    partner: str,
    peer: str,
    at_us: int,
    transfer_id: str | None = None,
    link_hash: str | None = None,
    details: dict[str, int | float | str] | None = None,
    artefacts: Sequence[tuple[str, str]] = (),
    policy_hash: str | None = None,
) -> None:
    """Validate a lineage event; it is stored with the transaction's other writes when it commits.

    ``policy_hash`` is the content hash of the interchange agreement the step runs under (a link
    session's PSI names it; a transfer's template event does not).
    """
    when = datetime.fromtimestamp(at_us / 1_000_000, UTC)
    if (
        transfer_id is not None
        and not artefacts
        and policy_hash is None
        and _cheap_fields_ok(transfer_id, link_hash, details)
    ):
        # A transfer's event differs from the validated template of its kind only in fields checked
        # here by the same rules (transfer ids by ``check_transfer_id``, hashes as hex, counts as
        # ints): its canonical bytes are the template's with those fields spliced in.
        body = _spliced(_template_parts(event_type, partner, peer), when, transfer_id, link_hash, details)
        tx.events.append({"body": body})
        _RECENT.keep(body, _Canonical(body.encode("utf-8")))
        return
    event = _validated(event_type, partner, peer, when, transfer_id, link_hash, details, artefacts)
    if policy_hash is not None:
        event = LineageEvent.model_validate(event.model_dump() | {"policy_hash": policy_hash})
    body = event.canonical_bytes().decode("utf-8")
    tx.events.append({"body": body})
    _RECENT.keep(body, event)


class _Canonical:
    """A recorded event by its canonical bytes (what the audit log appends and hashes)."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def canonical_bytes(self) -> bytes:
        return self._body


def _spliced(
    parts: tuple[str, str],
    when: datetime,
    transfer_id: str,
    link_hash: str | None,
    details: dict[str, int | float | str] | None,
) -> str:
    """The canonical bytes ``LineageEvent.canonical_bytes`` gives the template with these fields:
    compact JSON in field order, ``None`` omitted, times as pydantic writes UTC datetimes."""
    head, middle = parts
    stamp = _stamp(when)
    counts = _compact_counts(details or {})
    hashed = f',"link_token_hash":"{link_hash}"' if link_hash is not None else ""
    return f'{head}{stamp}{middle}{counts},"transfer_id":"{transfer_id}"{hashed}}}'


@lru_cache(maxsize=64)
def _stamp(when: datetime) -> str:
    """A UTC time as pydantic writes it (the events of one transaction share their time)."""
    fraction = f".{when.microsecond:06d}" if when.microsecond else ""
    return when.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _compact_counts(details: dict[str, int | float | str]) -> str:
    """``json.dumps(details, separators=(",", ":"))`` for the details ``_cheap_fields_ok`` admits
    (keys from ``_DETAIL_KEYS``, values ints or a token from ``_TOKENS``: nothing to escape)."""
    parts = [f'"{k}":{v}' if type(v) is int else f'"{k}":"{v}"' for k, v in details.items()]
    return "{" + ",".join(parts) + "}"


@lru_cache(maxsize=256)
def _template_parts(event_type: EventType, partner: str, peer: str) -> tuple[str, str]:
    """The template's canonical JSON around its time and its details (which are followed only by
    the transfer id and the link token hash, in that order)."""
    template = _template(event_type, partner, peer)
    body = template.canonical_bytes().decode("utf-8")
    head, rest = body.split('"time":"', 1)
    middle, tail = rest.split('"', 1)[1].split('"details":{}', 1)
    if tail != ',"transfer_id":"template"}':
        raise AuditError(f"lineage event layout changed: cannot splice fields into {body!r}")
    return head + '"time":"', '"' + middle + '"details":'


class _RecentEvents:
    """Events recorded by this process, by their stored body, until forwarded.

    The forwarder hands the audit log the event validated when it was recorded (or, for a
    transfer's event, its canonical bytes spliced into a validated template) instead of parsing
    and validating its stored body again: the log commits to that same body either way. Bodies
    from before a restart (or evicted, or of a transaction that rolled back) are parsed and
    validated from the table as before.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._events: OrderedDict[str, LineageEvent | _Canonical] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def keep(self, body: str, event: LineageEvent | _Canonical) -> None:
        with self._lock:
            self._events[body] = event
            while len(self._events) > self._limit:
                self._events.popitem(last=False)

    def take(self, body: str) -> LineageEvent | _Canonical:
        with self._lock:
            event = self._events.pop(body, None)
        return event if event is not None else LineageEvent.from_canonical(body.encode("utf-8"))


_RECENT = _RecentEvents()


def _validated(
    event_type: EventType,
    partner: str,
    peer: str,
    when: datetime,
    transfer_id: str | None,
    link_hash: str | None,
    details: dict[str, int | float | str] | None,
    artefacts: Sequence[tuple[str, str]],
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
            "transfer_id": transfer_id,
            "link_token_hash": link_hash,
            "details": details or {},
            "outputs": [{"name": name, "sha256": digest} for name, digest in artefacts],
        }
    )


@lru_cache(maxsize=256)
def _template(event_type: EventType, partner: str, peer: str) -> LineageEvent:
    return _validated(event_type, partner, peer, datetime.now(UTC), "template", None, {}, ())


_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TOKENS = frozenset({"source", "destination"})


def _cheap_fields_ok(
    transfer_id: str, link_hash: str | None, details: dict[str, int | float | str] | None
) -> bool:
    try:
        check_transfer_id(transfer_id)
    except ValueError:
        return False
    if link_hash is not None and not _HEX64.match(link_hash):
        return False
    return all((type(v) is int or v in _TOKENS) and k in _DETAIL_KEYS for k, v in (details or {}).items())


_DETAIL_KEYS = frozenset({"points", "fee", "credited", "side"})


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
