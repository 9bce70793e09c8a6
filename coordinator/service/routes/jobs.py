"""Jobs: submission, status, logs, stop; and what a job's ServerApp reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response, status
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from coordinator.platform import job_reports, jobs
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.permissions import ApiAction, authorize
from coordinator.service.api_models import (
    EventCreate,
    JobCreated,
    JobPublic,
    LogLinePublic,
    ProgressCreate,
    RefusalPublic,
    RoundPublic,
)
from coordinator.service.dependencies import CurrentPrincipal, SessionDep, TrailDep, service_state
from coordinator.store.tables import JobRow

router = APIRouter(tags=["jobs"])


def _summary_fields(job: JobRow | jobs.AnyRow) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "state": job.state,
        "task": job.task,
        "policy_id": job.policy_id,
        "policy_version": job.policy_version,
        "policy_hash": job.policy_hash,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "reason": job.reason,
        "model_id": job.model_id,
    }


def _public(job: JobRow | jobs.AnyRow) -> JobPublic:
    return JobPublic(**_summary_fields(job))


def _public_detail(detail: jobs.JobDetail) -> JobPublic:
    return JobPublic(
        **_summary_fields(detail.job),
        spec=detail.job.spec,
        rounds=[RoundPublic.model_validate(r, from_attributes=True) for r in detail.rounds],
        refusals=[RefusalPublic.model_validate(r, from_attributes=True) for r in detail.refusals],
    )


def _read_detail(engine: Engine, job_id: str) -> jobs.JobDetail:
    # A connection straight from the pool: a read-only status needs none of a Session's machinery.
    with engine.connect() as connection:
        return jobs.job_detail(connection, job_id)


@router.post("/jobs", response_model=JobCreated, status_code=status.HTTP_201_CREATED)
def submit(
    body: Annotated[dict[str, Any], Body()], principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> JobCreated:
    authorize(principal, ApiAction.JOB_SUBMIT)
    job = jobs.submit_job(session, trail, actor=principal, body=body)
    return JobCreated(job_id=job.id, state=job.state)


@router.get("/jobs", response_model=list[JobPublic])
def list_jobs(
    principal: CurrentPrincipal,
    session: SessionDep,
    response: Response,
    state: str | None = None,
    task: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[JobPublic]:
    """Newest first; with ``limit``, one page of them and the total in ``X-Total-Count``."""
    authorize(principal, ApiAction.JOB_READ)
    rows = jobs.list_jobs(session, state=state, task=task, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(
        jobs.count_jobs(session, state=state, task=task) if limit is not None else len(rows)
    )
    return [_public(job) for job in rows]


@router.get("/jobs/{job_id}", response_model=JobPublic)
async def show(job_id: str, principal: CurrentPrincipal, request: Request) -> Response:
    authorize(principal, ApiAction.JOB_READ)
    state = service_state(request)
    if state.engine.dialect.name == "sqlite":
        # The hottest read of the API (status polling): three indexed rows of a local SQLite file in
        # WAL mode, where readers never wait for the writer, cost less on the event loop than the
        # thread-pool hop (measured: bench/control_plane_bench.py). A network database is called
        # from the thread pool, as every other route does.
        detail = _read_detail(state.engine, job_id)
    else:
        detail = await run_in_threadpool(_read_detail, state.engine, job_id)
    # Serialised once by the model itself: FastAPI would validate the returned model against
    # response_model again (which stays declared for the OpenAPI schema) before encoding it.
    return Response(_public_detail(detail).model_dump_json(), media_type="application/json")


@router.get("/jobs/{job_id}/logs", response_model=list[LogLinePublic])
def logs(
    job_id: str, principal: CurrentPrincipal, session: SessionDep, after: Annotated[int, Query(ge=0)] = 0
) -> list[LogLinePublic]:
    authorize(principal, ApiAction.JOB_READ)
    return [
        LogLinePublic.model_validate(r, from_attributes=True)
        for r in jobs.read_logs(session, job_id, after=after)
    ]


@router.post("/jobs/{job_id}/stop", response_model=JobCreated)
def stop(job_id: str, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep) -> JobCreated:
    authorize(principal, ApiAction.JOB_STOP)
    job = jobs.request_stop(session, trail, actor=principal, job_id=job_id)
    return JobCreated(job_id=job.id, state=job.state)


@router.post("/jobs/{job_id}/progress", status_code=status.HTTP_204_NO_CONTENT)
def progress(
    job_id: str, body: ProgressCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> None:
    authorize(principal, ApiAction.JOB_REPORT, job_id=job_id)
    job_reports.record_progress(
        session,
        trail,
        actor=principal,
        job_id=job_id,
        round_number=body.round,
        nodes_answered=body.nodes_answered,
        epsilon_spent=body.epsilon_spent,
        metrics=body.metrics,
    )


@router.post("/jobs/{job_id}/events", status_code=status.HTTP_204_NO_CONTENT)
def event(
    job_id: str, body: EventCreate, principal: CurrentPrincipal, session: SessionDep, trail: TrailDep
) -> None:
    authorize(principal, ApiAction.JOB_REPORT, job_id=job_id)
    if body.kind == "refusal":
        if body.partner_id is None or not body.reason:
            raise InvalidRequestError("a refusal names partner_id and reason")
        job_reports.record_refusal(
            session, trail, actor=principal, job_id=job_id, partner_id=body.partner_id, reason=body.reason
        )
    elif body.kind == "settlement":
        if body.partner_id is None or body.epsilon is None:
            raise InvalidRequestError("a settlement names partner_id and epsilon")
        job_reports.record_settlement(
            session, trail, actor=principal, job_id=job_id, partner_id=body.partner_id, epsilon=body.epsilon
        )
    elif body.kind == "log":
        job_reports.record_log(
            session, trail=trail, job_id=job_id, level=body.level, message=body.message or ""
        )
    else:
        if body.state is None:
            raise InvalidRequestError("an outcome names state: finished or failed")
        job_reports.record_outcome(
            session,
            trail,
            actor=principal,
            job_id=job_id,
            finished=body.state == "finished",
            reason=body.reason,
        )
