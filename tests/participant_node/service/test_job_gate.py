"""The node's own gate: its officer's signature on the exact policy hash, its yearly cap, consent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from node_service_fixtures import PARTNER, churn_policy, write_consenting_partner

from participant_node.service.errors import JobRefusedError
from participant_node.service.job_gate import JobClaims, JobGate
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from policies.approval import ApprovalDecision
from policies.policy import DataUsePolicy
from policies.signed_approval import SignedDecision, sign_decision

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _sign(
    key: Ed25519PrivateKey,
    policy: DataUsePolicy,
    *,
    decision: ApprovalDecision = ApprovalDecision.APPROVED,
    partner: str = PARTNER,
    at: datetime = NOW,
) -> SignedDecision:
    return sign_decision(
        key,
        policy_id=policy.policy_id,
        policy_version=1,
        policy_hash=policy.content_hash(),
        partner_id=partner,
        decision=decision,
        now=at,
    )


def _claims(
    policy: DataUsePolicy, *decisions: SignedDecision, epsilon: float = 3.0, **overrides: object
) -> JobClaims:
    fields: dict[str, object] = {
        "job_id": "job-0123456789ab",
        "purpose": "analytics.churn_model",
        "epsilon": epsilon,
        "delta": 1e-5,
        "k_min": 20,
        "policy_id": policy.policy_id,
        "policy_version": 1,
        "policy_hash": policy.content_hash(),
        "decisions": decisions,
    }
    return JobClaims(**{**fields, **overrides})  # type: ignore[arg-type]


class _Node:
    def __init__(self, tmp_path: Path, *, consenting: int = 30, yearly_cap: float = 10.0) -> None:
        self.officer = Ed25519PrivateKey.generate()
        self.policy = churn_policy()
        self.served: list[tuple[str, int]] = []
        self.dir = write_consenting_partner(tmp_path / PARTNER, consenting=consenting)
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.gate = self.make_gate(yearly_cap=yearly_cap)

    def make_gate(
        self, *, yearly_cap: float = 10.0, document: DataUsePolicy | None = None, now: datetime = NOW
    ) -> JobGate:
        def source(policy_id: str, version: int) -> DataUsePolicy:
            self.served.append((policy_id, version))
            return document or self.policy

        return JobGate(
            partner_id=PARTNER,
            partner_dir=self.dir,
            state=self.state,
            officer_keys=[self.officer.public_key()],
            policy_source=source,
            yearly_cap=yearly_cap,
            now=lambda: now,
        )


def _refusal(gate: JobGate, claims: JobClaims) -> str:
    with pytest.raises(JobRefusedError) as refused:
        gate.admit(claims)
    assert refused.value.partner_id == PARTNER
    return refused.value.reason


def test_a_job_its_officer_signed_is_admitted_with_the_consented_members(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    admission = node.gate.admit(_claims(node.policy, _sign(node.officer, node.policy)))
    assert admission.decision.decision is ApprovalDecision.APPROVED
    assert admission.policy.content_hash() == node.policy.content_hash()
    assert len(admission.selection.member_ids) == 30  # the 10 without consent are left out
    assert node.served == [("churn-2024", 1)]
    node.gate.admit(_claims(node.policy, _sign(node.officer, node.policy)))  # a newer approval, same hash
    assert node.served == [("churn-2024", 1)]  # the verified document is cached by its hash


def test_no_signature_of_this_partners_officer_is_a_refusal(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    assert "no decision signed" in _refusal(node.gate, _claims(node.policy))
    other_officer = Ed25519PrivateKey.generate()  # e.g. the coordinator, or another partner's officer
    assert "no decision signed" in _refusal(
        node.gate, _claims(node.policy, _sign(other_officer, node.policy))
    )
    # Our own officer's approval, but for another partner: it approves nothing here.
    for_south = _sign(node.officer, node.policy, partner="freshmart-south")
    assert "no decision signed" in _refusal(node.gate, _claims(node.policy, for_south))


def test_a_forged_or_flipped_statement_is_a_refusal(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    rejected = _sign(node.officer, node.policy, decision=ApprovalDecision.REJECTED)
    flipped = SignedDecision(rejected.statement.replace('"rejected"', '"approved"'), rejected.signature)
    assert "no decision signed" in _refusal(node.gate, _claims(node.policy, flipped))


def test_a_signature_over_another_policy_hash_does_not_approve_this_one(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    earlier = churn_policy(title="an earlier draft")
    signed_earlier = _sign(node.officer, earlier)
    assert "no decision signed" in _refusal(node.gate, _claims(node.policy, signed_earlier))


def test_a_rejection_refuses_and_an_older_approval_cannot_be_replayed_over_it(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    approval = _sign(node.officer, node.policy, at=NOW - timedelta(days=2))
    node.gate.admit(_claims(node.policy, approval))
    rejection = _sign(
        node.officer, node.policy, decision=ApprovalDecision.REJECTED, at=NOW - timedelta(days=1)
    )
    assert "rejected" in _refusal(node.gate, _claims(node.policy, rejection))
    # The coordinator (or anyone) sends the old approval alone: the node remembers the rejection,
    # across a restart of the service too.
    assert "officer decision refused" in _refusal(node.make_gate(), _claims(node.policy, approval))


def test_a_document_that_does_not_hash_to_the_signed_hash_is_refused(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    swapped = churn_policy(privacy={"epsilon": 50.0, "delta": 1e-5})
    gate = node.make_gate(document=swapped)
    assert "does not match its hash" in _refusal(gate, _claims(node.policy, _sign(node.officer, node.policy)))


def test_a_job_outside_its_policy_is_refused(tmp_path: Path) -> None:
    node = _Node(tmp_path)
    signed = _sign(node.officer, node.policy)
    assert "exceeds the policy's cap" in _refusal(node.gate, _claims(node.policy, signed, epsilon=5.0))
    assert "not the policy's" in _refusal(
        node.gate, _claims(node.policy, signed, purpose="analytics.propensity_model")
    )
    assert "names no policy" in _refusal(node.gate, _claims(node.policy, signed, policy_hash=None))


def test_the_nodes_own_yearly_cap_refuses_a_job_that_does_not_fit(tmp_path: Path) -> None:
    node = _Node(tmp_path, yearly_cap=4.0)
    accountant = NodePrivacyAccountant(node.state / "privacy_accountant.json")
    # An earlier job this year spent ε≈1.5 on this dataset (recorded by the node's own accountant).
    accountant.charge(
        dataset=PARTNER,
        purpose="analytics.churn_model",
        job_id="job-earlier",
        noise_multiplier=3.0,
        sample_rate=0.5,
        steps=10,
        delta=1e-5,
        epsilon_cap=10.0,
        now=NOW - timedelta(days=30),
    )
    spent = accountant.epsilon(dataset=PARTNER, purpose="analytics.churn_model", delta=1e-5)
    assert 0.5 < spent < 3.0
    signed = _sign(node.officer, node.policy)
    assert "yearly privacy budget" in _refusal(node.gate, _claims(node.policy, signed, epsilon=4.0))
    node.gate.admit(_claims(node.policy, signed, epsilon=round(4.0 - spent - 0.01, 2)))
    # Last year's spending does not count against this year's cap.
    next_year = node.make_gate(yearly_cap=4.0, now=NOW + timedelta(days=365))
    next_year.admit(
        _claims(node.policy, _sign(node.officer, node.policy, at=NOW + timedelta(days=1)), epsilon=4.0)
    )


def test_too_few_consented_members_is_a_consent_refusal(tmp_path: Path) -> None:
    node = _Node(tmp_path, consenting=12)
    reason = _refusal(node.gate, _claims(node.policy, _sign(node.officer, node.policy)))
    assert reason == "consent gate: 12 members consented to analytics.churn_model; k=20 needed"


def test_a_policy_that_names_its_flower_app_admits_only_that_app(tmp_path: Path) -> None:
    """The officer signed the policy with the app's hash in it: a coordinator that swaps the app
    after approval (even for another app this node's operator approved) is refused by the node."""
    node = _Node(tmp_path)
    approved, swapped = "ab" * 32, "cd" * 32
    node.policy = churn_policy(flower_apps=[approved])
    node.gate = node.make_gate()
    signed = _sign(node.officer, node.policy)
    assert node.gate.admit(_claims(node.policy, signed, flower_app=approved)).policy.flower_apps == (
        approved,
    )
    reason = _refusal(node.gate, _claims(node.policy, signed, flower_app=swapped))
    assert f"Flower App sha256 {swapped}" in reason and "not an app policy churn-2024 approves" in reason
    # A message that does not say which app brought it is refused too (fail closed).
    assert "an unnamed app" in _refusal(node.gate, _claims(node.policy, signed))
