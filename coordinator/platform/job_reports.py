"""What a running job's ServerApp reports with its job-run credential: rounds, refusals, logs, outcome.

Numbers only cross here (round, nodes answered, ε spent, pooled k-member metrics); a node's refusal
carries its partner id and its own reason, which the job shows as "refused by node P: reason".
"""

from __future__ import annotations

import math

from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.budgets import settle
from coordinator.platform.errors import ConflictError, InvalidRequestError
from coordinator.platform.jobs import JobState, append_log, get_job, transition
from coordinator.platform.principals import Principal
from coordinator.store.tables import JobRefusalRow, JobRoundRow, JobRow

__all__ = ["record_log", "record_outcome", "record_progress", "record_refusal", "record_settlement"]


def _running(session: Session, job_id: str) -> JobRow:
    job = get_job(session, job_id)
    if job.state != JobState.RUNNING.value:
        raise ConflictError(f"job {job.id} is {job.state}; only a running job reports")
    return job


def record_progress(
    session: Session,
    trail: AuditTrail,
    *,
    actor: Principal,
    job_id: str,
    round_number: int,
    nodes_answered: int,
    epsilon_spent: float,
    metrics: dict[str, float],
) -> JobRoundRow:
    job = _running(session, job_id)
    if not all(math.isfinite(v) for v in (epsilon_spent, *metrics.values())):
        raise InvalidRequestError("epsilon_spent and metrics must be finite numbers")
    row = session.get(JobRoundRow, (job_id, round_number)) or JobRoundRow(job_id=job_id, round=round_number)
    row.nodes_answered, row.epsilon_spent = nodes_answered, epsilon_spent
    row.metrics, row.recorded_at = dict(metrics), trail.clock()
    session.add(row)
    append_log(
        session,
        job.id,
        f"round {round_number}: {nodes_answered} nodes answered, ε {epsilon_spent:.4g}",
        trail=trail,
    )
    trail.commit(
        session,
        EventType.JOB_ROUND,
        actor,
        job_id=job_id,
        policy_hash=job.policy_hash,
        epsilon=epsilon_spent,
        details={"round": round_number, "nodes_answered": nodes_answered},
    )
    return row


def record_refusal(
    session: Session, trail: AuditTrail, *, actor: Principal, job_id: str, partner_id: str, reason: str
) -> JobRefusalRow:
    job = _running(session, job_id)
    row = JobRefusalRow(job_id=job_id, partner_id=partner_id, reason=reason[:1000], recorded_at=trail.clock())
    session.add(row)
    append_log(
        session, job.id, f"refused by node {partner_id}: {reason[:1000]}", trail=trail, level="warning"
    )
    trail.commit(
        session, EventType.JOB_REFUSED, actor, job_id=job_id, partner=partner_id, policy_hash=job.policy_hash
    )
    return row


def record_settlement(
    session: Session, trail: AuditTrail, *, actor: Principal, job_id: str, partner_id: str, epsilon: float
) -> None:
    """Settle the job's charge on a partner to what the partner's own node accountant reports.

    The node's accountant is the authority (it charges before it sends an update, so lost, late and
    aborted rounds are in its figure): the reservation is replaced by that figure.
    """
    job = _running(session, job_id)
    if not math.isfinite(epsilon) or epsilon < 0:
        raise InvalidRequestError("epsilon must be a finite non-negative number")
    settle(session, job_id=job_id, partner_id=partner_id, epsilon=epsilon)
    append_log(session, job.id, f"budget of {partner_id} settled at ε {epsilon:.4g}", trail=trail)
    trail.commit(
        session,
        EventType.BUDGET_CHARGED,
        actor,
        job_id=job_id,
        partner=partner_id,
        policy_hash=job.policy_hash,
        epsilon=epsilon,
    )


def record_log(session: Session, *, trail: AuditTrail, job_id: str, level: str, message: str) -> None:
    """A log line from the ServerApp (not a state change: no lineage event)."""
    _running(session, job_id)
    append_log(session, job_id, message, trail=trail, level=level)
    session.commit()


def record_outcome(
    session: Session, trail: AuditTrail, *, actor: Principal, job_id: str, finished: bool, reason: str | None
) -> JobRow:
    """The run's end as the ServerApp saw it; refusals recorded earlier name the refusing node."""
    job = _running(session, job_id)
    if finished:
        return transition(session, trail, job, JobState.FINISHED, actor=actor, reason=reason)
    return transition(session, trail, job, JobState.FAILED, actor=actor, reason=reason or "the run failed")
