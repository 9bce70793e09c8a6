"""Jurisdictions whose data-protection law a node or a policy is under, and the rules that differ.

Two laws are mapped: China's Personal Information Protection Law (PIPL, 2021) and the EU General
Data Protection Regulation (GDPR, 2016/679). A partner's ``region`` (``federation.toml``) names its
jurisdiction: ``CN`` (and ``CN-*``) is PIPL, ``EU`` / ``EEA`` and the EU member-state codes are
GDPR. Where a rule applies under both, the stricter value wins (``strictest``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from policies.consent_record import LawfulBasis
from policies.time_limit import LimitUnit, TimeLimit

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "LEGAL_ERASURE_LIMITS",
    "Jurisdiction",
    "allowed_lawful_bases",
    "erasure_deadline",
    "guardian_consent_age",
    "jurisdiction_of_region",
    "legal_erasure_limit",
    "legal_erasure_source",
]


class Jurisdiction(StrEnum):
    """The law a node or a policy is under."""

    CN = "CN"  # PIPL
    EU = "EU"  # GDPR


# EU member states plus the EEA states (IS, LI, NO) where the GDPR applies through the EEA Agreement.
_EU_MEMBER_STATES = frozenset(
    {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "IE", "IT", "LV"}
    | {"LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO"}
)

# Default retention of member data used for analytics: 3 years. Neither law fixes a number; both
# require "no longer than necessary" (PIPL Art. 19, GDPR Art. 5(1)(e)); 3 years matches the usual
# loyalty-programme inactivity window and is configurable per policy.
DEFAULT_RETENTION_DAYS = 3 * 365

# PIPL Art. 13 lists the legal bases; it has no "legitimate interests" basis (unlike GDPR
# Art. 6(1)(f)). GDPR Art. 6(1)(a)-(f) lists six bases.
_LAWFUL_BASES: dict[Jurisdiction, frozenset[LawfulBasis]] = {
    Jurisdiction.CN: frozenset(
        {
            LawfulBasis.CONSENT,
            LawfulBasis.GUARDIAN_CONSENT,
            LawfulBasis.CONTRACT,
            LawfulBasis.LEGAL_OBLIGATION,
            LawfulBasis.VITAL_INTERESTS,
            LawfulBasis.PUBLIC_TASK,
        }
    ),
    Jurisdiction.EU: frozenset(LawfulBasis),
}

# PIPL Art. 31: personal information of minors under 14 needs the consent of a parent or guardian.
# GDPR Art. 8(1): information-society services need parental consent under 16 (member states may
# lower it to 13; 16 is the regulation's default).
_GUARDIAN_AGE: dict[Jurisdiction, int] = {Jurisdiction.CN: 14, Jurisdiction.EU: 16}


def jurisdiction_of_region(region: str) -> Jurisdiction | None:
    """Return the jurisdiction of a region code (``CN``, ``CN-SH``, ``EU``, ``DE``…) or None if unmapped."""
    code = region.strip().upper().split("-")[0]
    if code == "CN":
        return Jurisdiction.CN
    if code in {"EU", "EEA"} or code in _EU_MEMBER_STATES:
        return Jurisdiction.EU
    return None


def allowed_lawful_bases(jurisdiction: Jurisdiction) -> frozenset[LawfulBasis]:
    """The lawful bases a policy under ``jurisdiction`` may claim (PIPL Art. 13 / GDPR Art. 6)."""
    return _LAWFUL_BASES[jurisdiction]


def guardian_consent_age(jurisdictions: frozenset[Jurisdiction] | set[Jurisdiction]) -> int:
    """Age under which a guardian's consent is needed; the strictest of ``jurisdictions`` wins."""
    if not jurisdictions:
        raise ValueError("at least one jurisdiction is needed to decide the guardian-consent age")
    return max(_GUARDIAN_AGE[j] for j in jurisdictions)


def erasure_deadline(
    received_at: datetime, jurisdictions: frozenset[Jurisdiction] | set[Jurisdiction]
) -> datetime:
    """Legal deadline to complete an erasure request received at ``received_at``.

    GDPR Art. 12(3): act on a data-subject request "without undue delay and in any event within one
    month of receipt". PIPL Art. 47 requires deletion "in a timely manner" (及时) without a number;
    the national standard GB/T 35273-2020 §8.7 c) sets a response limit of 30 days. The stricter
    (earlier) of the applicable limits is returned, so a request received on 31 January under both
    laws is due on 28/29 February (one calendar month), not on 2 March (30 days). Shorter limits
    (a sector rule, the programme's own promise) are applied by `policies.retention.ErasureRules`.
    """
    return min(legal_erasure_limit(j).due(received_at) for j in _at_least_one(jurisdictions))


def legal_erasure_limit(jurisdiction: Jurisdiction) -> TimeLimit:
    """The longest time the law of ``jurisdiction`` allows for an erasure request (see above)."""
    return LEGAL_ERASURE_LIMITS[jurisdiction][0]


def legal_erasure_source(jurisdiction: Jurisdiction) -> str:
    """The provision that sets ``legal_erasure_limit(jurisdiction)``, as a short token."""
    return LEGAL_ERASURE_LIMITS[jurisdiction][1]


def _at_least_one(
    jurisdictions: frozenset[Jurisdiction] | set[Jurisdiction],
) -> frozenset[Jurisdiction] | set[Jurisdiction]:
    if not jurisdictions:
        raise ValueError("at least one jurisdiction is needed to compute an erasure deadline")
    return jurisdictions


# GDPR Art. 12(3): one month; PIPL Art. 47 read with GB/T 35273-2020 §8.7 c): 30 days.
LEGAL_ERASURE_LIMITS: dict[Jurisdiction, tuple[TimeLimit, str]] = {
    Jurisdiction.EU: (TimeLimit(1, LimitUnit.MONTHS), "gdpr.art12.3"),
    Jurisdiction.CN: (TimeLimit(30, LimitUnit.DAYS), "pipl.art47.gbt35273"),
}
