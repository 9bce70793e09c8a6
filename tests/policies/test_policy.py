"""Policy-as-code: validation rules, canonical content hash, YAML/JSON loading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.policy import DataUsePolicy, PolicyFileError, load_policy, parse_policy


def test_valid_policy_parses_and_sorts_partners(policy_data: dict[str, Any]) -> None:
    policy = parse_policy(policy_data)
    assert policy.partners == tuple(sorted(policy_data["partners"]))
    assert "user.demographic.age_range" in policy.data_categories


def test_content_hash_is_stable_across_key_order_and_formats(
    policy_data: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(policy_data), encoding="utf-8")
    reordered = dict(reversed(list(policy_data.items())))
    (tmp_path / "p.json").write_text(json.dumps(reordered), encoding="utf-8")
    digest = load_policy(tmp_path / "p.yaml").content_hash()
    assert load_policy(tmp_path / "p.json").content_hash() == digest
    assert len(digest) == 64


def test_any_change_changes_the_hash(policy_data: dict[str, Any]) -> None:
    before = parse_policy(policy_data).content_hash()
    policy_data["privacy"]["epsilon"] = 8.01
    assert parse_policy(policy_data).content_hash() != before


def test_hash_survives_a_round_trip_through_canonical_json(policy_data: dict[str, Any]) -> None:
    policy = parse_policy(policy_data)
    again = parse_policy(json.loads(policy.canonical_json()))
    assert again == policy and again.content_hash() == policy.content_hash()


def test_unknown_field_is_refused_naming_it(policy_data: dict[str, Any]) -> None:
    policy_data["epsilon_cap"] = 3
    with pytest.raises(PolicyFileError, match="epsilon_cap"):
        parse_policy(policy_data, source="p.yaml")


def test_policy_is_frozen(policy_data: dict[str, Any]) -> None:
    policy = parse_policy(policy_data)
    with pytest.raises(Exception, match="frozen"):
        policy.title = "x"  # type: ignore[misc]


def test_lawful_basis_cn_policy_cannot_claim_legitimate_interests(policy_data: dict[str, Any]) -> None:
    policy_data["lawful_basis"] = "legitimate_interests"
    with pytest.raises(PolicyFileError, match=r"PIPL Art\. 13"):
        parse_policy(policy_data)


def test_lawful_basis_eu_policy_may_claim_legitimate_interests(policy_data: dict[str, Any]) -> None:
    policy_data.update(lawful_basis="legitimate_interests", regions=["DE", "FR"], coordinator_region="EU")
    assert parse_policy(policy_data).lawful_basis == "legitimate_interests"


def test_lawful_basis_unmapped_region_gets_the_stricter_law(policy_data: dict[str, Any]) -> None:
    policy_data.update(lawful_basis="legitimate_interests", regions=["XX"], coordinator_region="XX")
    with pytest.raises(PolicyFileError, match="lawful_basis"):
        parse_policy(policy_data)


def test_sensitive_data_column_outside_sensitive_columns_refused(policy_data: dict[str, Any]) -> None:
    policy_data["columns"]["members"].append("gender")
    with pytest.raises(PolicyFileError, match="sensitive"):
        parse_policy(policy_data)


def test_sensitive_columns_must_be_sensitive(policy_data: dict[str, Any]) -> None:
    policy_data["sensitive_columns"] = {"members": ["tier"]}
    with pytest.raises(PolicyFileError, match="not sensitive"):
        parse_policy(policy_data)


def test_data_minimisation_unknown_column_refused(policy_data: dict[str, Any]) -> None:
    policy_data["columns"]["transactions"].append("card_number")
    with pytest.raises(PolicyFileError, match="no data category"):
        parse_policy(policy_data)


def test_automated_decision_needs_opt_out(policy_data: dict[str, Any]) -> None:
    policy_data["automated_decisions"] = True
    with pytest.raises(PolicyFileError, match=r"PIPL Art\. 24"):
        parse_policy(policy_data)
    policy_data["automated_decision_opt_out"] = True
    assert parse_policy(policy_data).automated_decisions


def test_cross_border_transfer_needs_mechanism(policy_data: dict[str, Any]) -> None:
    policy_data["cross_border"] = {"allowed": True}
    with pytest.raises(PolicyFileError, match="mechanism"):
        parse_policy(policy_data)
    policy_data["cross_border"] = {"allowed": True, "mechanism": "cn_standard_contract"}
    assert parse_policy(policy_data).cross_border.allowed


def test_retention_default_is_three_years(policy_data: dict[str, Any]) -> None:
    assert parse_policy(policy_data).data_retention_days == 3 * 365


def test_load_policy_reports_bad_yaml_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("purpose: [unclosed", encoding="utf-8")
    with pytest.raises(PolicyFileError, match=r"bad\.yaml"):
        load_policy(bad)
    with pytest.raises(PolicyFileError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_model_forbids_extra_fields_directly(policy_data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="extra"):
        DataUsePolicy.model_validate({**policy_data, "x": 1})


def test_the_flower_apps_a_policy_names_are_part_of_what_the_officers_sign(
    policy_data: dict[str, Any],
) -> None:
    """Naming the app binds the code to the approval; naming none keeps every earlier policy's hash."""
    plain = parse_policy(policy_data)
    assert "flower_apps" not in plain.canonical_json()  # hashes signed before the field existed hold
    app, other = "ab" * 32, "cd" * 32
    bound = parse_policy({**policy_data, "flower_apps": [app.upper()]})
    assert bound.flower_apps == (app,)
    assert bound.content_hash() != plain.content_hash()
    swapped = parse_policy({**policy_data, "flower_apps": [other]})
    assert swapped.content_hash() != bound.content_hash()  # another app is another policy to sign
    assert parse_policy(json.loads(bound.canonical_json())).content_hash() == bound.content_hash()
    with pytest.raises(PolicyFileError, match="sha256 of its FAB"):
        parse_policy({**policy_data, "flower_apps": ["not-a-hash"]})
