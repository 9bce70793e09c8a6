"""``evaluate(policy, request)``: purpose limitation, minimisation, sensitive data, ε cap, k, borders."""

from __future__ import annotations

from typing import Any

import pytest

from policies.evaluation import Rule, UseRequest, evaluate, is_cross_border
from policies.policy import DataUsePolicy, parse_policy
from policies.purpose import Purpose

NORTH = "freshmart-north"


def _request(**overrides: Any) -> UseRequest:
    base: dict[str, Any] = {
        "purpose": Purpose.CHURN_MODEL,
        "partners": (NORTH,),
        "columns": {"transactions": ("member_id", "timestamp", "amount")},
        "epsilon": 4.0,
        "delta": 1e-6,
    }
    return UseRequest(**{**base, **overrides})


@pytest.fixture
def policy(policy_data: dict[str, Any]) -> DataUsePolicy:
    return parse_policy(policy_data)


def _rules(policy: DataUsePolicy, request: UseRequest) -> set[Rule]:
    decision = evaluate(policy, request)
    assert decision.allowed == (not decision.violations)
    return {v.rule for v in decision.violations}


def test_request_within_policy_is_allowed(policy: DataUsePolicy) -> None:
    decision = evaluate(policy, _request())
    assert decision.allowed and decision.policy_hash == policy.content_hash()


def test_purpose_limitation_other_purpose_refused(policy: DataUsePolicy) -> None:
    assert _rules(policy, _request(purpose=Purpose.PROPENSITY_MODEL)) == {Rule.PURPOSE_LIMITATION}


def test_partner_outside_policy_refused(policy: DataUsePolicy) -> None:
    assert _rules(policy, _request(partners=(NORTH, "fuelgo"))) == {Rule.PARTNER_IN_POLICY}


def test_data_minimisation_columns_outside_policy_refused(policy: DataUsePolicy) -> None:
    request = _request(columns={"transactions": ("member_id", "store_id")})
    decision = evaluate(policy, request)
    assert {v.rule for v in decision.violations} == {Rule.DATA_MINIMISATION}
    assert "store_id" in decision.message()


def test_sensitive_data_only_listed_columns_for_fairness(policy: DataUsePolicy) -> None:
    assert _rules(policy, _request(fairness_columns={"members": ("age_band",)})) == set()
    assert _rules(policy, _request(fairness_columns={"members": ("gender",)})) == {Rule.SENSITIVE_DATA}


def test_privacy_budget_cap(policy: DataUsePolicy) -> None:
    assert _rules(policy, _request(epsilon=8.5)) == {Rule.PRIVACY_BUDGET}
    assert _rules(policy, _request(delta=1e-4)) == {Rule.PRIVACY_BUDGET}


def test_min_aggregation_k(policy: DataUsePolicy) -> None:
    assert _rules(policy, _request(min_aggregation_k=5)) == {Rule.MIN_AGGREGATION}


def test_cross_border_cn_node_refuses_to_send_abroad_without_policy(policy_data: dict[str, Any]) -> None:
    policy_data["regions"] = ["CN", "DE"]
    policy = parse_policy(policy_data)
    request = _request(partner_regions={NORTH: "CN"}, destination_region="DE")
    decision = evaluate(policy, request)
    assert {v.rule for v in decision.violations} == {Rule.CROSS_BORDER}
    assert "PIPL Art. 38-39" in decision.message()


def test_cross_border_allowed_with_mechanism(policy_data: dict[str, Any]) -> None:
    policy_data["regions"] = ["CN", "DE"]
    policy_data["cross_border"] = {"allowed": True, "mechanism": "cn_standard_contract"}
    policy = parse_policy(policy_data)
    assert _rules(policy, _request(partner_regions={NORTH: "CN"}, destination_region="DE")) == set()


def test_cross_border_partner_region_outside_policy(policy: DataUsePolicy) -> None:
    assert _rules(policy, _request(partner_regions={NORTH: "US"})) == {Rule.CROSS_BORDER}


@pytest.mark.parametrize(
    ("source", "destination", "crosses"),
    [
        ("CN", "CN-SH", False),
        ("CN", "EU", True),
        ("DE", "FR", False),
        ("DE", "EU", False),
        ("US", "CN", True),
    ],
)
def test_is_cross_border(source: str, destination: str, crosses: bool) -> None:
    assert is_cross_border(source, destination) is crosses
