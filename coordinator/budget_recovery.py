"""Reservations of jobs that ended unsettled, settled from what each node's own accountant reports.

A node charges its accountant before it computes an update, so only the node knows what a job
spent on it; the coordinator's figure is the reservation made before the job was queued. When a job
ends and a node's figure has not reached the ledger (the job's run died with the coordinator or its
SuperLink, its Flower run vanished or ended without an outcome, or a node did not answer the
job's final ``query.privacy_spent``), the rule is:

* the partner's reservation is **held**: it keeps counting in full against the partner's yearly cap
  (never guessed down: a lower guess could let later jobs pass more than the cap allows);
* the node is asked for its accountant's figure for the job in the answer to each of its
  heartbeats, for as long as it stays unsettled (a node unreachable at start-up is asked whenever it
  comes back: no deadline, no default);
* the first figure the node reports replaces the reservation exactly (``NODE_ACCOUNTANT``),
  with a ``budget.charged`` lineage event; later reports for the same job change nothing.

Every job that ends holds its unsettled charges (``coordinator.platform.budgets.hold_unsettled``,
called on the job's last transition, whichever path ends it); settlements its ServerApp forwarded
while it ran are already marked ``NODE_ACCOUNTANT``, so no charge is settled twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.budgets import ChargeSettlement
from coordinator.platform.jobs import TERMINAL, append_log
from coordinator.platform.principals import Principal
from coordinator.store.tables import BudgetChargeRow, JobRow
from policies.purpose import purpose_of_training_task

__all__ = ["HeldJob", "NodeSpent", "held_jobs", "settle_reported"]

# A job in one of these states runs no more: what it spent is only the nodes' to say.
_ENDED = tuple(state.value for state in TERMINAL)


@dataclass(frozen=True)
class HeldJob:
    """A job whose reservation on the asking node's partner awaits that node's accountant."""

    job_id: str
    purpose: str


@dataclass(frozen=True)
class NodeSpent:
    """What a node's accountant says one job spent on its partner (``PrivacySpentReply``'s figures)."""

    job_id: str
    epsilon: float
    delta: float
    steps: int


def held_jobs(session: Session, partner_id: str) -> list[HeldJob]:
    """The ended jobs whose charge on ``partner_id`` awaits that partner's node, oldest first."""
    query = (
        select(JobRow)
        .join(BudgetChargeRow, BudgetChargeRow.job_id == JobRow.id)
        .where(
            BudgetChargeRow.partner_id == partner_id,
            BudgetChargeRow.settlement == ChargeSettlement.HELD.value,
            JobRow.state.in_(_ENDED),
        )
        .order_by(JobRow.submitted_at)
    )
    return [HeldJob(job.id, _purpose(job)) for job in session.scalars(query)]


def _purpose(job: JobRow) -> str:
    return purpose_of_training_task(job.task).value


def settle_reported(
    session: Session, trail: AuditTrail, *, actor: Principal, partner_id: str, reports: Iterable[NodeSpent]
) -> list[str]:
    """Settle ``partner_id``'s held charges with its node's reports; returns the jobs settled.

    A report for a charge that is not held (live, already settled, another partner's) changes
    nothing: only the partner's own node, authenticated as that partner, reaches this.
    """
    settled = []
    for report in reports:
        if not math.isfinite(report.epsilon) or report.epsilon < 0:
            continue  # the API model refuses these; a figure that is not one settles nothing
        row = session.get(BudgetChargeRow, (report.job_id, partner_id))
        job = session.get(JobRow, report.job_id)
        if row is None or job is None or row.settlement != ChargeSettlement.HELD or job.state not in _ENDED:
            continue
        row.epsilon, row.settlement = report.epsilon, ChargeSettlement.NODE_ACCOUNTANT.value
        append_log(
            session,
            job.id,
            f"budget of {partner_id} settled at ε {report.epsilon:.4g} from its node's accountant "
            f"({report.steps} steps)",
            trail=trail,
        )
        trail.commit(
            session,
            EventType.BUDGET_CHARGED,
            actor,
            job_id=job.id,
            partner=partner_id,
            policy_hash=job.policy_hash,
            epsilon=report.epsilon,
            delta=report.delta if 0 <= report.delta < 1 else None,
            details={"settlement": "held_reservation", "steps": report.steps},
        )
        settled.append(job.id)
    return settled
