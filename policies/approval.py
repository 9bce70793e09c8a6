"""Multi-party approvals of a policy hash: who decided what, and whether a job may start.

Pure rules over approval records; the coordinator's registry stores them. An approval binds to a
policy's content hash, so approvals of any other hash (an earlier or later version) are void for
the current one. A job may start only when every involved partner's latest decision on the current
hash is an approval (issue 5 item 3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from policies.errors import PolicyError
from policies.policy import DataUsePolicy
from policies.roles import Action, Actor, authorize

__all__ = [
    "Approval",
    "ApprovalBlockedError",
    "ApprovalDecision",
    "ApprovalStatus",
    "PartnerState",
    "approval_blockers",
    "approval_status",
    "check_decision",
]


class ApprovalDecision(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class PartnerState(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    PENDING = "pending"


class ApprovalBlockedError(PolicyError):
    """A data officer's decision cannot be recorded (missing assessment, wrong partner, no reason)."""


@dataclass(frozen=True)
class Approval:
    """One data officer's decision on one policy hash for their partner's node."""

    policy_id: str
    policy_hash: str
    partner: str
    decision: ApprovalDecision
    actor: str
    decided_at: datetime
    reason: str = ""


@dataclass(frozen=True)
class ApprovalStatus:
    """Each involved partner's state on the policy hash ``policy_hash``."""

    policy_id: str
    policy_hash: str
    states: dict[str, PartnerState]
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def approved(self) -> bool:
        return all(state is PartnerState.APPROVED for state in self.states.values())

    def missing(self) -> list[str]:
        """Why the job may not start, one phrase per partner that has not approved."""
        phrases = []
        for partner, state in sorted(self.states.items()):
            if state is PartnerState.REJECTED:
                phrases.append(f"{partner} rejected it ({self.reasons.get(partner, 'no reason given')})")
            elif state is PartnerState.PENDING:
                phrases.append(f"{partner} has not approved it")
        return phrases


def approval_status(
    policy_id: str, policy_hash: str, partners: Iterable[str], approvals: Iterable[Approval]
) -> ApprovalStatus:
    """The latest decision of each partner on ``policy_hash``; decisions on other hashes are void."""
    states = {partner: PartnerState.PENDING for partner in partners}
    reasons: dict[str, str] = {}
    current = sorted(
        (a for a in approvals if a.policy_hash == policy_hash and a.partner in states),
        key=lambda a: a.decided_at,
    )
    for approval in current:
        states[approval.partner] = PartnerState(approval.decision.value)
        reasons[approval.partner] = approval.reason
    return ApprovalStatus(policy_id, policy_hash, states, reasons)


def approval_blockers(policy: DataUsePolicy) -> list[str]:
    """What must be in the policy before any data officer may approve it."""
    blockers = []
    if policy.impact_assessment is None:
        # PIPL Art. 55: assessment before providing PI to others, processing sensitive PI,
        # automated decisions or cross-border transfer; GDPR Art. 35 DPIA for high-risk processing.
        triggers = [
            name
            for name, hit in (
                ("sharing between handlers", policy.shares_between_handlers),
                ("sensitive data", policy.has_sensitive_data),
                ("cross-border transfer", policy.cross_border.allowed),
                ("automated decisions", policy.automated_decisions),
            )
            if hit
        ]
        if triggers:
            blockers.append(
                f"an impact assessment is required before approval ({', '.join(triggers)}; "
                "PIPL Art. 55-56 / GDPR Art. 35)"
            )
    if len(policy.partners) > 1 and not policy.joint_handling_agreement:
        # PIPL Art. 20 / GDPR Art. 26: joint handlers agree their respective duties.
        blockers.append("a joint handling agreement reference is required (PIPL Art. 20 / GDPR Art. 26)")
    return blockers


def check_decision(
    actor: Actor, policy: DataUsePolicy, partner: str, decision: ApprovalDecision, reason: str
) -> None:
    """Raise unless ``actor`` may record ``decision`` on ``policy`` for ``partner``."""
    action = Action.POLICY_APPROVE if decision is ApprovalDecision.APPROVED else Action.POLICY_REJECT
    authorize(actor, action, partner=partner)
    if partner not in policy.partners:
        raise ApprovalBlockedError(f"partner {partner} is not involved in policy {policy.policy_id}")
    if decision is ApprovalDecision.REJECTED and not reason.strip():
        raise ApprovalBlockedError("a rejection needs a reason")
    if decision is ApprovalDecision.APPROVED:
        blockers = approval_blockers(policy)
        if blockers:
            raise ApprovalBlockedError(f"policy {policy.policy_id} cannot be approved: {'; '.join(blockers)}")
