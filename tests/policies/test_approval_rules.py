"""Pure approval rules: hash binding, voiding, impact assessment and joint-handling prerequisites."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from policies.approval import (
    Approval,
    ApprovalBlockedError,
    ApprovalDecision,
    PartnerState,
    approval_blockers,
    approval_status,
    check_decision,
)
from policies.policy import parse_policy
from policies.roles import Actor, AuthorizationError, Role

A, B = "freshmart-north", "freshmart-south"


def _approval(
    partner: str, digest: str, decision: ApprovalDecision, minute: int, reason: str = ""
) -> Approval:
    return Approval(
        "p", digest, partner, decision, f"data_officer:{partner}", datetime(2024, 1, 1, 0, minute), reason
    )


def test_all_partners_approved_current_hash() -> None:
    approvals = [
        _approval(A, "h1", ApprovalDecision.APPROVED, 1),
        _approval(B, "h1", ApprovalDecision.APPROVED, 2),
    ]
    assert approval_status("p", "h1", [A, B], approvals).approved


def test_policy_change_voids_approvals_of_other_hash() -> None:
    approvals = [
        _approval(A, "h1", ApprovalDecision.APPROVED, 1),
        _approval(B, "h1", ApprovalDecision.APPROVED, 2),
    ]
    status = approval_status("p", "h2", [A, B], approvals)
    assert not status.approved
    assert status.states == {A: PartnerState.PENDING, B: PartnerState.PENDING}
    assert status.missing() == [f"{A} has not approved it", f"{B} has not approved it"]


def test_latest_decision_wins_and_rejection_reason_is_reported() -> None:
    approvals = [
        _approval(A, "h1", ApprovalDecision.APPROVED, 1),
        _approval(A, "h1", ApprovalDecision.REJECTED, 5, "epsilon too high"),
        _approval(B, "h1", ApprovalDecision.APPROVED, 2),
    ]
    status = approval_status("p", "h1", [A, B], approvals)
    assert status.states[A] is PartnerState.REJECTED
    assert status.missing() == [f"{A} rejected it (epsilon too high)"]


def test_impact_assessment_required_before_approving_sharing_policy(policy_data: dict[str, Any]) -> None:
    del policy_data["impact_assessment"]
    policy = parse_policy(policy_data)
    assert any("impact assessment" in b for b in approval_blockers(policy))
    with pytest.raises(ApprovalBlockedError, match=r"PIPL Art\. 55-56"):
        check_decision(Actor(Role.DATA_OFFICER, A), policy, A, ApprovalDecision.APPROVED, "")


def test_impact_assessment_not_needed_for_single_partner_own_use(policy_data: dict[str, Any]) -> None:
    del policy_data["impact_assessment"]
    policy_data.update(partners=[A], sensitive_columns={})
    assert approval_blockers(parse_policy(policy_data)) == []


def test_impact_assessment_required_for_cross_border_single_partner(policy_data: dict[str, Any]) -> None:
    del policy_data["impact_assessment"]
    policy_data.update(
        partners=[A],
        sensitive_columns={},
        cross_border={"allowed": True, "mechanism": "cn_standard_contract"},
    )
    assert "cross-border" in approval_blockers(parse_policy(policy_data))[0]


def test_joint_handling_agreement_required_between_partners(policy_data: dict[str, Any]) -> None:
    del policy_data["joint_handling_agreement"]
    blockers = approval_blockers(parse_policy(policy_data))
    assert blockers == ["a joint handling agreement reference is required (PIPL Art. 20 / GDPR Art. 26)"]


def test_rejection_needs_reason_and_partner_must_be_involved(policy_data: dict[str, Any]) -> None:
    policy = parse_policy(policy_data)
    with pytest.raises(ApprovalBlockedError, match="reason"):
        check_decision(Actor(Role.DATA_OFFICER, A), policy, A, ApprovalDecision.REJECTED, " ")
    with pytest.raises(ApprovalBlockedError, match="not involved"):
        check_decision(Actor(Role.DATA_OFFICER, "fuelgo"), policy, "fuelgo", ApprovalDecision.APPROVED, "")


def test_analyst_cannot_approve(policy_data: dict[str, Any]) -> None:
    with pytest.raises(AuthorizationError):
        check_decision(Actor(Role.ANALYST), parse_policy(policy_data), A, ApprovalDecision.APPROVED, "")
