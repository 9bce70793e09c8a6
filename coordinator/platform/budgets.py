"""Privacy budgets: each partner's yearly ε cap, set by its data officer, and every job's reservation.

A job reserves its ε on every involved partner before it is queued; the reservation is refused
when the year's reservations plus the job would exceed the cap. The check and the reservation are
one transaction under the budget lock (``coordinator.budget_lock``: SQLite ``BEGIN IMMEDIATE``,
PostgreSQL row locks on the cap rows). Basic (additive) composition across
jobs is conservative (Dwork and Roth, "The Algorithmic Foundations of Differential Privacy",
Thm. 3.16); each node's own accountant composes more tightly and is the binding check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.budget_lock import lock_cap_rows
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError
from coordinator.platform.organisations import get_organisation
from coordinator.platform.principals import Principal
from coordinator.store.tables import BudgetCapRow, BudgetChargeRow, OrganisationRow

__all__ = [
    "DEFAULT_YEARLY_CAP",
    "BudgetView",
    "ChargeSettlement",
    "hold_unsettled",
    "list_budgets",
    "reserve_within_caps",
    "set_cap",
    "settle",
]

# A partner's cap until its data officer sets one: a conservative yearly allowance.
DEFAULT_YEARLY_CAP = 10.0
# ``set_by`` of a cap row created only to be locked by a reservation: the default cap applies.
DEFAULT_CAP_SETTER = "(default)"


class ChargeSettlement(StrEnum):
    """How a job's charge on a partner stands (``None``: the reservation, while the job is live).

    The rule for the ended ones is ``coordinator.budget_recovery``'s: held in full until the
    partner's node reports its accountant's figure, then replaced by exactly that figure.
    """

    HELD = "held"
    NODE_ACCOUNTANT = "node_accountant"


@dataclass(frozen=True)
class BudgetView:
    partner_id: str
    year: int
    epsilon_cap: float
    epsilon_reserved: float
    # Of the reserved: ended jobs' charges awaiting their node's accountant (``ChargeSettlement.HELD``).
    epsilon_held: float = 0.0

    @property
    def epsilon_remaining(self) -> float:
        return max(0.0, self.epsilon_cap - self.epsilon_reserved)


def set_cap(
    session: Session, trail: AuditTrail, *, actor: Principal, partner_id: str, year: int, epsilon_cap: float
) -> BudgetCapRow:
    if not 0 < epsilon_cap <= 100 or not 2000 <= year <= 2200:
        raise InvalidRequestError("epsilon_cap must be in (0, 100] and year a calendar year")
    get_organisation(session, partner_id)
    row = session.get(BudgetCapRow, (partner_id, year)) or BudgetCapRow(partner_id=partner_id, year=year)
    row.epsilon_cap, row.set_by, row.set_at = epsilon_cap, actor.id, trail.clock()
    session.add(row)
    trail.commit(
        session, EventType.BUDGET_SET, actor, partner=partner_id, epsilon=epsilon_cap, details={"year": year}
    )
    return row


def _view(session: Session, partner_id: str, year: int) -> BudgetView:
    cap = session.get(BudgetCapRow, (partner_id, year))
    reserved = session.scalar(
        select(func.coalesce(func.sum(BudgetChargeRow.epsilon), 0.0)).where(
            BudgetChargeRow.partner_id == partner_id, BudgetChargeRow.year == year
        )
    )
    held = session.scalar(
        select(func.coalesce(func.sum(BudgetChargeRow.epsilon), 0.0)).where(
            BudgetChargeRow.partner_id == partner_id,
            BudgetChargeRow.year == year,
            BudgetChargeRow.settlement == ChargeSettlement.HELD.value,
        )
    )
    cap_value = cap.epsilon_cap if cap else DEFAULT_YEARLY_CAP
    return BudgetView(partner_id, year, cap_value, float(reserved or 0.0), float(held or 0.0))


def list_budgets(session: Session, *, year: int, partner: str | None = None) -> list[BudgetView]:
    if partner:
        return [_view(session, partner, year)]
    # Every partner with a cap or a charge, from three aggregate queries (not a query per partner,
    # nor every charge row of every year brought back to find the partners).
    partners = set(session.scalars(select(BudgetCapRow.partner_id).distinct()))
    partners |= set(session.scalars(select(BudgetChargeRow.partner_id).distinct()))
    caps = dict(
        session.execute(
            select(BudgetCapRow.partner_id, BudgetCapRow.epsilon_cap).where(BudgetCapRow.year == year)
        ).all()
    )
    is_held = BudgetChargeRow.settlement == ChargeSettlement.HELD.value
    held = case((is_held, BudgetChargeRow.epsilon), else_=0.0)
    sums = {
        partner_id: (float(reserved or 0.0), float(held_sum or 0.0))
        for partner_id, reserved, held_sum in session.execute(
            select(BudgetChargeRow.partner_id, func.sum(BudgetChargeRow.epsilon), func.sum(held))
            .where(BudgetChargeRow.year == year)
            .group_by(BudgetChargeRow.partner_id)
        )
    }
    return [
        BudgetView(p, year, caps.get(p, DEFAULT_YEARLY_CAP), *sums.get(p, (0.0, 0.0)))
        for p in sorted(partners)
    ]


def reserve_within_caps(
    session: Session, *, job_id: str, partners: Iterable[str], epsilon: float, year: int, trail: AuditTrail
) -> list[str]:
    """Check every partner's cap and reserve the job's ε on all of them, under one lock.

    Returns one phrase per partner whose cap the job would exceed (then nothing is reserved);
    an empty list means the reservation was added. The caller commits it with the job's
    transition, which releases the lock (``coordinator.budget_lock``), so two jobs can never
    together pass a cap.
    """
    ordered = sorted(set(partners))
    known = set(session.scalars(select(OrganisationRow.id).where(OrganisationRow.id.in_(ordered))))
    unknown = [f"partner {p} is not a registered organisation" for p in ordered if p not in known]
    if unknown:
        return unknown
    defaults = {"epsilon_cap": DEFAULT_YEARLY_CAP, "set_by": DEFAULT_CAP_SETTER, "set_at": trail.clock()}
    lock_cap_rows(session, BudgetCapRow, ordered, year, defaults=defaults)
    phrases = []
    for partner in ordered:
        view = _view(session, partner, year)
        if view.epsilon_reserved + epsilon > view.epsilon_cap + 1e-12:
            phrases.append(
                f"partner {partner}'s {year} budget has ε {view.epsilon_remaining:.3g} left, "
                f"the job needs {epsilon:.3g}"
            )
    if not phrases:
        session.add_all(
            BudgetChargeRow(job_id=job_id, partner_id=p, year=year, epsilon=epsilon, charged_at=trail.clock())
            for p in ordered
        )
    return phrases


def settle(session: Session, *, job_id: str, partner_id: str, epsilon: float) -> BudgetChargeRow:
    """Replace the job's reservation on a partner with the ε that partner's accountant charged.

    Not committed: the caller commits with its lineage event. A job that ends without settling
    holds its whole reservation until the node reports (``hold_unsettled``).
    """
    row = session.get(BudgetChargeRow, (job_id, partner_id))
    if row is None:
        raise ConflictError(f"job {job_id} holds no budget on {partner_id}: nothing to settle")
    row.epsilon, row.settlement = epsilon, ChargeSettlement.NODE_ACCOUNTANT.value
    return row


def hold_unsettled(session: Session, *, job_id: str) -> list[str]:
    """When a job ends: hold each charge its nodes' accountants have not settled; returns the partners.

    Not committed: it belongs to the job's last transition.
    """
    held = []
    for row in session.scalars(select(BudgetChargeRow).where(BudgetChargeRow.job_id == job_id)):
        if row.settlement != ChargeSettlement.NODE_ACCOUNTANT:
            row.settlement = ChargeSettlement.HELD.value
            held.append(row.partner_id)
    return sorted(held)
