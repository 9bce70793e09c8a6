"""A node's churn warning list: its own members only, bands from the programme's rules and the card."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
from model_card_example import example_card

from loyalfed.datasets.synthetic import SynthConfig, generate_synthetic_federation
from models.feature_schema import default_feature_schema
from models.networks import make_model
from participant_node.training.churn_warning_list import WARNING_LIST_COLUMNS, warning_list
from participant_node.training.errors import TrainingError
from protocol import write_model_card

AS_OF = datetime(2017, 9, 1)


def _model(folder: Path, *, task: str, base_rate: float | None) -> Path:
    schema = default_feature_schema()
    torch.manual_seed(0)
    model = make_model("logreg", schema.n_features)
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / "model.pt")
    write_model_card(folder, example_card(task, base_rate=base_rate))
    return folder


@pytest.fixture(scope="module")
def partner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("warning") / "federation"
    generate_synthetic_federation(out, SynthConfig(members=800, partners=2, seed=5, chunk_members=800))
    return out / "synth-01"


def test_bands_follow_days_since_last_purchase_and_stay_with_the_partner(
    partner: Path, tmp_path: Path
) -> None:
    table = warning_list(partner, _model(tmp_path / "m", task="churn", base_rate=0.7), as_of=AS_OF)
    assert tuple(table.columns) == WARNING_LIST_COLUMNS
    members = pd.read_parquet(partner / "members.parquet")["member_id"]
    assert set(table["member_id"]) <= set(members)  # this partner's own members, nobody else's
    days = table["days_since_last_purchase"]
    assert (table.loc[days >= 90, "band"] == "lapsed").all() and (
        table.loc[days.isna(), "band"] == "lapsed"
    ).all()
    assert set(table.loc[(days >= 30) & (days < 90), "band"]) <= {"watch", "at_risk"}
    assert set(table["band"]) >= {"lapsed", "low"}
    order = table["band"].map({"lapsed": 0, "at_risk": 1, "watch": 2, "low": 3})
    assert order.is_monotonic_increasing  # the most urgent first


def test_propensity_lists_scores_and_a_card_without_base_rate_is_refused(
    partner: Path, tmp_path: Path
) -> None:
    table = warning_list(partner, _model(tmp_path / "p", task="propensity", base_rate=None), as_of=AS_OF)
    assert list(table.columns) == ["member_id", "score"]
    with pytest.raises(TrainingError, match="base rate"):
        warning_list(partner, _model(tmp_path / "c", task="churn", base_rate=None), as_of=AS_OF)
