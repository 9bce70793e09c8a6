"""Jobs: submission, the state machine, the start gate (signed approvals, budgets), logs and stop.

States (``submitted → awaiting_approval → queued → running → finished | failed | stopped``) change
only through ``transition``, which checks the edge, stamps the time, writes a log line and commits
with the lineage event of the new state.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, func, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.budgets import hold_unsettled, reserve_within_caps
from coordinator.platform.decisions import approval_of
from coordinator.platform.errors import ConflictError, NotFoundError
from coordinator.platform.job_body import JobSpec, check_against_policy, parse_job_body
from coordinator.platform.policy_registry import get_version, policy_of
from coordinator.platform.principals import Principal
from coordinator.store.tables import JobLogRow, JobRefusalRow, JobRoundRow, JobRow

__all__ = [
    "TERMINAL",
    "AnyRow",
    "JobDetail",
    "JobState",
    "append_log",
    "check_gate",
    "count_jobs",
    "get_job",
    "job_detail",
    "list_jobs",
    "read_logs",
    "request_stop",
    "submit_job",
    "transition",
]


class JobState(StrEnum):
    SUBMITTED = "submitted"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


TERMINAL = frozenset({JobState.FINISHED, JobState.FAILED, JobState.STOPPED})
_EDGES: dict[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset(
        {JobState.AWAITING_APPROVAL, JobState.QUEUED, JobState.FAILED, JobState.STOPPED}
    ),
    JobState.AWAITING_APPROVAL: frozenset({JobState.QUEUED, JobState.FAILED, JobState.STOPPED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.STOPPED}),
    JobState.RUNNING: frozenset({JobState.FINISHED, JobState.FAILED, JobState.STOPPED}),
}
_EVENT = {
    JobState.AWAITING_APPROVAL: EventType.JOB_SUBMITTED,
    JobState.QUEUED: EventType.JOB_QUEUED,
    JobState.RUNNING: EventType.JOB_STARTED,
    JobState.FINISHED: EventType.JOB_FINISHED,
    JobState.FAILED: EventType.JOB_FAILED,
    JobState.STOPPED: EventType.JOB_STOPPED,
}


# A Core result row of any width (SQLAlchemy 2.1's Row is generic over its column types).
AnyRow = Row[*tuple[Any, ...]]


@dataclass(frozen=True)
class JobDetail:
    """A job's status with its rounds and refusals, as plain rows (read-only, attribute access)."""

    job: AnyRow
    rounds: Sequence[AnyRow]
    refusals: Sequence[AnyRow]


def get_job(session: Session, job_id: str) -> JobRow:
    row = session.get(JobRow, job_id)
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist")
    return row


def append_log(
    session: Session, job_id: str, message: str, *, trail: AuditTrail, level: str = "info"
) -> None:
    """Add a log line (not committed: it belongs to the caller's change)."""
    session.add(JobLogRow(job_id=job_id, time=trail.clock(), level=level, message=message[:2000]))


def transition(
    session: Session,
    trail: AuditTrail,
    job: JobRow,
    to: JobState,
    *,
    actor: Principal | None = None,
    reason: str | None = None,
) -> JobRow:
    current = JobState(job.state)
    if to not in _EDGES.get(current, frozenset()):
        raise ConflictError(f"job {job.id} is {current.value}; it cannot become {to.value}")
    job.state = to.value
    now = trail.clock()
    if to is JobState.RUNNING:
        job.started_at = now
    if to in TERMINAL:
        job.finished_at = now
        held = hold_unsettled(session, job_id=job.id)
        if held:
            # coordinator.budget_recovery: only each node's accountant can say what the job spent.
            message = f"ε reservation held on {', '.join(held)} until each node's accountant reports"
            append_log(session, job.id, message, trail=trail)
    if reason is not None:
        job.reason = reason[:2000]
    append_log(session, job.id, f"state {to.value}" + (f": {reason}" if reason else ""), trail=trail)
    trail.commit(
        session,
        _EVENT.get(to, EventType.JOB_SUBMITTED),
        actor,
        job_id=job.id,
        policy_hash=job.policy_hash,
        details={"state": to.value},
    )
    return job


def submit_job(session: Session, trail: AuditTrail, *, actor: Principal, body: Any) -> JobRow:
    """Record a job in ``submitted`` and run the start gate once."""
    spec = parse_job_body(body)
    assert spec.policy_id is not None  # parse_job_body refuses a job without one
    version = get_version(session, spec.policy_id, spec.policy_version)
    check_against_policy(spec, policy_of(version), version.policy_hash)
    job_id = f"job-{uuid.uuid4().hex[:16]}"
    spec = spec.model_copy(update={"job_id": job_id, "policy_version": version.version})
    job = JobRow(
        id=job_id,
        state=JobState.SUBMITTED.value,
        task=spec.task.value,
        spec=spec.model_dump(mode="json"),
        policy_id=version.policy_id,
        policy_version=version.version,
        policy_hash=version.policy_hash,
        submitted_by=actor.id,
        submitted_at=trail.clock(),
        stop_requested=False,
    )
    session.add(job)
    session.flush()  # the job row first: its log lines and reservations refer to it
    append_log(
        session,
        job.id,
        f"submitted by {actor.name} on policy {version.policy_id} v{version.version}",
        trail=trail,
    )
    return check_gate(session, trail, job, actor=actor)


def check_gate(session: Session, trail: AuditTrail, job: JobRow, *, actor: Principal | None = None) -> JobRow:
    """Move a submitted/awaiting job on: wait for approvals, fail on a rejection or budget, else queue."""
    version = get_version(session, job.policy_id, job.policy_version)
    status = approval_of(session, version)
    rejected = [p for p in status.missing() if "rejected" in p]
    if rejected:
        return transition(session, trail, job, JobState.FAILED, actor=actor, reason="; ".join(rejected))
    if not status.approved:
        if job.state == JobState.SUBMITTED.value:
            return transition(
                session,
                trail,
                job,
                JobState.AWAITING_APPROVAL,
                actor=actor,
                reason="; ".join(status.missing()),
            )
        return job
    spec = JobSpec.model_validate(job.spec)
    year = trail.clock().year
    partners = policy_of(version).partners
    shortfalls = reserve_within_caps(
        session, job_id=job.id, partners=partners, epsilon=spec.epsilon, year=year, trail=trail
    )
    if shortfalls:
        return transition(session, trail, job, JobState.FAILED, actor=actor, reason="; ".join(shortfalls))
    return transition(session, trail, job, JobState.QUEUED, actor=actor, reason="approved by every partner")


def _jobs_where(query: Select[Any], state: str | None, task: str | None) -> Select[Any]:
    if state:
        query = query.where(JobRow.state == state)
    if task:
        query = query.where(JobRow.task == task)
    return query


def list_jobs(
    session: Session,
    *,
    state: str | None = None,
    task: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[JobRow]:
    """Newest first; ``limit`` and ``offset`` page through them (no limit: every job)."""
    query = _jobs_where(select(JobRow), state, task).order_by(JobRow.submitted_at.desc(), JobRow.id)
    return list(session.scalars(query.offset(offset).limit(limit)))


def count_jobs(session: Session, *, state: str | None = None, task: str | None = None) -> int:
    return int(session.scalar(_jobs_where(select(func.count()).select_from(JobRow), state, task)) or 0)


_JOBS, _ROUNDS, _REFUSALS = JobRow.__table__, JobRoundRow.__table__, JobRefusalRow.__table__
# Built once: constructing a statement costs about as much as running it on SQLite.
_JOB_BY_ID = select(_JOBS).where(_JOBS.c.id == bindparam("job_id"))
_ROUNDS_OF_JOB = (
    select(_ROUNDS.c.round, _ROUNDS.c.nodes_answered, _ROUNDS.c.epsilon_spent, _ROUNDS.c.metrics)
    .where(_ROUNDS.c.job_id == bindparam("job_id"))
    .order_by(_ROUNDS.c.round)
)
_REFUSALS_OF_JOB = (
    select(_REFUSALS.c.partner_id, _REFUSALS.c.reason)
    .where(_REFUSALS.c.job_id == bindparam("job_id"))
    .order_by(_REFUSALS.c.id)
)


def job_detail(source: Session | Connection, job_id: str) -> JobDetail:
    """A job's status read with Core statements on a connection (or a session's): status polling is
    the API's hottest read, and for it the ORM's execution path, identity map and instance loading
    cost more than the queries themselves."""
    connection = source.connection() if isinstance(source, Session) else source
    key = {"job_id": job_id}
    job = connection.execute(_JOB_BY_ID, key).one_or_none()
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    rounds = connection.execute(_ROUNDS_OF_JOB, key).all()
    refusals = connection.execute(_REFUSALS_OF_JOB, key).all()
    return JobDetail(job, rounds, refusals)


def read_logs(session: Session, job_id: str, *, after: int = 0, limit: int = 1000) -> list[JobLogRow]:
    get_job(session, job_id)
    query = select(JobLogRow).where(JobLogRow.job_id == job_id, JobLogRow.seq > after)
    return list(session.scalars(query.order_by(JobLogRow.seq).limit(limit)))


def request_stop(session: Session, trail: AuditTrail, *, actor: Principal, job_id: str) -> JobRow:
    """Stop a job: at once if it has not started, else flag it for the runner to stop its Flower run."""
    job = get_job(session, job_id)
    state = JobState(job.state)
    if state in TERMINAL:
        raise ConflictError(f"job {job_id} is already {state.value}")
    if state is JobState.RUNNING:
        job.stop_requested = True
        append_log(session, job.id, f"stop requested by {actor.name}", trail=trail)
        details = {"state": "stop_requested"}
        trail.commit(
            session, EventType.JOB_STOPPED, actor, job_id=job.id, policy_hash=job.policy_hash, details=details
        )
        return job
    return transition(session, trail, job, JobState.STOPPED, actor=actor, reason=f"stopped by {actor.name}")
