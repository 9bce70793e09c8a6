"""The Complete Journey federation: partners, shared identifiers, consent rates, reproducibility."""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from loyalfed.cli.app import app
from loyalfed.datasets.complete_journey import STORE_GROUPS
from loyalfed.datasets.consent_generation import CONSENT_RATES, WITHDRAWN_SHARE
from loyalfed.datasets.member_identity import contact_identifiers
from participant_node.data import PartnerData, PartnerKind, load_federation, load_partner
from policies.purpose import Purpose

PARTNERS = (*STORE_GROUPS, "careplus", "fuelgo")


@pytest.fixture(scope="module")
def loaded(cj_federation: Path) -> dict[str, PartnerData]:
    return {p.partner_id: load_partner(p.path) for p in load_federation(cj_federation).partners}


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_partners_kinds_and_region(cj_federation: Path) -> None:
    federation = load_federation(cj_federation)
    assert federation.partner_ids == PARTNERS
    kinds = {p.partner_id: p.kind for p in federation.partners}
    assert [kinds[g] for g in STORE_GROUPS] == [PartnerKind.STORE_GROUP] * 4
    assert kinds["careplus"] is kinds["fuelgo"] is PartnerKind.BRAND
    assert {p.region for p in federation.partners} == {"CN"}
    assert (
        tomllib.loads((cj_federation / "federation.toml").read_text())["partners"][0]["id"] == STORE_GROUPS[0]
    )


def test_every_row_is_usable_and_all_lines_are_kept(
    cj_federation: Path, loaded: dict[str, PartnerData]
) -> None:
    assert all(data.report.ok for data in loaded.values())
    assert sum(len(d.transactions) for d in loaded.values()) == 1_469_307  # every CJ line, none dropped
    summary = json.loads((cj_federation / "complete_journey_build.json").read_text())
    assert summary["away_lines"] > 0


def test_store_groups_are_balanced_and_disjoint(loaded: dict[str, PartnerData]) -> None:
    sizes = [len(loaded[g].members) for g in STORE_GROUPS]
    # 2 of the 2,469 households only ever bought health/beauty or fuel lines: brand members only.
    assert sum(sizes) == 2_467 and max(sizes) - min(sizes) <= 0.05 * max(sizes)
    phones = [set(loaded[g].members["phone"]) for g in STORE_GROUPS]
    assert all(not (phones[i] & phones[j]) for i in range(4) for j in range(i + 1, 4))


def test_brands_share_phone_and_email_but_not_member_ids(loaded: dict[str, PartnerData]) -> None:
    retail = pd.concat([loaded[g].members for g in STORE_GROUPS])
    for brand, prefix in (("careplus", "CP-"), ("fuelgo", "FG-")):
        members = loaded[brand].members
        assert members["member_id"].str.startswith(prefix).all()
        assert len(set(members["phone"]) - set(retail["phone"])) <= 2  # the brand-only households
        joined = members.merge(retail, on="phone", suffixes=("", "_fm"))
        assert (joined["email"] == joined["email_fm"]).all()
        assert not set(members["member_id"]) & set(retail["member_id"])
    assert loaded["careplus"].members["phone"].str.fullmatch(r"\+8613\d{9}").all()
    assert loaded["careplus"].transactions["category"].isin(["VITAMINS", "COLD AND FLU"]).any()
    assert loaded["fuelgo"].members.shape[0] == 1_136


def test_consent_rates_and_withdrawals(loaded: dict[str, PartnerData]) -> None:
    consents = pd.concat([d.consents for d in loaded.values()])
    members = sum(len(d.members) for d in loaded.values())
    for purpose, rate in CONSENT_RATES.items():
        granted = consents[consents["purpose"] == purpose.value]
        assert not granted.duplicated(["member_id"]).any()
        assert abs(len(granted) / members - rate) < 0.03, purpose
    assert abs(consents["withdrawn_at"].notna().mean() - WITHDRAWN_SHARE) < 0.01
    matching = consents[consents["purpose"] == Purpose.CROSS_BRAND_MATCHING.value]
    assert set(matching["scope"]) == {"federation"}
    assert set(consents["lawful_basis"]) == {"consent"} and not consents["cross_border"].any()


def test_members_who_gave_demographic_bands_gave_the_sensitive_data_consent(
    loaded: dict[str, PartnerData],
) -> None:
    # Only their churn and propensity consents carry it (fairness checks of the analytics models).
    for data in loaded.values():
        banded = data.members[["age_band", "income_band"]].notna().any(axis=1)
        with_bands = set(data.members.loc[banded, "member_id"])
        consents = data.consents
        analytics = consents["purpose"].isin([Purpose.CHURN_MODEL.value, Purpose.PROPENSITY_MODEL.value])
        expected = analytics & consents["member_id"].isin(with_bands)
        assert (consents["sensitive"].astype(bool) == expected).all()
    assert any(d.consents["sensitive"].astype(bool).any() for d in loaded.values())


def test_members_joined_before_their_first_purchase(loaded: dict[str, PartnerData]) -> None:
    for data in loaded.values():
        first = data.transactions.groupby("member_id")["timestamp"].min()
        joined = data.members.set_index("member_id")["joined_at"]
        assert (joined.loc[first.index] < first).all()
    demographics = pd.concat([d.members for d in loaded.values() if d.path.name in STORE_GROUPS])
    assert demographics["age_band"].notna().sum() == 801


def test_campaign_redemptions_fall_inside_the_window(loaded: dict[str, PartnerData]) -> None:
    campaigns = pd.concat([loaded[g].campaigns for g in STORE_GROUPS])
    redeemed = campaigns.dropna(subset=["redeemed_at"])
    assert len(campaigns) <= 6_589 and campaigns.duplicated(["member_id", "campaign_id"]).sum() == 0
    assert 0 < len(redeemed) < len(campaigns)
    assert redeemed["redeemed_at"].between(redeemed["start_date"], redeemed["end_date"]).all()
    assert loaded["careplus"].campaigns is None


def test_cli_build_is_byte_for_byte_reproducible_and_fast(cj_federation: Path, tmp_path: Path) -> None:
    # CPU time, not wall time: the build must be fast, but this machine may be shared.
    started = time.process_time()
    args = ["data", "complete-journey", "--out", str(tmp_path / "again"), "--seed", "7", "--json"]
    result = CliRunner().invoke(app, args)
    seconds = time.process_time() - started
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["partners"]["fuelgo"]["members"] == 1_136
    assert _hashes(tmp_path / "again") == _hashes(cj_federation)
    assert seconds < 30, f"build took {seconds:.1f} CPU seconds"


def test_member_ids_are_unique_across_freshmart_store_groups(loaded: dict[str, PartnerData]) -> None:
    ids = pd.concat([loaded[g].members["member_id"] for g in STORE_GROUPS])
    assert ids.is_unique and ids.str.startswith("FM-").all()


def test_seed_changes_identifiers_and_identifiers_are_unique() -> None:
    index = np.arange(100_000)
    a, b = contact_identifiers(index, seed=7), contact_identifiers(index, seed=8)
    assert len(set(a.phone)) == len(set(a.email)) == 100_000
    assert (a.phone != b.phone).mean() > 0.99
    assert np.array_equal(contact_identifiers(index[:10], seed=7).phone, a.phone[:10])
