"""Roles, actions and who may do what: ``authorize(actor, action, partner=…)``.

Four roles (DESIGN.md): an analyst drafts policies and launches jobs; each partner's data officer
approves or rejects policies and handles member requests *for their own node only*; an auditor
reads and verifies; a node takes part in jobs it approved. Separation of duties: the analyst who
launches a job cannot approve it, and no data officer can approve for another partner.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from policies.errors import PolicyError

__all__ = ["PERMISSIONS", "Action", "Actor", "AuthorizationError", "Role", "authorize", "is_authorized"]


class Role(StrEnum):
    ANALYST = "analyst"
    DATA_OFFICER = "data_officer"
    AUDITOR = "auditor"
    NODE = "node"
    # The federation's administrator: registers organisations and issues credentials, nothing more.
    FEDERATION_ADMIN = "federation_admin"
    # A partner's operator: runs the partner's node service; reads, never decides.
    PARTNER_OPERATOR = "partner_operator"
    # A credential minted for one job's ServerApp: reports that job's progress and model only.
    JOB_RUN = "job_run"


class Action(StrEnum):
    POLICY_DRAFT = "policy.draft"
    POLICY_READ = "policy.read"
    POLICY_APPROVE = "policy.approve"
    POLICY_REJECT = "policy.reject"
    JOB_LAUNCH = "job.launch"
    JOB_PARTICIPATE = "job.participate"
    CONSENT_IMPORT = "consent.import"
    CONSENT_WITHDRAW = "consent.withdraw"
    CONSENT_EXPORT = "consent.export"
    CONSENT_ERASE = "consent.erase"
    BUDGET_SET = "budget.set"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    RECORDS_GENERATE = "records.generate"


# Actions a role may only take for its own partner (``partner`` must equal the actor's partner).
PARTNER_SCOPED = frozenset(
    {
        Action.POLICY_APPROVE,
        Action.POLICY_REJECT,
        Action.JOB_PARTICIPATE,
        Action.CONSENT_IMPORT,
        Action.CONSENT_WITHDRAW,
        Action.CONSENT_EXPORT,
        Action.CONSENT_ERASE,
        Action.BUDGET_SET,
    }
)

PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.ANALYST: frozenset({Action.POLICY_DRAFT, Action.POLICY_READ, Action.JOB_LAUNCH}),
    Role.DATA_OFFICER: frozenset(
        {
            Action.POLICY_READ,
            Action.POLICY_APPROVE,
            Action.POLICY_REJECT,
            Action.CONSENT_IMPORT,
            Action.CONSENT_WITHDRAW,
            Action.CONSENT_EXPORT,
            Action.CONSENT_ERASE,
            Action.BUDGET_SET,
            Action.RECORDS_GENERATE,
        }
    ),
    Role.AUDITOR: frozenset(
        {Action.POLICY_READ, Action.AUDIT_READ, Action.AUDIT_VERIFY, Action.RECORDS_GENERATE}
    ),
    Role.NODE: frozenset({Action.POLICY_READ, Action.JOB_PARTICIPATE}),
    Role.FEDERATION_ADMIN: frozenset({Action.POLICY_READ}),
    Role.PARTNER_OPERATOR: frozenset({Action.POLICY_READ}),
    Role.JOB_RUN: frozenset(),
}


class AuthorizationError(PolicyError):
    """The acting identity may not take this action (names role, action and partner only)."""


@dataclass(frozen=True)
class Actor:
    """Who is acting: a role, and for data officers and nodes the partner they act for."""

    role: Role
    partner: str | None = None

    def __post_init__(self) -> None:
        if self.role in (Role.DATA_OFFICER, Role.NODE, Role.PARTNER_OPERATOR) and not self.partner:
            raise ValueError(f"role {self.role.value} acts for a partner: use {self.role.value}:PARTNER")

    @classmethod
    def parse(cls, text: str) -> Actor:
        """Parse ``ROLE`` or ``ROLE:PARTNER`` (``data_officer:freshmart-north``, ``analyst``)."""
        role_text, _, partner = text.strip().partition(":")
        try:
            role = Role(role_text.replace("-", "_"))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {role_text!r} in {text!r}; known roles: {known}") from None
        return cls(role, partner or None)

    def __str__(self) -> str:
        return f"{self.role.value}:{self.partner}" if self.partner else self.role.value


def is_authorized(actor: Actor, action: Action, *, partner: str | None = None) -> bool:
    """Whether ``actor`` may take ``action`` (on ``partner``'s node for partner-scoped actions)."""
    if action not in PERMISSIONS[actor.role]:
        return False
    if action in PARTNER_SCOPED:
        return partner is not None and actor.partner == partner
    return True


def authorize(actor: Actor, action: Action, *, partner: str | None = None) -> None:
    """Raise ``AuthorizationError`` unless ``actor`` may take ``action``."""
    if not is_authorized(actor, action, partner=partner):
        target = f" for partner {partner}" if partner else ""
        raise AuthorizationError(f"{actor} may not {action.value}{target}")
