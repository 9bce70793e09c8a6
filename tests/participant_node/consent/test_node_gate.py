"""The node gate under an approved policy: borders, minimisation, sensitive data, retention, re-consent."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from participant_node.consent import TransferRefusedError, gate_partner_data
from participant_node.data import load_partner
from policies.policy import DataUsePolicy, parse_policy

AT = datetime(2024, 6, 1)


def _partner(tmp_path: Path) -> Path:
    folder = tmp_path / "freshmart-north"
    folder.mkdir()
    (folder / "members.csv").write_text(
        "member_id,phone,joined_at,tier,gender\n"
        "m1,+8613800000001,2020-01-01,gold,F\nm2,+8613800000002,2020-01-02,silver,M\n"
        "m3,+8613800000003,2020-01-03,gold,F\n",
        encoding="utf-8",
    )
    (folder / "transactions.csv").write_text(
        "member_id,timestamp,amount,store_id,category\n"
        "m1,2024-01-01T10:00:00,3.50,s1,DELI\nm2,2024-01-02T11:00:00,7.25,s2,DAIRY\n"
        "m1,2020-02-01T10:00:00,1.00,s1,DELI\nm3,2024-02-03T09:00:00,2.00,s3,MEAT\n",
        encoding="utf-8",
    )
    (folder / "consents.csv").write_text(
        "member_id,purpose,granted_at,scope,cross_border\n"
        "m1,analytics.churn_model,2024-01-01,own,true\n"
        "m2,analytics.churn_model,2024-03-01,own,false\n"
        "m3,analytics.propensity_model,2024-01-01,own,false\n",
        encoding="utf-8",
    )
    return folder


def _policy(**overrides: Any) -> DataUsePolicy:
    data: dict[str, Any] = {
        "policy_id": "churn-north",
        "title": "churn at one store group",
        "purpose": "analytics.churn_model",
        "partners": ["freshmart-north"],
        "columns": {
            "members": ["member_id", "joined_at"],
            "transactions": ["member_id", "timestamp", "amount"],
        },
        "sensitive_columns": {"members": ["gender"]},
        "privacy": {"epsilon": 4.0, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-1", "completed_on": "2024-01-01"},
        **overrides,
    }
    return parse_policy(data)


def test_data_minimisation_projection_drops_unapproved_columns(tmp_path: Path) -> None:
    gated = gate_partner_data(load_partner(_partner(tmp_path)), _policy(), at=AT, node_region="CN")
    assert list(gated.members.columns) == ["member_id", "joined_at"]  # phone, tier, gender never pass
    assert list(gated.transactions.columns) == ["member_id", "timestamp", "amount"]
    assert gated.columns_dropped["transactions"] >= 2  # store_id, category (+ empty optional columns)


def test_purpose_limitation_only_members_consented_for_the_policy_purpose(tmp_path: Path) -> None:
    gated = gate_partner_data(load_partner(_partner(tmp_path)), _policy(), at=AT, node_region="CN")
    assert sorted(gated.members["member_id"]) == ["m1", "m2"]  # m3 consented to propensity only
    assert "m3" not in set(gated.transactions["member_id"])
    assert gated.selection.excluded == 1


def test_sensitive_data_columns_only_for_fairness_and_with_separate_consent(tmp_path: Path) -> None:
    partner = load_partner(_partner(tmp_path))
    plain = gate_partner_data(partner, _policy(), at=AT, node_region="CN")
    assert "gender" not in plain.members.columns
    fairness = gate_partner_data(partner, _policy(), at=AT, node_region="CN", fairness=True)
    assert "gender" in fairness.members.columns
    assert fairness.members.empty  # nobody gave the separate sensitive-data consent (PIPL Art. 29)


def test_cross_border_cn_node_refuses_to_send_abroad(tmp_path: Path) -> None:
    partner = load_partner(_partner(tmp_path))
    with pytest.raises(TransferRefusedError, match="refuses to send to DE"):
        gate_partner_data(partner, _policy(), at=AT, node_region="CN", destination_region="DE")


def test_cross_border_allowed_only_for_members_with_separate_consent(tmp_path: Path) -> None:
    partner = load_partner(_partner(tmp_path))
    policy = _policy(
        regions=["CN", "DE"], cross_border={"allowed": True, "mechanism": "cn_standard_contract"}
    )
    gated = gate_partner_data(partner, policy, at=AT, node_region="CN", destination_region="DE")
    assert gated.cross_border and list(gated.members["member_id"]) == ["m1"]


def test_retention_purged_from_analytics_with_report(tmp_path: Path) -> None:
    gated = gate_partner_data(load_partner(_partner(tmp_path)), _policy(), at=AT, node_region="CN")
    assert gated.retention_purged["transactions"] == 1  # m1's 2020 purchase is older than 3 years
    assert gated.retention_purged["members"] == 0  # every member is active inside the window
    assert len(gated.transactions) == 2


def test_reconsent_required_after_notice_change(tmp_path: Path) -> None:
    policy = _policy(notice_version="2024-02", notice_effective_at="2024-02-15T00:00:00")
    gated = gate_partner_data(load_partner(_partner(tmp_path)), policy, at=AT, node_region="CN")
    assert list(gated.members["member_id"]) == ["m2"]  # m1 consented to the previous notice only


def test_retention_purges_a_member_whose_every_purchase_is_outside_the_window(tmp_path: Path) -> None:
    folder = _partner(tmp_path)
    with (folder / "members.csv").open("a", encoding="utf-8") as out:
        out.write("m4,+8613800000004,2020-01-04,silver,M\n")
    with (folder / "transactions.csv").open("a", encoding="utf-8") as out:
        out.write("m4,2020-03-01T10:00:00,4.00,s1,DELI\n")
    with (folder / "consents.csv").open("a", encoding="utf-8") as out:
        out.write("m4,analytics.churn_model,2024-01-01,own,false\n")
    gated = gate_partner_data(load_partner(folder), _policy(), at=AT, node_region="CN")
    assert gated.retention_purged["members"] == 1  # joined and last bought more than 3 years ago
    assert "m4" not in set(gated.members["member_id"]) and gated.retention_purged["transactions"] == 2
