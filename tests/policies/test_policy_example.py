"""The commented policy example shipped for data officers and analysts is a valid policy."""

from __future__ import annotations

from pathlib import Path

from policies.policy import load_policy
from policies.purpose import Purpose

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies" / "churn-store-groups.yaml"


def test_the_shipped_example_loads_and_says_what_its_comments_say() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.purpose is Purpose.CHURN_MODEL
    assert len(policy.partners) == 4 and policy.privacy.epsilon == 3.0
    assert policy.columns["members"] == ("member_id", "joined_at", "tier")
    assert not policy.cross_border.allowed
    assert len(policy.content_hash()) == 64
