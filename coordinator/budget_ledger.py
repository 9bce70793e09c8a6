"""The coordinator's privacy-budget ledger: a yearly ε cap per partner dataset, and every charge.

A partner's data officer sets the cap for their dataset; every job reserves its target ε on every
involved dataset *before* any training, and the reservation is refused when the year's charges
plus the job would exceed the cap. Jobs compose by basic (additive) composition across the year,
which is conservative (Dwork and Roth, "The Algorithmic Foundations of Differential Privacy",
Thm. 3.16); each node's own accountant composes more tightly with RDP. As rounds complete the
reservation is replaced by what the nodes report spent; an unfinished job keeps what it spent.
Storage is SQLite by default, any SQLAlchemy URL otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Float, Integer, String, create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from coordinator.job_errors import BudgetExceededError

__all__ = ["DEFAULT_YEARLY_CAP", "BudgetLedger"]

# The cap a dataset gets until its data officer sets one: a conservative yearly allowance.
DEFAULT_YEARLY_CAP = 10.0


class _Base(DeclarativeBase):
    pass


class BudgetCap(_Base):
    __tablename__ = "budget_caps"

    partner_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    epsilon_cap: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(128))


class BudgetCharge(_Base):
    __tablename__ = "budget_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    partner_id: Mapped[str] = mapped_column(String(128), index=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # "reserved" | "spent"
    charged_at: Mapped[str] = mapped_column(String(40))


class BudgetLedger:
    """Yearly ε caps and charges per partner dataset.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///budget.sqlite``.
    default_cap : float
        The cap of a dataset whose officer has not set one.
    """

    def __init__(self, url: str, *, default_cap: float = DEFAULT_YEARLY_CAP) -> None:
        if default_cap <= 0:
            raise ValueError(f"default_cap must be positive, got {default_cap}")
        self._engine: Engine = create_engine(url)
        self._default_cap = default_cap
        _Base.metadata.create_all(self._engine)

    def set_cap(self, partner_id: str, epsilon_cap: float, *, year: int, set_by: str) -> None:
        """Set (or replace) a dataset's yearly cap, as its data officer."""
        if epsilon_cap <= 0:
            raise ValueError(f"epsilon_cap must be positive, got {epsilon_cap}")
        with Session(self._engine) as session, session.begin():
            session.merge(BudgetCap(partner_id=partner_id, year=year, epsilon_cap=epsilon_cap, set_by=set_by))

    def cap(self, partner_id: str, *, year: int) -> float:
        with Session(self._engine) as session:
            row = session.get(BudgetCap, (partner_id, year))
        return row.epsilon_cap if row is not None else self._default_cap

    def spent(self, partner_id: str, *, year: int) -> float:
        """ε charged (reserved or spent) to a dataset in a year, by basic composition."""
        with Session(self._engine) as session:
            total = session.scalar(
                select(func.coalesce(func.sum(BudgetCharge.epsilon), 0.0)).where(
                    BudgetCharge.partner_id == partner_id, BudgetCharge.year == year
                )
            )
        return float(total or 0.0)

    def remaining(self, partner_id: str, *, year: int) -> float:
        return self.cap(partner_id, year=year) - self.spent(partner_id, year=year)

    def check(
        self, partner_ids: Sequence[str], *, epsilon: float, job_id: str, now: datetime | None = None
    ) -> None:
        """Raise ``BudgetExceededError`` if ``epsilon`` more on any dataset would exceed its cap."""
        now = now or datetime.now(UTC)
        over = [
            (p, self.spent(p, year=now.year), self.cap(p, year=now.year))
            for p in partner_ids
            if self.spent(p, year=now.year) + epsilon > self.cap(p, year=now.year) + 1e-12
        ]
        if over:
            details = "; ".join(
                f"{p}: spent ε={s:.2f} of its {now.year} cap ε={c:.2f}, job needs ε={epsilon:.2f}"
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
    ) -> None:
        """Reserve ``epsilon`` on every dataset, all or nothing; refuse if any cap would be exceeded."""
        now = now or datetime.now(UTC)
        with Session(self._engine) as session, session.begin():
            self.check(partner_ids, epsilon=epsilon, job_id=job_id, now=now)
            for partner_id in partner_ids:
                session.add(
                    BudgetCharge(
                        partner_id=partner_id,
                        year=now.year,
                        job_id=job_id,
                        purpose=purpose,
                        epsilon=epsilon,
                        delta=delta,
                        status="reserved",
                        charged_at=now.isoformat(),
                    )
                )

    def settle(
        self, partner_id: str, *, job_id: str, epsilon_spent: float, now: datetime | None = None
    ) -> None:
        """Replace a job's reservation on a dataset by what the node reports it actually spent."""
        now = now or datetime.now(UTC)
        with Session(self._engine) as session, session.begin():
            rows = session.scalars(
                select(BudgetCharge).where(
                    BudgetCharge.partner_id == partner_id, BudgetCharge.job_id == job_id
                )
            ).all()
            for row in rows:
                row.epsilon, row.status, row.charged_at = epsilon_spent, "spent", now.isoformat()

    def charges(self, partner_id: str, *, year: int) -> list[tuple[str, str, float, str]]:
        """(job_id, purpose, epsilon, status) of every charge on a dataset in a year."""
        with Session(self._engine) as session:
            rows = session.scalars(
                select(BudgetCharge).where(BudgetCharge.partner_id == partner_id, BudgetCharge.year == year)
            ).all()
            return [(r.job_id, r.purpose, r.epsilon, r.status) for r in rows]

    def close(self) -> None:
        self._engine.dispose()
