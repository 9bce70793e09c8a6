"""A valid churn policy over the four FreshMart store groups, as the mapping a YAML file holds."""

from __future__ import annotations

from typing import Any

import pytest


def churn_policy_data() -> dict[str, Any]:
    return {
        "policy_id": "churn-2024",
        "title": "Churn model across FreshMart store groups",
        "purpose": "analytics.churn_model",
        "partners": ["freshmart-north", "freshmart-south", "freshmart-east", "freshmart-west"],
        "regions": ["CN"],
        "coordinator_region": "CN",
        "columns": {
            "members": ["member_id", "joined_at", "tier"],
            "transactions": ["member_id", "timestamp", "amount", "quantity", "category"],
        },
        "sensitive_columns": {"members": ["age_band"]},
        "privacy": {"epsilon": 8.0, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-2024-07", "completed_on": "2024-07-01"},
        "joint_handling_agreement": "JHA-FreshMart-2024",
    }


@pytest.fixture
def policy_data() -> dict[str, Any]:
    return churn_policy_data()
