"""Data officers' signed decisions on policy versions, and whether a policy hash is approved.

The coordinator verifies each signature against the officer keys registered for the signer's
organisation (early refusal) and stores the statement exactly as signed; nodes fetch the statements
and verify them with keys they were configured with locally. Replays are refused: a nonce is
accepted once, and a decision older than the newest stored one for (policy hash, partner) is refused.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import ConflictError, InvalidRequestError
from coordinator.platform.organisations import officer_keys, officer_keys_of
from coordinator.platform.policy_registry import get_version, policy_of
from coordinator.platform.principals import Principal
from coordinator.store.tables import DecisionRow, PolicyVersionRow
from policies.approval import (
    Approval,
    ApprovalDecision,
    ApprovalStatus,
    approval_blockers,
    approval_status,
)
from policies.signed_approval import (
    DecisionStatement,
    SignatureRejectedError,
    SignedDecision,
    public_key_from_b64,
)

__all__ = ["approval_of", "approvals_of", "decisions_for", "record_decision", "signed_decisions_for_hash"]


def _verify(
    session: Session, row: PolicyVersionRow, actor: Principal, signed: SignedDecision
) -> DecisionStatement:
    keys = [public_key_from_b64(key) for key in officer_keys(session, actor.organisation)]
    statement = signed.verify_for(keys, policy_hash=row.policy_hash, partner_id=actor.organisation)
    if statement.policy_id != row.policy_id or statement.policy_version != row.version:
        raise SignatureRejectedError()
    return statement


def _refuse_replay(session: Session, statement: DecisionStatement) -> None:
    if session.scalar(select(DecisionRow.id).where(DecisionRow.nonce == statement.nonce)) is not None:
        raise ConflictError("this signed decision was already recorded (replayed nonce)")
    newest = session.scalar(
        select(DecisionRow.signed_at)
        .where(
            DecisionRow.policy_hash == statement.policy_hash, DecisionRow.partner_id == statement.partner_id
        )
        .order_by(DecisionRow.signed_at.desc())
        .limit(1)
    )
    if newest is not None and statement.signed_at < newest:
        raise ConflictError("a newer decision of this partner on this policy version is recorded")


def record_decision(
    session: Session,
    trail: AuditTrail,
    *,
    actor: Principal,
    policy_id: str,
    version: int,
    signed: SignedDecision,
    reason: str = "",
) -> DecisionRow:
    """Verify and store one officer's signed decision on ``policy_id`` version ``version``."""
    row = get_version(session, policy_id, version)
    policy = policy_of(row)
    statement = _verify(session, row, actor, signed)
    if statement.partner_id not in policy.partners:
        raise InvalidRequestError(f"partner {statement.partner_id} is not involved in policy {policy_id}")
    if statement.decision is ApprovalDecision.REJECTED and not reason.strip():
        raise InvalidRequestError("a rejection needs a reason")
    blockers = approval_blockers(policy) if statement.decision is ApprovalDecision.APPROVED else []
    if blockers:
        raise InvalidRequestError(f"policy {policy_id} cannot be approved: {'; '.join(blockers)}")
    _refuse_replay(session, statement)
    decision = DecisionRow(
        policy_id=row.policy_id,
        policy_version=row.version,
        policy_hash=row.policy_hash,
        partner_id=statement.partner_id,
        decision=statement.decision.value,
        statement=signed.statement,
        signature=signed.signature,
        nonce=statement.nonce,
        reason=reason.strip(),
        signed_at=statement.signed_at,
        recorded_by=actor.id,
        recorded_at=trail.clock(),
    )
    session.add(decision)
    event = (
        EventType.POLICY_APPROVED
        if statement.decision is ApprovalDecision.APPROVED
        else EventType.POLICY_REJECTED
    )
    trail.commit(
        session,
        event,
        actor,
        partner=statement.partner_id,
        policy_hash=row.policy_hash,
        purpose=policy.purpose.value,
        details={"version": row.version},
    )
    return decision


def decisions_for(session: Session, policy_id: str, version: int) -> list[DecisionRow]:
    row = get_version(session, policy_id, version)
    query = select(DecisionRow).where(DecisionRow.policy_hash == row.policy_hash)
    return list(session.scalars(query.order_by(DecisionRow.signed_at, DecisionRow.id)))


def signed_decisions_for_hash(session: Session, policy_hash: str) -> list[SignedDecision]:
    query = select(DecisionRow).where(DecisionRow.policy_hash == policy_hash).order_by(DecisionRow.signed_at)
    return [SignedDecision(row.statement, row.signature) for row in session.scalars(query)]


@functools.lru_cache(maxsize=8192)
def _verified_statement(
    statement: str, signature: str, keys: tuple[str, ...], policy_hash: str, partner_id: str
) -> DecisionStatement | None:
    """The statement if one of ``keys`` signed exactly these bytes for this hash and partner.

    Pure in its arguments (the stored bytes and the registered keys, as read at each call), so a
    repeated read of the same row reuses the result instead of redoing the Ed25519 verification.
    """
    try:
        return SignedDecision(statement, signature).verify_for(
            [public_key_from_b64(key) for key in keys], policy_hash=policy_hash, partner_id=partner_id
        )
    except SignatureRejectedError:
        return None


def _verified(rows: Iterable[DecisionRow], keys: Mapping[str, tuple[str, ...]]) -> list[Approval]:
    """Re-verify every stored statement: an edited row (decision flipped in the database) is ignored."""
    approvals = []
    for row in rows:
        statement = _verified_statement(
            row.statement, row.signature, keys.get(row.partner_id, ()), row.policy_hash, row.partner_id
        )
        if statement is None:
            continue
        approvals.append(
            Approval(
                policy_id=statement.policy_id,
                policy_hash=statement.policy_hash,
                partner=statement.partner_id,
                decision=statement.decision,
                actor=row.recorded_by,
                decided_at=statement.signed_at,
                reason=row.reason,
            )
        )
    return approvals


def approvals_of(session: Session, rows: Sequence[PolicyVersionRow]) -> list[ApprovalStatus]:
    """``approval_of`` each version in ``rows`` (same order), with two queries in all: every
    decision on their hashes, then the officer keys of every partner that decided."""
    decided: dict[str, list[DecisionRow]] = defaultdict(list)
    hashes = {row.policy_hash for row in rows}
    if hashes:
        query = select(DecisionRow).where(DecisionRow.policy_hash.in_(hashes)).order_by(DecisionRow.id)
        for decision in session.scalars(query):
            decided[decision.policy_hash].append(decision)
    keys = officer_keys_of(session, {d.partner_id for found in decided.values() for d in found})
    return [
        approval_status(
            row.policy_id, row.policy_hash, policy_of(row).partners, _verified(decided[row.policy_hash], keys)
        )
        for row in rows
    ]


def approval_of(session: Session, row: PolicyVersionRow) -> ApprovalStatus:
    """Each involved partner's verified latest decision on this version's hash."""
    return approvals_of(session, [row])[0]
