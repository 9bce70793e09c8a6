"""Deterministic synthetic contact identifiers: the same person gets the same phone and email everywhere.

Identifiers are an affine permutation of a person's index modulo 10^9 (a bijection, so they are
unique without any lookup table and can be generated chunk by chunk). Phones are E.164 Chinese
mobile numbers (+86 13x xxxx xxxx, ITU-T E.164 and MIIT numbering plan), emails live under the
RFC 2606 reserved domain example.com, so no real person can ever be contacted by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["ContactIdentifiers", "contact_identifiers", "partner_member_ids"]

_MODULUS = 10**9


@dataclass(frozen=True)
class ContactIdentifiers:
    phone: np.ndarray  # object array of str
    email: np.ndarray


def _affine_permutation(index: np.ndarray, *, seed: int, salt: int) -> np.ndarray:
    rng = np.random.default_rng([seed, salt])
    # a must be coprime with 10^9 = 2^9 * 5^9: odd and not a multiple of 5.
    a = int(rng.integers(1, _MODULUS // 10)) * 10 + int(rng.choice([1, 3, 7, 9]))
    b = int(rng.integers(0, _MODULUS))
    return (index.astype(np.int64) * a + b) % _MODULUS


def contact_identifiers(person_index: np.ndarray, *, seed: int) -> ContactIdentifiers:
    """Phone and email of each person (``person_index``: distinct non-negative integers < 10^9)."""
    phone_digits = pd.Series(_affine_permutation(person_index, seed=seed, salt=1)).astype(str).str.zfill(9)
    email_digits = pd.Series(_affine_permutation(person_index, seed=seed, salt=2)).astype(str).str.zfill(9)
    phone = ("+8613" + phone_digits).to_numpy(dtype=object)
    email = ("shopper" + email_digits + "@example.com").to_numpy(dtype=object)
    return ContactIdentifiers(phone=phone, email=email)


def partner_member_ids(count: int, *, prefix: str, seed: int, salt: int) -> np.ndarray:
    """``count`` distinct member ids like ``FM-0004711`` in a seeded random order.

    Each partner numbers its own members, so member ids never match across partners: PSI has to
    match on phone or email, as it would between real organisations.
    """
    numbers = np.random.default_rng([seed, salt]).permutation(count) + 1
    width = max(7, len(str(count)))
    return (prefix + "-" + pd.Series(numbers).astype(str).str.zfill(width)).to_numpy(dtype=object)
