"""Seeded consent records at the documented demo rates.

Rates (share of a partner's members who granted each purpose): 90 % churn model, 90 % propensity
model, 60 % cross-brand matching and 40 % points interchange (both scoped to the federation);
5 % of the granted consents are later withdrawn. Each partner collects its own consents (PIPL
Art. 14 and GDPR Art. 7: consent is given to a controller, per purpose), so they are drawn
independently per partner. A member who gave the programme demographic bands gave with them the
separate sensitive-data consent (PIPL Art. 29 / GDPR Art. 9(2)(a)) for the analytics purposes'
fairness checks: the ``sensitive`` flag of their churn and propensity consents.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from policies.purpose import CONSENT_SCOPE_FEDERATION, CONSENT_SCOPE_OWN, Purpose

__all__ = ["CONSENT_RATES", "CONSENT_SCOPES", "WITHDRAWN_SHARE", "generate_consents"]

CONSENT_RATES: dict[Purpose, float] = {
    Purpose.CHURN_MODEL: 0.90,
    Purpose.PROPENSITY_MODEL: 0.90,
    Purpose.CROSS_BRAND_MATCHING: 0.60,
    Purpose.POINTS_INTERCHANGE: 0.40,
}
CONSENT_SCOPES: dict[Purpose, str] = {
    Purpose.CHURN_MODEL: CONSENT_SCOPE_OWN,
    Purpose.PROPENSITY_MODEL: CONSENT_SCOPE_OWN,
    Purpose.CROSS_BRAND_MATCHING: CONSENT_SCOPE_FEDERATION,
    Purpose.POINTS_INTERCHANGE: CONSENT_SCOPE_FEDERATION,
}
WITHDRAWN_SHARE = 0.05
_SENSITIVE_PURPOSES = frozenset({Purpose.CHURN_MODEL, Purpose.PROPENSITY_MODEL})
_GRANT_DELAY = np.timedelta64(60, "D")  # consent asked at enrolment or within the following weeks
_SECOND = np.timedelta64(1, "s")


def generate_consents(
    member_ids: np.ndarray,
    joined_at: np.ndarray,
    *,
    rng: np.random.Generator,
    end: np.datetime64,
    sensitive: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per granted (member, purpose), in the order of ``member_ids`` then purpose.

    ``sensitive`` (one boolean per member, default none) marks the members whose analytics
    consents carry the separate sensitive-data consent; it draws nothing from ``rng``.
    """
    joined = joined_at.astype("datetime64[s]")
    end_s = end.astype("datetime64[s]")
    members, purposes, granted_parts, withdrawn_parts = [], [], [], []
    for order, rate in enumerate(CONSENT_RATES.values()):
        chosen = np.flatnonzero(rng.random(len(member_ids)) < rate)
        start = joined[chosen]
        room = np.minimum(_GRANT_DELAY, np.maximum(end_s - start, np.timedelta64(0, "s")))
        granted = start + (rng.random(len(start)) * room.astype(np.int64)).astype(np.int64) * _SECOND
        withdrawn = np.full(len(start), np.datetime64("NaT"), dtype="datetime64[s]")
        withdrawing = rng.random(len(start)) < WITHDRAWN_SHARE
        span = (end_s - granted[withdrawing]).astype(np.int64)
        delay = (rng.random(int(withdrawing.sum())) * span).astype(np.int64) * _SECOND
        withdrawn[withdrawing] = granted[withdrawing] + delay
        members.append(chosen)
        purposes.append(np.full(len(chosen), order))
        granted_parts.append(granted)
        withdrawn_parts.append(withdrawn)
    member, purpose = np.concatenate(members), np.concatenate(purposes)
    rows = np.lexsort((purpose, member))  # integer sort: much cheaper than sorting id strings
    names = np.array([p.value for p in CONSENT_RATES], dtype=object)
    analytics = np.array([p in _SENSITIVE_PURPOSES for p in CONSENT_RATES])
    given = np.zeros(len(member_ids), dtype=bool) if sensitive is None else np.asarray(sensitive, dtype=bool)
    scopes = np.array([CONSENT_SCOPES[p] for p in CONSENT_RATES], dtype=object)
    return pd.DataFrame(
        {
            "member_id": member_ids[member[rows]],
            "purpose": names[purpose[rows]],
            "granted_at": np.concatenate(granted_parts)[rows].astype("datetime64[us]"),
            "expires_at": np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[us]"),
            "withdrawn_at": np.concatenate(withdrawn_parts)[rows].astype("datetime64[us]"),
            "lawful_basis": "consent",
            "scope": scopes[purpose[rows]],
            "cross_border": np.zeros(len(rows), dtype=bool),
            "sensitive": given[member[rows]] & analytics[purpose[rows]],
        }
    )
