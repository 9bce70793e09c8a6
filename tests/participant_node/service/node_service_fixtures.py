"""A partner folder with enough consented members for the k=20 gate, and a churn policy naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from policies.policy import DataUsePolicy, parse_policy

PARTNER = "freshmart-north"


def write_consenting_partner(folder: Path, *, members: int = 40, consenting: int = 30) -> Path:
    """``members`` members, the first ``consenting`` of them with churn-model consent."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [f"M-{i:04d},+86138{i:08d},2019-01-{1 + i % 28:02d}" for i in range(members)]
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    baskets = [f"M-{i:04d},2024-0{1 + i % 9}-10T10:00:00,{5 + i % 7}.50" for i in range(members)]
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount\n" + "\n".join(baskets) + "\n", encoding="utf-8"
    )
    consents = [f"M-{i:04d},analytics.churn_model,2019-02-01,own,false" for i in range(consenting)]
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at,scope,cross_border\n" + "\n".join(consents) + "\n", encoding="utf-8"
    )
    return folder


def churn_policy(**overrides: Any) -> DataUsePolicy:
    data: dict[str, Any] = {
        "policy_id": "churn-2024",
        "title": "Churn model across FreshMart store groups",
        "purpose": "analytics.churn_model",
        "partners": [PARTNER, "freshmart-south"],
        "columns": {
            "members": ["member_id", "joined_at"],
            "transactions": ["member_id", "timestamp", "amount"],
        },
        "privacy": {"epsilon": 4.0, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-2024-07", "completed_on": "2024-07-01"},
        "joint_handling_agreement": "JHA-FreshMart-2024",
        **overrides,
    }
    return parse_policy(data)
