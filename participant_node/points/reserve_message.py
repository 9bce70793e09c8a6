"""The reserve message a source node sends its peer, built from the transfers it reserved.

One message per peer carries every reserved transfer of a batch: its id, link token, points, the
credit the destination must recompute, and the credit's expiry (the moved points keep the expiry
of the lots they came from). The same function builds the message from the rows just written (the
reservation's own batch) and from the rows read back (the pump's resends), so a resend carries
exactly the fields of the first sending, as the destination's idempotency by transfer id needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from participant_node.points import point_lots
from participant_node.points.agreement_book import AgreementBook
from participant_node.points.wire import ExpirySlice, ReserveItem, ReserveRequest

__all__ = ["Reserved", "ReservedRow", "reserve_messages"]


class ReservedRow(Protocol):
    """The fields of a reserved transfer row (``interchange_rows.ROWS``) a reserve message needs."""

    @property
    def key(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def agreement_id(self) -> str: ...
    @property
    def link_token(self) -> str: ...
    @property
    def points(self) -> int: ...
    @property
    def credited(self) -> int: ...
    @property
    def created_at_us(self) -> int: ...


@dataclass(frozen=True)
class Reserved:
    """A transfer row as the reservation wrote it (the columns a message needs)."""

    key: str
    peer: str
    agreement_id: str
    link_token: str
    points: int
    credited: int
    created_at_us: int


def reserve_messages(
    book: AgreementBook, rows: Iterable[ReservedRow], held: Mapping[str, Sequence[point_lots.Slice]]
) -> dict[str, ReserveRequest]:
    """One reserve message per peer for ``rows``; ``held`` gives each row's slices, earliest expiry first."""
    by_agreement: dict[tuple[str, str], list[ReservedRow]] = {}
    for row in rows:
        by_agreement.setdefault((row.peer, row.agreement_id), []).append(row)
    messages: dict[str, ReserveRequest] = {}
    for (peer, agreement_id), group in by_agreement.items():
        agreement = book.by_id(agreement_id)
        # Rows this node validated when it reserved them: built without re-validating each field.
        items = tuple(
            ReserveItem.model_construct(
                transfer_id=r.key,
                link_token=r.link_token,
                points=r.points,
                credited=r.credited,
                expiry=_moved_expiry(r, held.get(r.key, [])),
            )
            for r in group
        )
        messages[peer] = ReserveRequest(
            agreement_id=agreement_id,
            agreement_hash=book.content_hash(agreement_id),
            epoch=agreement.epoch,
            items=items,
        )
    return messages


def _moved_expiry(row: ReservedRow, taken: Sequence[point_lots.Slice]) -> tuple[ExpirySlice, ...]:
    """The credit's expiry: the lots its points came from (or, untracked, the default from the
    reservation's moment: the same on every resend, as the destination's idempotency needs)."""
    credit = point_lots.split_credit(taken, row.points, row.credited) if taken else []
    if not credit:
        credit = [point_lots.Slice(row.credited, point_lots.untracked_expiry(row.created_at_us))]
    return tuple(ExpirySlice.model_construct(points=c.points, expires_at_us=c.expires_at_us) for c in credit)
