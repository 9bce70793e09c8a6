"""Consent records, purpose taxonomy, policy-as-code, roles and the PIPL/GDPR rules (pure library)."""

from policies.consent_filter import ConsentQuery, ConsentSelection, select_consented
from policies.consent_record import ConsentRecord, LawfulBasis, scope_covers
from policies.errors import PolicyError
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose

__all__ = [
    "ConsentQuery",
    "ConsentRecord",
    "ConsentSelection",
    "Jurisdiction",
    "LawfulBasis",
    "PolicyError",
    "Purpose",
    "scope_covers",
    "select_consented",
]
