"""Synthetic scale data: stored calibration, contract, marginals, chunking, reproducibility, CLI."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from loyalfed.cli.app import app
from loyalfed.datasets.calibration import COMPLETE_JOURNEY_CALIBRATION, LAPSE_WINDOW_DAYS, compute_calibration
from loyalfed.datasets.complete_journey import load_complete_journey
from loyalfed.datasets.consent_generation import CONSENT_RATES
from loyalfed.datasets.synthetic import SynthConfig, generate_synthetic_federation
from participant_node.data import PartnerData, load_federation, load_partner
from policies.purpose import Purpose

CONFIG = SynthConfig(members=6_000, partners=3, seed=11, chunk_members=2_000)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "federation"
    generate_synthetic_federation(out, CONFIG)
    return out


@pytest.fixture(scope="module")
def loaded(synth: Path) -> dict[str, PartnerData]:
    return {p.partner_id: load_partner(p.path) for p in load_federation(synth).partners}


def test_stored_calibration_matches_the_complete_journey() -> None:
    recomputed = compute_calibration(load_complete_journey())
    for name, stored in dataclasses.asdict(COMPLETE_JOURNEY_CALIBRATION).items():
        value = dataclasses.asdict(recomputed)[name]
        if name.endswith("_bands"):  # (label, share) pairs
            value, stored = dict(value), dict(stored)
        assert value == pytest.approx(stored, abs=1e-4), name


def test_every_file_follows_the_contract(loaded: dict[str, PartnerData]) -> None:
    assert list(loaded) == ["synth-01", "synth-02", "synth-03"]
    assert all(d.report.ok and d.campaigns is not None for d in loaded.values())


def test_people_are_shared_by_contact_not_by_member_id(loaded: dict[str, PartnerData]) -> None:
    members = pd.concat([d.members.assign(partner=p) for p, d in loaded.items()])
    per_person = members.groupby("phone")["partner"].nunique()
    assert len(per_person) == CONFIG.members
    assert 0.15 < (per_person == 2).mean() < 0.25  # cross_enrolled_share = 0.2
    assert members["member_id"].is_unique
    assert members.groupby("phone")["email"].nunique().max() == 1


def test_marginals_follow_the_calibration(loaded: dict[str, PartnerData]) -> None:
    calibration = COMPLETE_JOURNEY_CALIBRATION
    members = pd.concat([d.members for d in loaded.values()])
    transactions = pd.concat([d.transactions for d in loaded.values()])
    person = transactions["member_id"].map(members.set_index("member_id")["phone"])
    baskets = person.value_counts()
    assert baskets.median() == pytest.approx(calibration.baskets_per_member_quantiles[10], rel=0.15)
    assert np.log(transactions["amount"]).mean() == pytest.approx(calibration.log_spend_mean, abs=0.1)
    last = transactions.groupby(person)["timestamp"].max()
    end = pd.Timestamp(CONFIG.start) + pd.Timedelta(days=CONFIG.days)
    lapsed = (last < end - pd.Timedelta(days=LAPSE_WINDOW_DAYS)).mean()
    assert lapsed == pytest.approx(calibration.lapsing_share, abs=0.03)
    consents = pd.concat([d.consents for d in loaded.values()])
    for purpose, rate in CONSENT_RATES.items():
        assert (consents["purpose"] == purpose.value).sum() / len(members) == pytest.approx(rate, abs=0.03)
    # The separate sensitive-data consent rides on the analytics consents of members who gave bands.
    banded = set(members.loc[members[["age_band", "income_band"]].notna().any(axis=1), "member_id"])
    analytics = consents["purpose"].isin([Purpose.CHURN_MODEL.value, Purpose.PROPENSITY_MODEL.value])
    expected = analytics & consents["member_id"].isin(banded)
    assert (consents["sensitive"].astype(bool) == expected).all() and expected.any()
    campaigns = pd.concat([d.campaigns for d in loaded.values() if d.campaigns is not None])
    assert campaigns["redeemed_at"].notna().mean() == pytest.approx(calibration.redemption_rate, abs=0.03)


def test_written_in_chunks_and_reproducible(synth: Path, tmp_path: Path) -> None:
    row_groups = pq.ParquetFile(synth / "synth-01" / "transactions.parquet").metadata.num_row_groups
    assert row_groups == CONFIG.members // CONFIG.chunk_members
    again = generate_synthetic_federation(tmp_path / "again", CONFIG).out
    for file in sorted(synth.rglob("*.parquet")):
        twin = again / file.relative_to(synth)
        assert hashlib.sha256(file.read_bytes()).digest() == hashlib.sha256(twin.read_bytes()).digest()


def test_cli_synth_prints_json(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = [
        "data",
        "synth",
        "--members",
        "1500",
        "--partners",
        "2",
        "--seed",
        "3",
        "--out",
        str(out),
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["partners"]) == {"synth-01", "synth-02"}
    assert sum(p["members"] for p in report["partners"].values()) > 1500
    assert (out / "federation.toml").is_file()
