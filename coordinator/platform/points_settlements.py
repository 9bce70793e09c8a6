"""Points settlement totals as the coordinator receives them: per partner pair and period, totals only.

After two nodes reconcile their signed statements (``participant_node.points.settlement``), each
node may send the coordinator the totals of its own statement (``coordinator_totals``): per
direction the points moved, the points credited and the money owed, and the net (who pays whom).
Never transfers, link tokens or members: the request model forbids any other field. The reporter
is the node's own organisation (from its credential, never from the body) and must be a party.

Both partners' reports of one agreement and period are compared field by field; any difference —
or a report saying the nodes did not reconcile — makes the pair a *mismatch*, flagged in the API
and recorded in the audit log (``points.settlement_mismatch``). A node may re-send its totals
(after a recovery pass, say): the newer report replaces its older one and the pair is compared again.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.principals import ADMIN_ORGANISATION, Principal
from coordinator.store.tables import AgreementRow, SettlementRow

__all__ = [
    "SettlementDirection",
    "SettlementStatus",
    "SettlementTotals",
    "list_settlements",
    "record_settlement",
]

PartnerId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]
Money = Annotated[str, Field(pattern=r"^\d{1,24}(\.\d{1,12})?$")]
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SettlementStatus(StrEnum):
    REPORTED = "reported"  # the peer has not reported this period yet
    MATCHED = "matched"  # both partners reported the same totals, reconciled
    MISMATCH = "mismatch"  # the totals differ, or the nodes did not reconcile


class SettlementDirection(BaseModel):
    model_config = _FROZEN
    source: PartnerId
    destination: PartnerId
    points: int = Field(ge=0)
    credited: int = Field(ge=0)
    amount: Money


class SettlementTotals(BaseModel):
    """The body a node sends: ``participant_node.points.settlement.coordinator_totals``."""

    model_config = _FROZEN
    agreement_id: PartnerId
    period_start: datetime
    period_end: datetime
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    reconciled: bool
    directions: tuple[SettlementDirection, ...] = Field(min_length=1, max_length=2)
    payer: PartnerId | None
    payee: PartnerId | None
    net_amount: Money

    @model_validator(mode="after")
    def _consistent(self) -> SettlementTotals:
        if self.period_start.tzinfo is None or self.period_end.tzinfo is None:
            raise ValueError("period_start and period_end must carry a UTC offset")
        if self.period_end <= self.period_start:
            raise ValueError("period_end must be after period_start")
        pairs = [(d.source, d.destination) for d in self.directions]
        if len(set(pairs)) != len(pairs) or any(s == d for s, d in pairs):
            raise ValueError("directions must be distinct, each between two different partners")
        if len({frozenset(p) for p in pairs}) != 1:
            raise ValueError("directions must all be between the same two partners")
        if (self.payer is None) != (self.payee is None) or (
            self.payer is not None and self.payer == self.payee
        ):
            raise ValueError("payer and payee are both empty (nothing owed) or two different partners")
        return self

    @property
    def pair(self) -> tuple[str, str]:
        a, b = sorted({self.directions[0].source, self.directions[0].destination})
        return a, b


def _check_net(totals: SettlementTotals) -> None:
    """The net must follow from the directions: (a owes b) − (b owes a), paid by the one who owes more."""
    a, b = totals.pair
    try:
        owed = {(d.source, d.destination): Decimal(d.amount) for d in totals.directions}
        net = owed.get((a, b), Decimal(0)) - owed.get((b, a), Decimal(0))
        stated = Decimal(totals.net_amount)
    except InvalidOperation as err:
        raise InvalidRequestError("amounts must be decimal numbers") from err
    payer = None if not net else (a if net > 0 else b)
    if abs(net) != stated or totals.payer != payer:
        raise InvalidRequestError("net_amount and payer do not follow from the directions' amounts")


def _differences(mine: SettlementRow, theirs: SettlementRow) -> list[str]:
    differences = [
        name
        for name in ("currency", "payer", "payee", "net_amount")
        if getattr(mine, name) != getattr(theirs, name)
    ]
    by_pair = {(d["source"], d["destination"]): d for d in theirs.directions}
    for direction in mine.directions:
        other = by_pair.pop((direction["source"], direction["destination"]), None)
        label = f"{direction['source']}->{direction['destination']}"
        if other is None:
            differences.append(f"directions.{label}")
            continue
        differences += [
            f"directions.{label}.{k}" for k in ("points", "credited", "amount") if direction[k] != other[k]
        ]
    differences += [f"directions.{s}->{d}" for s, d in by_pair]
    return differences


def record_settlement(
    session: Session, trail: AuditTrail, *, actor: Principal, totals: SettlementTotals
) -> SettlementRow:
    """Store ``actor``'s node's totals for one agreement and period and compare them with the peer's."""
    reporter = actor.organisation
    if reporter not in totals.pair:
        raise InvalidRequestError(f"the totals are between {' and '.join(totals.pair)}, not of {reporter}")
    _check_net(totals)
    registered = session.scalars(select(AgreementRow).where(AgreementRow.agreement_id == totals.agreement_id))
    for agreement in registered:
        if (agreement.partner_a, agreement.partner_b) != totals.pair:
            raise InvalidRequestError(
                f"agreement {totals.agreement_id} is not between {' and '.join(totals.pair)}"
            )
    peer = totals.pair[1] if reporter == totals.pair[0] else totals.pair[0]
    row = _upsert(session, trail, reporter, peer, totals)
    theirs = session.scalar(_same_period(totals, peer))
    row.differences = [] if theirs is None else _differences(row, theirs)
    if theirs is None:
        row.status = SettlementStatus.REPORTED if totals.reconciled else SettlementStatus.MISMATCH
    else:
        agree = not row.differences and row.reconciled and theirs.reconciled
        row.status = SettlementStatus.MATCHED if agree else SettlementStatus.MISMATCH
        theirs.status, theirs.differences = row.status, list(row.differences)
    _record_events(session, trail, actor, row)
    return row


def _same_period(totals: SettlementTotals, reporter: str):  # type: ignore[no-untyped-def]
    return select(SettlementRow).where(
        SettlementRow.agreement_id == totals.agreement_id,
        SettlementRow.period_start == totals.period_start,
        SettlementRow.period_end == totals.period_end,
        SettlementRow.reporter == reporter,
    )


def _upsert(
    session: Session, trail: AuditTrail, reporter: str, peer: str, totals: SettlementTotals
) -> SettlementRow:
    row = session.scalar(_same_period(totals, reporter))
    if row is None:
        row = SettlementRow(
            agreement_id=totals.agreement_id,
            period_start=totals.period_start,
            period_end=totals.period_end,
            reporter=reporter,
            status=SettlementStatus.REPORTED.value,
            differences=[],
        )
        session.add(row)
    row.peer = peer
    row.currency = totals.currency
    row.directions = [
        d.model_dump() for d in sorted(totals.directions, key=lambda d: (d.source, d.destination))
    ]
    row.payer, row.payee, row.net_amount = totals.payer, totals.payee, totals.net_amount
    row.reconciled = totals.reconciled
    row.reported_at = trail.clock()
    return row


def _record_events(session: Session, trail: AuditTrail, actor: Principal, row: SettlementRow) -> None:
    pair = tuple(sorted((row.reporter, row.peer)))
    trail.commit(
        session,
        EventType.SETTLEMENT_REPORTED,
        actor,
        partner=row.reporter,
        partners=pair,
        details={"status": str(row.status), "directions": len(row.directions)},
    )
    if row.status == SettlementStatus.MISMATCH:
        trail.record(
            EventType.SETTLEMENT_MISMATCH,
            actor,
            partner=row.reporter,
            partners=pair,
            details={"differences": len(row.differences), "reconciled_by_nodes": int(row.reconciled)},
        )


def list_settlements(
    session: Session, *, viewer: Principal, status: SettlementStatus | None = None
) -> list[SettlementRow]:
    """Reports the viewer may see (a partner's people: their own pairs; the federation's: all)."""
    query = select(SettlementRow).order_by(SettlementRow.period_start.desc(), SettlementRow.id)
    if viewer.organisation != ADMIN_ORGANISATION:
        query = query.where(
            or_(SettlementRow.reporter == viewer.organisation, SettlementRow.peer == viewer.organisation)
        )
    if status is not None:
        query = query.where(SettlementRow.status == status.value)
    return list(session.scalars(query))
