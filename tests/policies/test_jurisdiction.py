"""Jurisdiction rules: lawful bases, guardian age, erasure deadlines (stricter of the laws)."""

from __future__ import annotations

from datetime import datetime

import pytest

from policies.consent_record import LawfulBasis
from policies.jurisdiction import (
    Jurisdiction,
    allowed_lawful_bases,
    erasure_deadline,
    guardian_consent_age,
    jurisdiction_of_region,
)

BOTH = frozenset(Jurisdiction)


def test_lawful_basis_pipl_has_no_legitimate_interests() -> None:
    assert LawfulBasis.LEGITIMATE_INTERESTS not in allowed_lawful_bases(Jurisdiction.CN)
    assert LawfulBasis.LEGITIMATE_INTERESTS in allowed_lawful_bases(Jurisdiction.EU)


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("CN", Jurisdiction.CN),
        ("cn-sh", Jurisdiction.CN),
        ("EU", Jurisdiction.EU),
        ("DE", Jurisdiction.EU),
        ("NO", Jurisdiction.EU),
        ("US", None),
    ],
)
def test_jurisdiction_of_region(region: str, expected: Jurisdiction | None) -> None:
    assert jurisdiction_of_region(region) == expected


def test_minors_guardian_age_pipl_14_gdpr_16_strictest_wins() -> None:
    assert guardian_consent_age({Jurisdiction.CN}) == 14
    assert guardian_consent_age({Jurisdiction.EU}) == 16
    assert guardian_consent_age(BOTH) == 16


@pytest.mark.parametrize(
    ("received", "jurisdictions", "due"),
    [
        (datetime(2024, 3, 10), {Jurisdiction.EU}, datetime(2024, 4, 10)),
        (datetime(2024, 3, 10), {Jurisdiction.CN}, datetime(2024, 4, 9)),
        (datetime(2024, 3, 10), BOTH, datetime(2024, 4, 9)),  # 30 days < one month in March
        (datetime(2024, 1, 31), BOTH, datetime(2024, 2, 29)),  # one month < 30 days in February
        (datetime(2024, 12, 15), {Jurisdiction.EU}, datetime(2025, 1, 15)),
    ],
)
def test_erasure_deadline_stricter_of_gdpr_month_and_pipl_30_days(
    received: datetime, jurisdictions: set[Jurisdiction], due: datetime
) -> None:
    assert erasure_deadline(received, jurisdictions) == due


def test_erasure_deadline_needs_a_jurisdiction() -> None:
    with pytest.raises(ValueError, match="jurisdiction"):
        erasure_deadline(datetime(2024, 1, 1), set())
