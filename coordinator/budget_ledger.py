"""The coordinator's privacy-budget ledger: a yearly ε cap per partner dataset, and every charge.

A partner's data officer sets the cap for their dataset; every job reserves its target ε on every
involved dataset *before* any training. The cap check and the reservation are one transaction
(``coordinator.budget_tables``), so concurrent jobs can never together pass a cap. Jobs compose by
basic (additive) composition across the year, which is conservative (Dwork and Roth, "The
Algorithmic Foundations of Differential Privacy", Thm. 3.16); each node's own accountant composes
more tightly with RDP and is the authority on what a job spent.

Life of a charge (one row per job and partner dataset)::

    reserve ──► reserved ──settle(ε the node's accountant reports)──► spent
                    │                                                  ▲
                    ├──release (nothing was spent)──► released ─settle─┘ (a late report still counts)
                    └──recover (owner died)──► spent or released, by the rule below

The API the job engine calls: ``reserve`` before any data is read, ``heartbeat`` while the job
runs on a host other than the ledger's reader, ``settle(partner, job_id=…, epsilon_spent=…)`` once
per node with its accountant's cumulative figure (lost, late and aborted rounds included, because
the node charges before it sends), ``release`` when the job ends before any node trained, and
``recover`` at start-up.

Recovery rule (``recover``): a reservation is abandoned when its owner process is gone (same host:
its pid has ended or been reused) or, for an owner on another host, its lease has expired without a
heartbeat. An abandoned reservation is settled to the ε the partner's node accountant recorded for
the job when that figure is known (``node_spent``) — released when that figure is 0 — and otherwise
kept in full as spent, marked provisional: the coordinator cannot know whether a round was charged
on a node whose reply never arrived, and overcharging only refuses jobs early while undercharging
would let the ledger pass more than was allowed. A later ``settle`` with the node's figure replaces
a provisional charge.

Storage is SQLite by default, PostgreSQL by URL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from coordinator.budget_lock import lock_cap_rows
from coordinator.budget_tables import (
    DEFAULT_CAP_SETTER,
    BudgetCap,
    BudgetCharge,
    create_ledger_engine,
)
from coordinator.errors import CoordinatorError
from coordinator.job_errors import BudgetExceededError
from coordinator.reservation_owner import ReservationOwner

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_YEARLY_CAP",
    "BudgetLedger",
    "BudgetLedgerError",
    "ChargeStatus",
    "NodeSpent",
    "Recovery",
    "ReservationOwner",
]

# The cap a dataset gets until its data officer sets one: a conservative yearly allowance.
DEFAULT_YEARLY_CAP = 10.0
# How long a reservation held from another host survives without a heartbeat.
DEFAULT_LEASE = timedelta(minutes=15)
_PROVISIONAL = "recovery: owner died, no accountant report; reservation kept as spent"
_TOLERANCE = 1e-12

# (job_id, partner_id) -> ε the partner's node accountant recorded for the job, or None if unknown.
NodeSpent = Callable[[str, str], float | None]


class BudgetLedgerError(CoordinatorError):
    """A ledger operation cannot be carried out as asked (unknown reservation, bad figure)."""


class ChargeStatus(StrEnum):
    RESERVED = "reserved"
    SPENT = "spent"
    RELEASED = "released"


@dataclass(frozen=True)
class Recovery:
    """What ``recover`` did with one abandoned reservation."""

    job_id: str
    partner_id: str
    reserved: float
    charged: float
    status: ChargeStatus
    reason: str


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"ledger times must be timezone-aware, got {now.isoformat()}")
    return now.astimezone(UTC)


def _epsilon(value: float, name: str, *, zero_ok: bool) -> float:
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise ValueError(
            f"{name} must be a finite {'non-negative' if zero_ok else 'positive'} ε, got {value}"
        )
    return float(value)


class BudgetLedger:
    """Yearly ε caps and charges per partner dataset.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, ``sqlite:///budget.sqlite`` or ``postgresql+psycopg://…``.
    default_cap : float
        The cap of a dataset whose officer has not set one.
    lease : timedelta
        How long a reservation made from another host lives without a ``heartbeat``.
    """

    def __init__(
        self, url: str, *, default_cap: float = DEFAULT_YEARLY_CAP, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        if default_cap <= 0:
            raise ValueError(f"default_cap must be positive, got {default_cap}")
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        self._engine: Engine = create_ledger_engine(url)
        self._default_cap = default_cap
        self._lease = lease

    def set_cap(self, partner_id: str, epsilon_cap: float, *, year: int, set_by: str) -> None:
        """Set (or replace) a dataset's yearly cap, as its data officer."""
        _epsilon(epsilon_cap, "epsilon_cap", zero_ok=False)
        with Session(self._engine) as session, session.begin():
            session.merge(BudgetCap(partner_id=partner_id, year=year, epsilon_cap=epsilon_cap, set_by=set_by))

    def cap(self, partner_id: str, *, year: int) -> float:
        with Session(self._engine) as session, session.begin():
            row = session.get(BudgetCap, (partner_id, year))
            return self._cap_of(row)

    def _cap_of(self, row: BudgetCap | None) -> float:
        return row.epsilon_cap if row is not None and row.set_by != DEFAULT_CAP_SETTER else self._default_cap

    def spent(self, partner_id: str, *, year: int) -> float:
        """ε charged (reserved or spent) to a dataset in a year, by basic composition."""
        with Session(self._engine) as session, session.begin():
            return self._totals(session, [partner_id], year)[partner_id]

    def remaining(self, partner_id: str, *, year: int) -> float:
        return self.cap(partner_id, year=year) - self.spent(partner_id, year=year)

    def _totals(self, session: Session, partner_ids: Sequence[str], year: int) -> dict[str, float]:
        rows = session.execute(
            select(BudgetCharge.partner_id, func.coalesce(func.sum(BudgetCharge.epsilon), 0.0))
            .where(
                BudgetCharge.partner_id.in_(partner_ids),
                BudgetCharge.year == year,
                BudgetCharge.status != ChargeStatus.RELEASED,
            )
            .group_by(BudgetCharge.partner_id)
        ).all()
        totals = {p: 0.0 for p in partner_ids}
        totals.update({p: float(total) for p, total in rows})
        return totals

    def check(
        self, partner_ids: Sequence[str], *, epsilon: float, job_id: str, now: datetime | None = None
    ) -> None:
        """Raise ``BudgetExceededError`` if ``epsilon`` more on any dataset would exceed its cap.

        An early, read-only refusal; only ``reserve`` takes the budget.
        """
        year = _utc(now).year
        with Session(self._engine) as session, session.begin():
            caps = {p: self._cap_of(session.get(BudgetCap, (p, year))) for p in partner_ids}
            self._refuse_over(caps, self._totals(session, partner_ids, year), epsilon, job_id, year)

    @staticmethod
    def _refuse_over(
        caps: dict[str, float], totals: dict[str, float], epsilon: float, job_id: str, year: int
    ) -> None:
        over = [(p, totals[p], c) for p, c in caps.items() if totals[p] + epsilon > c + _TOLERANCE]
        if over:
            details = "; ".join(
                f"{p}: spent ε={s:.2f} of its {year} cap ε={c:.2f}, job needs ε={epsilon:.2f}"
                for p, s, c in over
            )
            raise BudgetExceededError(
                f"job {job_id} refused before any training: privacy budget would be exceeded ({details})"
            )

    def reserve(
        self,
        partner_ids: Sequence[str],
        *,
        job_id: str,
        purpose: str,
        epsilon: float,
        delta: float,
        now: datetime | None = None,
        owner: ReservationOwner | None = None,
    ) -> None:
        """Reserve ``epsilon`` on every dataset, all or nothing, in one locking transaction.

        Raises ``BudgetExceededError`` (nothing recorded) if any cap would be exceeded and
        ``BudgetLedgerError`` if the job already holds a reservation on one of the datasets.
        """
        _epsilon(epsilon, "epsilon", zero_ok=False)
        moment, holder = _utc(now), owner or ReservationOwner.current()
        # One lock order for every reserver, so two jobs locking overlapping partners cannot deadlock.
        partners = sorted(set(partner_ids))
        with Session(self._engine) as session, session.begin():
            caps = self._lock_caps(session, partners, moment.year)
            self._refuse_duplicate(session, partners, job_id)
            self._refuse_over(
                caps, self._totals(session, partners, moment.year), epsilon, job_id, moment.year
            )
            session.add_all(
                BudgetCharge(
                    partner_id=partner_id,
                    year=moment.year,
                    job_id=job_id,
                    purpose=str(purpose),
                    epsilon=epsilon,
                    epsilon_reserved=epsilon,
                    delta=delta,
                    status=ChargeStatus.RESERVED,
                    charged_at=moment.isoformat(),
                    owner=str(holder),
                    lease_expires_at=(moment + self._lease).isoformat(),
                )
                for partner_id in partners
            )

    def _lock_caps(self, session: Session, partners: list[str], year: int) -> dict[str, float]:
        defaults = {"epsilon_cap": self._default_cap, "set_by": DEFAULT_CAP_SETTER}
        rows = lock_cap_rows(session, BudgetCap, partners, year, defaults=defaults)
        return {row.partner_id: self._cap_of(row) for row in rows}

    @staticmethod
    def _refuse_duplicate(session: Session, partners: list[str], job_id: str) -> None:
        held = session.scalars(
            select(BudgetCharge.partner_id).where(
                BudgetCharge.job_id == job_id,
                BudgetCharge.partner_id.in_(partners),
                BudgetCharge.status == ChargeStatus.RESERVED,
            )
        ).all()
        if held:
            raise BudgetLedgerError(f"job {job_id} already holds a reservation on {', '.join(sorted(held))}")

    def heartbeat(self, job_id: str, *, now: datetime | None = None) -> int:
        """Extend the lease of the job's open reservations; returns how many were renewed."""
        expires = (_utc(now) + self._lease).isoformat()
        with Session(self._engine) as session, session.begin():
            rows = self._open(session, job_id)
            for row in rows:
                row.lease_expires_at = expires
            return len(rows)

    @staticmethod
    def _open(session: Session, job_id: str, partner_id: str | None = None) -> Sequence[BudgetCharge]:
        query = select(BudgetCharge).where(
            BudgetCharge.job_id == job_id, BudgetCharge.status == ChargeStatus.RESERVED
        )
        if partner_id is not None:
            query = query.where(BudgetCharge.partner_id == partner_id)
        return session.scalars(query.with_for_update()).all()

    def settle(
        self,
        partner_id: str,
        *,
        job_id: str,
        epsilon_spent: float,
        now: datetime | None = None,
        source: str = "node accountant",
    ) -> None:
        """Charge the job on a dataset what the node's accountant reports it spent, cumulatively.

        Replaces the reservation (or a release, or a provisional recovery charge). A report lower
        than an earlier one from a node never lowers the charge: reports are cumulative, so a
        lower one is stale.
        """
        spent = _epsilon(epsilon_spent, "epsilon_spent", zero_ok=True)
        moment = _utc(now)
        with Session(self._engine) as session, session.begin():
            rows = session.scalars(
                select(BudgetCharge)
                .where(BudgetCharge.partner_id == partner_id, BudgetCharge.job_id == job_id)
                .with_for_update()
            ).all()
            if not rows:
                raise BudgetLedgerError(f"job {job_id} holds no budget on {partner_id}: nothing to settle")
            for row in rows:
                keep_higher = row.status == ChargeStatus.SPENT and row.settled_by != _PROVISIONAL
                row.epsilon = max(row.epsilon, spent) if keep_higher else spent
                row.status, row.charged_at, row.settled_by = ChargeStatus.SPENT, moment.isoformat(), source

    def release(self, job_id: str, *, partner_id: str | None = None, now: datetime | None = None) -> int:
        """Give back the job's open reservations (all datasets, or one) when nothing was spent.

        Returns how many were released. Only for a job that ended before any node trained: a node
        that trained is settled with its accountant's figure instead.
        """
        moment = _utc(now)
        with Session(self._engine) as session, session.begin():
            rows = self._open(session, job_id, partner_id)
            for row in rows:
                row.epsilon, row.status, row.charged_at = 0.0, ChargeStatus.RELEASED, moment.isoformat()
                row.settled_by = "released: nothing spent"
            return len(rows)

    def recover(self, now: datetime | None = None, *, node_spent: NodeSpent | None = None) -> list[Recovery]:
        """Settle the reservations of jobs whose owner died (the rule is in the module docstring)."""
        moment = _utc(now)
        with Session(self._engine) as session, session.begin():
            candidates = [
                (row.id, row.job_id, row.partner_id)
                for row in session.scalars(
                    select(BudgetCharge).where(BudgetCharge.status == ChargeStatus.RESERVED)
                )
                if self._abandoned(row, moment)
            ]
        # Ask the nodes outside the transaction (it may take a while); apply only still-open rows.
        figures = {
            (job, partner): node_spent(job, partner) if node_spent else None for _, job, partner in candidates
        }
        done: list[Recovery] = []
        with Session(self._engine) as session, session.begin():
            for row_id, job, partner in candidates:
                row = session.get(BudgetCharge, row_id, with_for_update=True)
                if row is not None and row.status == ChargeStatus.RESERVED and self._abandoned(row, moment):
                    done.append(self._settle_abandoned(row, figures[(job, partner)], moment))
        return done

    @staticmethod
    def _abandoned(row: BudgetCharge, moment: datetime) -> bool:
        owner = ReservationOwner.parse(row.owner)
        if owner is not None and owner.is_local():
            return owner.is_gone()
        return row.lease_expires_at is None or datetime.fromisoformat(row.lease_expires_at) <= moment

    @staticmethod
    def _settle_abandoned(row: BudgetCharge, figure: float | None, moment: datetime) -> Recovery:
        reserved = row.epsilon_reserved if row.epsilon_reserved is not None else row.epsilon
        if figure is None:
            status, charged, reason = ChargeStatus.SPENT, reserved, _PROVISIONAL
        elif figure <= 0:
            status, charged, reason = (
                ChargeStatus.RELEASED,
                0.0,
                "recovery: owner died, node accountant spent 0",
            )
        else:
            status, charged = ChargeStatus.SPENT, _epsilon(figure, "node_spent", zero_ok=True)
            reason = "recovery: owner died, settled from the node accountant"
        row.status, row.epsilon, row.settled_by, row.charged_at = status, charged, reason, moment.isoformat()
        return Recovery(row.job_id, row.partner_id, reserved, charged, status, reason)

    def charges(self, partner_id: str, *, year: int) -> list[tuple[str, str, float, str]]:
        """(job_id, purpose, epsilon, status) of every charge on a dataset in a year."""
        with Session(self._engine) as session, session.begin():
            rows = session.scalars(
                select(BudgetCharge)
                .where(BudgetCharge.partner_id == partner_id, BudgetCharge.year == year)
                .order_by(BudgetCharge.id)
            ).all()
            return [(r.job_id, r.purpose, r.epsilon, r.status) for r in rows]

    def close(self) -> None:
        self._engine.dispose()
