"""Policies as the coordinator keeps them: drafts, numbered versions by content hash, diffs.

A policy document is validated by ``policies.parse_policy``; its content hash identifies the
version. Posting a changed document under the same ``policy_id`` makes a new version (and voids
every decision on the older hash, ``policies.approval``); posting the same document again returns
the existing version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import InvalidRequestError, NotFoundError
from coordinator.platform.principals import Principal
from coordinator.store.tables import PolicyVersionRow
from policies.errors import PolicyError
from policies.policy import DataUsePolicy, parse_policy

__all__ = [
    "FieldChange",
    "diff_versions",
    "draft_policy",
    "get_version",
    "latest_versions",
    "policy_of",
    "versions",
]


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


def policy_of(row: PolicyVersionRow) -> DataUsePolicy:
    return parse_policy(dict(row.document), source=f"policy {row.policy_id} v{row.version}")


def draft_policy(session: Session, trail: AuditTrail, *, actor: Principal, document: Any) -> PolicyVersionRow:
    if not isinstance(document, dict):
        raise InvalidRequestError("document must be a policy mapping (JSON object)")
    try:
        policy = parse_policy(document, source="document")
    except PolicyError as err:
        raise InvalidRequestError(str(err)) from err
    digest = policy.content_hash()
    existing = session.scalar(select(PolicyVersionRow).where(PolicyVersionRow.policy_hash == digest))
    if existing is not None:
        return existing
    query = select(func.max(PolicyVersionRow.version)).where(PolicyVersionRow.policy_id == policy.policy_id)
    version = (session.scalar(query) or 0) + 1
    row = PolicyVersionRow(
        policy_id=policy.policy_id,
        version=version,
        policy_hash=digest,
        document=policy.model_dump(mode="json"),
        drafted_by=actor.id,
        drafted_at=trail.clock(),
    )
    session.add(row)
    trail.commit(
        session,
        EventType.POLICY_DRAFTED,
        actor,
        policy_hash=digest,
        purpose=policy.purpose.value,
        partners=policy.partners,
        details={"version": version},
    )
    return row


def get_version(session: Session, policy_id: str, version: int | None = None) -> PolicyVersionRow:
    """One version of a policy, the latest when ``version`` is None."""
    query = select(PolicyVersionRow).where(PolicyVersionRow.policy_id == policy_id)
    if version is not None:
        query = query.where(PolicyVersionRow.version == version)
    row = session.scalar(query.order_by(PolicyVersionRow.version.desc()).limit(1))
    if row is None:
        suffix = f" version {version}" if version is not None else ""
        raise NotFoundError(f"policy {policy_id}{suffix} does not exist")
    return row


def versions(session: Session, policy_id: str) -> list[PolicyVersionRow]:
    query = select(PolicyVersionRow).where(PolicyVersionRow.policy_id == policy_id)
    rows = list(session.scalars(query.order_by(PolicyVersionRow.version)))
    if not rows:
        raise NotFoundError(f"policy {policy_id} does not exist")
    return rows


def latest_versions(session: Session) -> list[PolicyVersionRow]:
    newest = (
        select(PolicyVersionRow.policy_id, func.max(PolicyVersionRow.version).label("v"))
        .group_by(PolicyVersionRow.policy_id)
        .subquery()
    )
    query = select(PolicyVersionRow).join(
        newest, (PolicyVersionRow.policy_id == newest.c.policy_id) & (PolicyVersionRow.version == newest.c.v)
    )
    return list(session.scalars(query.order_by(PolicyVersionRow.policy_id)))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat |= _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: value}


def diff_versions(session: Session, policy_id: str, before: int, after: int) -> list[FieldChange]:
    """Field-by-field changes from version ``before`` to version ``after`` (dotted paths)."""
    old = _flatten(get_version(session, policy_id, before).document)
    new = _flatten(get_version(session, policy_id, after).document)
    return [
        FieldChange(path, old.get(path), new.get(path))
        for path in sorted(old.keys() | new.keys())
        if old.get(path) != new.get(path)
    ]
