"""Consent records, purpose taxonomy, policy-as-code, roles and the PIPL/GDPR rules (pure library)."""

from policies.approval import ApprovalStatus, approval_status
from policies.consent_filter import ConsentQuery, ConsentSelection, select_consented
from policies.consent_record import ConsentRecord, LawfulBasis, scope_covers
from policies.errors import PolicyError
from policies.evaluation import Decision, UseRequest, evaluate
from policies.jurisdiction import Jurisdiction
from policies.policy import DataUsePolicy, load_policy, parse_policy
from policies.purpose import Purpose
from policies.roles import Action, Actor, Role, authorize

__all__ = [
    "Action",
    "Actor",
    "ApprovalStatus",
    "ConsentQuery",
    "ConsentRecord",
    "ConsentSelection",
    "DataUsePolicy",
    "Decision",
    "Jurisdiction",
    "LawfulBasis",
    "PolicyError",
    "Purpose",
    "Role",
    "UseRequest",
    "approval_status",
    "authorize",
    "evaluate",
    "load_policy",
    "parse_policy",
    "scope_covers",
    "select_consented",
]
