"""A partner's privacy-budget use over a year, by purpose and dataset, month by month.

Each job's charge on the partner (its reservation, settled from the nodes' accountants when the job
ends) counts against the purpose of the policy it ran under, and against each of the partner's
registered datasets whose tables that policy's columns name. Months are those of the charge (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from coordinator.platform.budgets import list_budgets
from coordinator.platform.organisations import get_organisation
from coordinator.store.tables import BudgetChargeRow, DatasetRow, JobRow, PolicyVersionRow

__all__ = ["BudgetUsage", "UsageSeries", "budget_usage"]

MONTHS = 12


@dataclass
class UsageSeries:
    purpose: str
    dataset: str
    months: list[float] = field(default_factory=lambda: [0.0] * MONTHS)
    jobs: set[str] = field(default_factory=set)

    @property
    def epsilon(self) -> float:
        return sum(self.months)


@dataclass(frozen=True)
class BudgetUsage:
    partner_id: str
    year: int
    epsilon_cap: float
    series: list[UsageSeries]


def _touched(document: dict[str, object], datasets: list[DatasetRow]) -> list[str]:
    columns = document.get("columns")
    tables = set(columns) if isinstance(columns, dict) else set()
    names = [d.name for d in datasets if tables & set(d.tables)]
    return names or ["—"]  # a charge no registered dataset explains is still shown


def budget_usage(session: Session, *, partner_id: str, year: int) -> BudgetUsage:
    """Every charge on ``partner_id`` in ``year``, summed by (purpose, dataset) and month."""
    get_organisation(session, partner_id)
    datasets = list(session.scalars(select(DatasetRow).where(DatasetRow.partner_id == partner_id)))
    charges = session.execute(
        select(
            BudgetChargeRow.job_id,
            BudgetChargeRow.epsilon,
            BudgetChargeRow.charged_at,
            JobRow.policy_id,
            JobRow.policy_version,
        )
        .join(JobRow, JobRow.id == BudgetChargeRow.job_id)
        .where(BudgetChargeRow.partner_id == partner_id, BudgetChargeRow.year == year)
    ).all()
    # Each policy version's document read (and decoded) once, not once per charge: a partner's
    # year holds many charges under a few policies.
    documents = {
        (policy_id, version): document
        for policy_id, version, document in session.execute(
            select(PolicyVersionRow.policy_id, PolicyVersionRow.version, PolicyVersionRow.document).where(
                PolicyVersionRow.policy_id.in_({charge.policy_id for charge in charges})
            )
        )
    }
    series: dict[tuple[str, str], UsageSeries] = {}
    touched: dict[tuple[str, int], tuple[str, list[str]]] = {}
    for job_id, epsilon, charged_at, policy_id, version in charges:
        key = (policy_id, version)
        if key not in documents:
            continue  # as the join on the policy version did: a job always has one
        if key not in touched:
            document = documents[key]
            touched[key] = (str(document.get("purpose", "—")), _touched(document, datasets))
        purpose, names = touched[key]
        for dataset in names:
            row = series.setdefault((purpose, dataset), UsageSeries(purpose, dataset))
            row.months[charged_at.month - 1] += float(epsilon)
            row.jobs.add(job_id)
    cap = list_budgets(session, year=year, partner=partner_id)[0].epsilon_cap
    return BudgetUsage(partner_id, year, cap, [series[k] for k in sorted(series)])
