"""A job's run on the deployment engine, as the control plane records it: start, fail, stop.

``begin_run`` mints the job-run credential (role ``job_run``, bound to this job only) that the
ServerApp uses to report progress, and moves the job to ``running``; the token is handed to the
run's configuration and never stored (its digest is).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.decisions import signed_decisions_for_hash
from coordinator.platform.errors import ConflictError
from coordinator.platform.jobs import JobState, append_log, get_job, transition
from coordinator.platform.organisations import OrganisationKind
from coordinator.platform.policy_registry import get_version, policy_of
from coordinator.platform.principals import ADMIN_ORGANISATION, create_principal
from coordinator.store.tables import (
    DecisionRow,
    JobRoundRow,
    JobRow,
    OfficerKeyRow,
    OrganisationRow,
    PrincipalRow,
)
from policies.roles import Role
from protocol import JobSpec, RunConfigKey, SignedDecisionRecord

__all__ = [
    "begin_run",
    "finish_run",
    "job_spec_for_run",
    "jobs_in",
    "members_may_overlap",
    "note",
    "resume_run",
    "run_config",
    "run_partners",
]


def jobs_in(session: Session, *states: JobState) -> list[JobRow]:
    query = select(JobRow).where(JobRow.state.in_([s.value for s in states])).order_by(JobRow.submitted_at)
    return list(session.scalars(query))


def gate_inputs_version(session: Session) -> tuple[object, ...]:
    """What a waiting job's gate reads that can change while it waits: officers' decisions and
    keys (counts and newest entries, so an insert or a deletion both show). Equal versions mean every
    job still awaiting approval would stay where it is."""
    decisions = session.execute(select(func.count(), func.max(DecisionRow.id))).one()
    keys = session.execute(select(func.count(), func.max(OfficerKeyRow.registered_at))).one()
    return (*decisions, *keys)


def run_partners(session: Session, job: JobRow) -> tuple[str, ...]:
    return policy_of(get_version(session, job.policy_id, job.policy_version)).partners


def job_spec_for_run(session: Session, job: JobRow) -> JobSpec:
    """The job spec the ServerApp and every node receive: the submitted spec, the job id, the policy
    hash and every signed decision on it (nodes verify their own officer's signature themselves)."""
    decisions = [
        SignedDecisionRecord(**d.to_dict()) for d in signed_decisions_for_hash(session, job.policy_hash)
    ]
    return JobSpec.model_validate(
        dict(job.spec)
        | {
            "job_id": job.id,
            "policy_id": job.policy_id,
            "policy_version": job.policy_version,
            "policy_hash": job.policy_hash,
            "signed_decisions": decisions,
        }
    )


def begin_run(session: Session, trail: AuditTrail, *, job_id: str) -> str:
    """Mint the job-run token and mark the job running; returns the token (shown once)."""
    job = get_job(session, job_id)
    if job.state != JobState.QUEUED.value:
        raise ConflictError(f"job {job_id} is {job.state}; only a queued job starts")
    _principal, token = create_principal(
        session,
        name="job run",
        role=Role.JOB_RUN,
        organisation=ADMIN_ORGANISATION,
        now=trail.clock(),
        job_id=job_id,
    )
    transition(session, trail, job, JobState.RUNNING, reason="Flower run starting")
    return token


def resume_run(
    session: Session, trail: AuditTrail, *, job_id: str, ended_run: str, ended_status: str, after_round: int
) -> str:
    """A running job whose Flower run was lost goes on from its checkpoint: the lost run's credential
    is revoked, a new one minted (returned, shown once), and the audit log records the gap: the run
    that ended, the last round it finished and when, and when the job resumed."""
    job = get_job(session, job_id)
    if job.state != JobState.RUNNING.value:
        raise ConflictError(f"job {job_id} is {job.state}; only a running job resumes")
    now = trail.clock()
    for row in session.scalars(select(PrincipalRow).where(PrincipalRow.job_id == job_id)):
        row.revoked_at = row.revoked_at or now
    _principal, token = create_principal(
        session, name="job run", role=Role.JOB_RUN, organisation=ADMIN_ORGANISATION, now=now, job_id=job_id
    )
    last = session.scalar(select(func.max(JobRoundRow.recorded_at)).where(JobRoundRow.job_id == job_id))
    # The gap, as numbers and tokens (the audit log takes no free text): when the last round was
    # recorded and when the job resumed, in Unix seconds.
    gap: dict[str, int | float | str] = {
        "state": "resumed",
        "resumed_after_round": after_round,
        "ended_status": ended_status.replace(":", ".") if ended_status else "unknown",
        "resumed_at_unix": now.timestamp(),
    }
    if ended_run.isdigit():
        gap["ended_run"] = int(ended_run)
    if last is not None:
        gap["last_round_at_unix"] = last.timestamp()
        gap["gap_seconds"] = round(now.timestamp() - last.timestamp(), 3)
    append_log(
        session,
        job_id,
        f"Flower run {ended_run} ended ({ended_status}); resuming after round {after_round}",
        trail=trail,
    )
    trail.commit(
        session, EventType.JOB_STARTED, None, job_id=job_id, policy_hash=job.policy_hash, details=gap
    )
    return token


def finish_run(session: Session, trail: AuditTrail, *, job_id: str, state: JobState, reason: str) -> None:
    """End a run from the coordinator's side (stop, launch failure) and revoke its credential."""
    job = get_job(session, job_id)
    if JobState(job.state) not in (JobState.QUEUED, JobState.RUNNING):
        return
    for row in session.scalars(select(PrincipalRow).where(PrincipalRow.job_id == job_id)):
        row.revoked_at = trail.clock()
    transition(session, trail, job, state, reason=reason)


def members_may_overlap(session: Session, partners: tuple[str, ...]) -> bool:
    """Whether a member may sit at several of ``partners``: yes unless every one is a store group.

    Each member homes at exactly one of a retailer's store groups; a brand partner (a pharmacy, a
    fuel brand) can hold the same person again. The model card composes ε across nodes accordingly.
    """
    kinds = session.scalars(select(OrganisationRow.kind).where(OrganisationRow.id.in_(partners)))
    found = list(kinds)
    return len(found) < len(partners) or any(kind != OrganisationKind.STORE_GROUP for kind in found)


def run_config(
    spec: JobSpec,
    *,
    expected_nodes: int,
    coordinator_url: str,
    token: str,
    ca: str,
    members_may_overlap: bool = True,
    checkpoint_dir: str = "",
) -> str:
    """The run's configuration as a TOML document for ``flwr run --run-config FILE.toml``.

    A file, not ``key=value`` pairs: Flower's pair syntax cannot carry a quoted JSON value. Each
    string is written by ``json.dumps`` (ASCII, escapes ``\\ \\" \\n \\uXXXX``), which is
    also a valid TOML basic string (TOML 1.0 §String).
    """
    values: dict[str, Any] = {
        RunConfigKey.JOB_SPEC: spec.to_wire(),
        RunConfigKey.EXPECTED_NODES: expected_nodes,
        RunConfigKey.COORDINATOR_URL: coordinator_url,
        RunConfigKey.JOB_TOKEN: token,
        RunConfigKey.COORDINATOR_CA: ca,
        RunConfigKey.MEMBERS_MAY_OVERLAP: members_may_overlap,
        RunConfigKey.CHECKPOINT_DIR: checkpoint_dir,
    }
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def note(session: Session, trail: AuditTrail, job: JobRow, message: str) -> None:
    append_log(session, job.id, message, trail=trail)
    session.commit()
