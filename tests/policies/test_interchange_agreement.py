"""Interchange agreements: conversion rules, caps, arbitrage guard, hash, officers' signatures."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies.interchange_agreement import (
    AgreementError,
    AgreementSignatureError,
    SignedAgreement,
    parse_agreement,
    sign_agreement,
)

AT = datetime(2026, 3, 1)


def agreement_data() -> dict[str, Any]:
    direction = {
        "min_points": 250,
        "max_points": 5_000,
        "member_daily_cap": 10_000,
        "member_monthly_cap": 20_000,
        "partner_daily_cap": 1_000_000,
        "fee_per_point": "0.01",
        "fee_ceiling": 30,
    }
    return {
        "agreement_id": "freshmart-careplus-2026",
        "partners": ["freshmart", "careplus"],
        "programmes": {"freshmart": "freshmart-rewards", "careplus": "careplus-club"},
        "currency": "CNY",
        "terms": [
            {
                "source": "freshmart",
                "destination": "careplus",
                "block_in": 250,
                "block_out": 200,
                "settlement_price": "0.005",
                **direction,
            },
            {
                "source": "careplus",
                "destination": "freshmart",
                "block_in": 250,
                "block_out": 150,
                "settlement_price": "0.004",
                **direction,
            },
        ],
        "valid_from": "2026-01-01T00:00:00",
        "valid_until": "2027-01-01T00:00:00",
        "netting_period_days": 30,
    }


def test_quote_blocks_fee_ceiling_and_settlement() -> None:
    terms = parse_agreement(agreement_data()).terms_for("freshmart", "careplus")
    quote = terms.quote(1_000)
    assert (quote.points, quote.credited, quote.fee) == (1_000, 800, 10)
    assert quote.settlement_amount == Decimal("4.000")
    assert terms.quote(5_000).fee == 30  # 1 % would be 50: the ceiling applies
    for bad, rule in ((100, "amount_range"), (5_250, "amount_range"), (1_100, "block")):
        with pytest.raises(AgreementError) as err:
            terms.quote(bad)
        assert err.value.rule == rule


def test_arbitrage_guard_refuses_round_trips_that_gain() -> None:
    data = agreement_data()
    data["terms"][1]["block_out"] = 400  # 250 → 200 then 250 → 400: 1.28×
    with pytest.raises(AgreementError, match="arbitrage"):
        parse_agreement(data)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("terms", 0, "min_points"), 260, "terms.0"),
        (("terms", 0, "member_daily_cap"), 30_000, "terms.0"),
        (("valid_until",), "2025-01-01T00:00:00", "(top level)"),
        (("programmes",), {"freshmart": "x"}, "(top level)"),
    ],
)
def test_inconsistent_agreements_name_the_field(path: tuple[Any, ...], value: Any, field: str) -> None:
    data = agreement_data()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(AgreementError, match=field.replace("(", r"\(").replace(")", r"\)")):
        parse_agreement(data, source="a.yaml")


def test_validity_window_and_directions() -> None:
    agreement = parse_agreement(agreement_data())
    agreement.check_in_force(AT)
    with pytest.raises(AgreementError):
        agreement.check_in_force(datetime(2027, 1, 1))
    assert agreement.peer_of("careplus") == "freshmart"
    with pytest.raises(AgreementError):
        agreement.peer_of("fuelgo")


def test_both_officers_must_sign_the_current_hash() -> None:
    agreement = parse_agreement(agreement_data())
    keys = {p: Ed25519PrivateKey.generate() for p in agreement.partners}
    trusted = {p: k.public_key() for p, k in keys.items()}
    signed = SignedAgreement(agreement=agreement)
    for partner in agreement.partners:
        with pytest.raises(AgreementSignatureError):
            signed.verify(trusted)
        signed = signed.with_signature(
            sign_agreement(agreement, partner=partner, officer=f"officer@{partner}", key=keys[partner], at=AT)
        )
    signed.verify(trusted)
    assert signed.signed_by() == {"freshmart", "careplus"}
    # A signature made by the other partner's officer, or over another version, does not count.
    forged = signed.with_signature(
        sign_agreement(agreement, partner="careplus", officer="x", key=keys["freshmart"], at=AT)
    )
    with pytest.raises(AgreementSignatureError):
        forged.verify(trusted)
    changed = agreement_data()
    changed["netting_period_days"] = 7
    other = SignedAgreement(agreement=parse_agreement(changed), signatures=signed.signatures)
    assert other.signed_by() == set()
    with pytest.raises(AgreementSignatureError):
        other.verify(trusted)


def test_the_moved_points_expiry_rule_is_signed_and_unset_keeps_older_hashes() -> None:
    unset = parse_agreement(agreement_data())
    assert "moved_points_expiry_months" not in unset.canonical_json()  # as before the rule existed
    ruled = parse_agreement({**agreement_data(), "moved_points_expiry_months": 12})
    assert ruled.moved_points_expiry_months == 12
    assert ruled.content_hash() != unset.content_hash()  # the rule is part of what officers sign
    with pytest.raises(AgreementError):
        parse_agreement({**agreement_data(), "moved_points_expiry_months": 0})
