"""Federation shapes bend the generator as they say: members per node, currency, newcomers, history."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from loyalfed.datasets.synthetic import generate_synthetic_federation
from loyalfed.datasets.synthetic_shapes import SHAPES, FederationShape


def _generate(shape: FederationShape, out: Path) -> dict[str, dict[str, pd.DataFrame]]:
    generate_synthetic_federation(out, shape.synth_config(seed=3), calibration=shape.calibration())
    return {
        p.name: {k: pd.read_parquet(p / f"{k}.parquet") for k in ("members", "transactions")}
        for p in sorted(out.glob("synth-*"))
    }


def test_currency_history_and_disjoint_nodes(tmp_path: Path) -> None:
    usd = FederationShape(name="usd", members_per_node=300, history_days=60)
    jpy = usd.model_copy(update={"name": "jpy", "currency_per_usd": 110.0})
    a, b = _generate(usd, tmp_path / "usd"), _generate(jpy, tmp_path / "jpy")
    assert list(a) == ["synth-01", "synth-02", "synth-03"]
    sizes = [len(d["members"]) for d in a.values()]
    assert sum(sizes) == 900 and all(240 < s < 360 for s in sizes)  # 3 x 300 homes, no cross-enrolment
    spend_a = np.log(pd.concat(d["transactions"]["amount"] for d in a.values())).median()
    spend_b = np.log(pd.concat(d["transactions"]["amount"] for d in b.values())).median()
    assert abs(spend_b - spend_a - np.log(110.0)) < 0.05
    first = pd.concat(d["transactions"]["timestamp"] for d in a.values()).min()
    assert pd.Timestamp(usd.start) <= first < pd.Timestamp(usd.as_of)
    assert usd.days == 60 + usd.horizon_days + 30


def test_newcomers_join_during_the_history_and_many_buy_once(tmp_path: Path) -> None:
    shape = SHAPES["one-off-10k"].model_copy(update={"members_per_node": 400})
    data = _generate(shape, tmp_path / "one-off")
    members = pd.concat(d["members"] for d in data.values())
    tx = pd.concat(d["transactions"] for d in data.values())
    joined_inside = (members["joined_at"] > pd.Timestamp(shape.start)).mean()
    assert 0.5 < joined_inside < 0.7  # newcomer_share = 0.6
    before = tx[tx["timestamp"] < pd.Timestamp(shape.as_of)]
    per_member = before.groupby("member_id").size()
    assert (per_member <= 2).mean() > 0.5  # mostly one-off buyers
    first = before.groupby("member_id")["timestamp"].min()
    joined = members.set_index("member_id")["joined_at"]
    newcomers = joined[joined > pd.Timestamp(shape.start)].index.intersection(first.index)
    assert (first[newcomers] >= joined[newcomers] - pd.Timedelta(seconds=1)).all()


def test_every_shape_keeps_its_task_window_inside_the_data() -> None:
    for shape in SHAPES.values():
        config = shape.synth_config()
        end = pd.Timestamp(config.start) + pd.Timedelta(days=config.days)
        assert pd.Timestamp(shape.as_of) + pd.Timedelta(days=shape.horizon_days) < end
        assert config.members == shape.members_per_node * shape.nodes
