"""The data-use policy documents the platform demo and its test draft for the FreshMart store groups.

The same columns as the simulation demo's policies (``loyalfed.demo.stages.approvals``); the analyst
posts the document to the coordinator, which versions it by its content hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policies.purpose import Purpose

__all__ = ["training_policy_document"]

_MEMBER_COLUMNS = ["member_id", "joined_at", "tier", "points_balance"]
_TRANSACTION_COLUMNS = [
    "member_id",
    "timestamp",
    "amount",
    "quantity",
    "store_id",
    "category",
    "discount",
    "basket_id",
]
_CAMPAIGN_COLUMNS = ["member_id", "campaign_id", "start_date", "end_date", "campaign_type", "redeemed_at"]


def training_policy_document(
    purpose: Purpose,
    partners: Sequence[str],
    *,
    policy_id: str | None = None,
    epsilon: float = 8.0,
    flower_apps: Sequence[str] = (),
) -> dict[str, Any]:
    """A federated DP-SGD training policy over ``partners`` (a JSON mapping, as the API takes it).

    ``flower_apps``: the FAB hashes of the only apps the policy lets run (none named: any the nodes
    approved).
    """
    slug = purpose.value.split(".")[-1].replace("_", "-")
    columns: dict[str, list[str]] = {"members": _MEMBER_COLUMNS, "transactions": _TRANSACTION_COLUMNS}
    if purpose is Purpose.PROPENSITY_MODEL:
        columns["campaigns"] = _CAMPAIGN_COLUMNS
    return {
        "policy_id": policy_id or f"freshmart-{slug}",
        "title": f"FreshMart store groups: federated {slug.replace('-', ' ')} (DP-SGD)",
        "purpose": purpose.value,
        "partners": sorted(partners),
        "regions": ["CN"],
        "coordinator_region": "CN",
        "columns": columns,
        "sensitive_columns": {"members": ["age_band", "gender", "income_band"]},
        "privacy": {"epsilon": epsilon, "delta": 1e-5},
        "min_aggregation_k": 20,
        "impact_assessment": {"reference": "PIA-FM-2026-01", "completed_on": "2026-01-15"},
        "joint_handling_agreement": "JHA-FreshMart-2026",
        **({"flower_apps": sorted(flower_apps)} if flower_apps else {}),
    }
