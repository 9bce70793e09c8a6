"""Policy registry and ``require_approved``: versions, hash-bound approvals, refusals that name who."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.approvals import (
    PolicyNotApprovedError,
    PolicyNotFoundError,
    PolicyRegistry,
    RegistryError,
    records_of_processing,
    require_approved,
)
from policies.approval import ApprovalBlockedError, PartnerState
from policies.policy import DataUsePolicy, parse_policy
from policies.roles import Actor, AuthorizationError, Role

STORES = ("freshmart-north", "freshmart-south", "freshmart-east", "freshmart-west")
ANALYST = Actor(Role.ANALYST)


def officer(partner: str) -> Actor:
    return Actor(Role.DATA_OFFICER, partner)


def policy_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "policy_id": "churn-2024",
        "title": "Churn model across FreshMart store groups",
        "purpose": "analytics.churn_model",
        "partners": list(STORES),
        "columns": {"transactions": ["member_id", "timestamp", "amount"]},
        "privacy": {"epsilon": 8.0, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-2024-07", "completed_on": "2024-07-01"},
        "joint_handling_agreement": "JHA-FreshMart-2024",
    }
    return {**data, **overrides}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 7, 1, 9, 0)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


@pytest.fixture(params=["file", "memory"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PolicyRegistry]:
    # One contract, every backend: a SQLite file and an in-memory SQLAlchemy URL.
    if request.param == "file":
        reg = PolicyRegistry.at_path(tmp_path / "nested" / "registry.sqlite", now=Clock())
    else:
        reg = PolicyRegistry("sqlite://", now=Clock())
    yield reg
    reg.close()


def _approve_all(registry: PolicyRegistry, ref: str, partners: tuple[str, ...] = STORES) -> None:
    for partner in partners:
        registry.approve(ref, actor=officer(partner))


def test_draft_registers_version_one_and_is_idempotent(registry: PolicyRegistry) -> None:
    policy = parse_policy(policy_data())
    first = registry.draft(policy, actor=ANALYST)
    again = registry.draft(policy, actor=ANALYST)
    assert (first.version, first.content_hash) == (1, policy.content_hash())
    assert again.version == 1 and len(registry.list_policies()) == 1
    assert registry.get(first.content_hash[:10]).ref == "churn-2024@1"
    assert registry.get("churn-2024@1").policy == policy


def test_only_analyst_may_draft(registry: PolicyRegistry) -> None:
    with pytest.raises(AuthorizationError):
        registry.draft(parse_policy(policy_data()), actor=officer(STORES[0]))


def test_job_allowed_when_every_involved_partner_approved(registry: PolicyRegistry) -> None:
    registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024")
    approved = require_approved(registry, "churn-2024", partners=STORES)
    assert approved.version == 1 and len(approved.approvals) == 4
    assert registry.status("churn-2024").approved


def test_job_refused_naming_partner_and_hash_when_one_has_not_approved(registry: PolicyRegistry) -> None:
    registered = registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024", STORES[:3])
    with pytest.raises(PolicyNotApprovedError) as caught:
        require_approved(registry, "churn-2024", partners=STORES)
    message = str(caught.value)
    assert "freshmart-west has not approved it" in message
    assert registered.content_hash[:12] in message and "churn-2024@1" in message


def test_job_on_subset_of_approving_partners_is_allowed(registry: PolicyRegistry) -> None:
    registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024", STORES[:2])
    assert require_approved(registry, "churn-2024", partners=STORES[:2]).policy_id == "churn-2024"


def test_rejection_with_reason_refuses_job(registry: PolicyRegistry) -> None:
    registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024", STORES[:3])
    registry.reject("churn-2024", actor=officer(STORES[3]), reason="epsilon 8 is above our cap of 4")
    with pytest.raises(
        PolicyNotApprovedError, match=r"freshmart-west rejected it \(epsilon 8 is above our cap of 4\)"
    ):
        require_approved(registry, "churn-2024", partners=STORES)
    assert registry.status("churn-2024").states[STORES[3]] is PartnerState.REJECTED


def test_policy_change_voids_approvals(registry: PolicyRegistry, tmp_path: Path) -> None:
    old = registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024")
    changed = parse_policy(policy_data(privacy={"epsilon": 6.0, "delta": 1e-5}))
    new = registry.draft(changed, actor=ANALYST)
    assert new.version == 2 and new.content_hash != old.content_hash
    with pytest.raises(PolicyNotApprovedError, match="freshmart-east has not approved it"):
        require_approved(registry, "churn-2024", partners=STORES)
    with pytest.raises(PolicyNotApprovedError, match="was changed"):
        require_approved(registry, "churn-2024@1", partners=STORES)
    with pytest.raises(RegistryError, match="superseded"):
        registry.approve("churn-2024@1", actor=officer(STORES[0]))


def test_policy_file_reference_resolves_by_content_hash(registry: PolicyRegistry, tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(policy_data()), encoding="utf-8")
    with pytest.raises(PolicyNotFoundError, match="not registered"):
        require_approved(registry, path, partners=STORES)
    registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024")
    assert require_approved(registry, path, partners=STORES).version == 1
    path.write_text(yaml.safe_dump(policy_data(title="edited after approval")), encoding="utf-8")
    with pytest.raises(PolicyNotFoundError, match="not registered"):
        require_approved(registry, path, partners=STORES)


def test_partner_outside_policy_refused(registry: PolicyRegistry) -> None:
    registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024")
    with pytest.raises(PolicyNotApprovedError, match=r"does not cover partner\(s\) careplus"):
        require_approved(registry, "churn-2024", partners=[*STORES, "careplus"])


def test_data_officer_approves_only_for_own_node(registry: PolicyRegistry) -> None:
    registry.draft(parse_policy(policy_data()), actor=ANALYST)
    with pytest.raises(AuthorizationError):
        registry.approve("churn-2024", actor=officer(STORES[0]), partner=STORES[1])


def test_impact_assessment_blocks_approval_in_registry(registry: PolicyRegistry) -> None:
    data = policy_data()
    del data["impact_assessment"]
    registry.draft(parse_policy(data), actor=ANALYST)
    with pytest.raises(ApprovalBlockedError, match="impact assessment"):
        registry.approve("churn-2024", actor=officer(STORES[0]))


def test_unknown_reference(registry: PolicyRegistry) -> None:
    with pytest.raises(PolicyNotFoundError):
        registry.get("nope")
    with pytest.raises(PolicyNotFoundError, match="version must be a number"):
        registry.get("nope@x")


def test_records_of_processing_from_registry_and_lineage(registry: PolicyRegistry) -> None:
    registered = registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, "churn-2024")
    lineage = [
        {"event_type": "job.finished", "policy_hash": registered.content_hash},
        {
            "event_type": "budget.charged",
            "policy_hash": registered.content_hash,
            "epsilon": 1.5,
            "partner": STORES[0],
        },
        {
            "event_type": "budget.charged",
            "policy_hash": registered.content_hash,
            "epsilon": 2.0,
            "partner": STORES[0],
        },
        {
            "event_type": "budget.charged",
            "policy_hash": registered.content_hash,
            "epsilon": 2.0,
            "partner": STORES[1],
        },
        {"event_type": "job.refused", "policy_hash": "other"},
    ]
    (record,) = records_of_processing(registry, lineage=lineage)
    assert record["policy"] == "churn-2024@1"
    assert record["controllers"] == sorted(STORES)
    assert record["jobs_finished"] == 1
    assert record["epsilon_spent_per_partner"] == {
        STORES[0]: pytest.approx(3.5),
        STORES[1]: pytest.approx(2.0),
    }
    assert set(record["approvals"].values()) == {"approved"}
    assert "user.behavior.purchase_history" in record["data_categories"]


def test_policy_round_trips_through_registry(registry: PolicyRegistry) -> None:
    policy: DataUsePolicy = parse_policy(policy_data())
    registered = registry.draft(policy, actor=ANALYST)
    assert registry.by_hash(registered.content_hash).policy.content_hash() == policy.content_hash()  # type: ignore[union-attr]


def test_an_approved_policy_refuses_a_job_of_another_purpose_or_over_its_epsilon(
    registry: PolicyRegistry,
) -> None:
    from coordinator.approvals import require_job_allowed
    from policies.purpose import Purpose

    registered = registry.draft(parse_policy(policy_data()), actor=ANALYST)
    _approve_all(registry, registered.ref)
    job = {"partners": STORES, "epsilon": 3.0, "delta": 1e-5}

    allowed = require_job_allowed(registry, registered.ref, purpose=Purpose.CHURN_MODEL, **job)
    assert allowed.content_hash == registered.content_hash
    with pytest.raises(PolicyNotApprovedError, match=r"does not allow this job.*purpose"):
        require_job_allowed(registry, registered.ref, purpose=Purpose.PROPENSITY_MODEL, **job)
    with pytest.raises(PolicyNotApprovedError, match="does not allow this job"):
        require_job_allowed(registry, registered.ref, purpose=Purpose.CHURN_MODEL, **{**job, "epsilon": 9.0})
