"""The model registry: model cards with the sha256 of their weights, and the weights themselves.

A job's ServerApp publishes with its job-run credential; the sha256 it states must match the bytes
received. Weights are downloadable by the roles ``permissions`` allows, never by partner services.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from audit import EventType
from audit.lineage_event import ArtefactRef
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from coordinator.platform.jobs import JobState, get_job
from coordinator.platform.principals import Principal
from coordinator.store.tables import ModelRow
from protocol.model_card import fairness_alarms

__all__ = ["MAX_WEIGHTS_BYTES", "get_model", "list_models", "publish_model"]

MAX_WEIGHTS_BYTES = 64 * 1024 * 1024


def publish_model(
    session: Session,
    trail: AuditTrail,
    *,
    actor: Principal,
    job_id: str,
    card: dict[str, Any],
    weights: bytes,
    sha256: str,
) -> ModelRow:
    job = get_job(session, job_id)
    if job.state not in (JobState.RUNNING.value, JobState.FINISHED.value):
        raise ConflictError(f"job {job_id} is {job.state}; it cannot publish a model")
    if len(weights) > MAX_WEIGHTS_BYTES:
        raise InvalidRequestError(f"weights exceed {MAX_WEIGHTS_BYTES} bytes")
    digest = hashlib.sha256(weights).hexdigest()
    if not hmac.compare_digest(digest, sha256.lower()):
        raise InvalidRequestError("the weights do not match the stated sha256")
    row = ModelRow(
        id=f"model-{uuid.uuid4().hex[:16]}",
        job_id=job_id,
        task=job.task,
        card=card,
        artefact_sha256=digest,
        artefact_size=len(weights),
        artefact=weights,
        published_at=trail.clock(),
    )
    session.add(row)
    job.model_id = row.id
    trail.commit(
        session,
        EventType.MODEL_PUBLISHED,
        actor,
        job_id=job_id,
        model_id=row.id,
        policy_hash=job.policy_hash,
        outputs=(ArtefactRef(name="model weights", sha256=digest),),
    )
    for details in fairness_alarms(card):
        trail.record(EventType.MODEL_FAIRNESS_ALARM, actor, job_id=job_id, model_id=row.id, details=details)
    return row


def get_model(session: Session, model_id: str) -> ModelRow:
    row = session.get(ModelRow, model_id)
    if row is None:
        raise NotFoundError(f"model {model_id} does not exist")
    return row


def list_models(
    session: Session, *, task: str | None = None, limit: int | None = None, offset: int = 0
) -> list[ModelRow]:
    """Newest first, without their weights and cards (a list shows neither)."""
    query = select(ModelRow).options(defer(ModelRow.artefact), defer(ModelRow.card))
    if task:
        query = query.where(ModelRow.task == task)
    query = query.order_by(ModelRow.published_at.desc(), ModelRow.id).offset(offset).limit(limit)
    return list(session.scalars(query))


def count_models(session: Session, *, task: str | None = None) -> int:
    query = select(func.count()).select_from(ModelRow)
    return int(session.scalar(query.where(ModelRow.task == task) if task else query) or 0)
