"""Churn and propensity labels at the edges of the as-of date and the horizon."""

from __future__ import annotations

import pandas as pd
import pytest

from models import churn_labels, propensity_labels, task_defaults
from models.task import Task

AS_OF = pd.Timestamp("2017-09-01")


def _tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_id": [r[0] for r in rows],
            "timestamp": pd.to_datetime([r[1] for r in rows], format="ISO8601"),
            "amount": [r[2] for r in rows],
        }
    )


def test_churn_known_answers() -> None:
    # Every member spends $100 over the 100 days before as_of: historical rate $1/day.
    history = [(m, "2017-05-24", 100.0) for m in ("stay", "lapse", "drop", "edge_in", "edge_out", "just")]
    future = [
        ("stay", "2017-10-01", 90.0),  # $1/day over 90 days: not churn
        ("drop", "2017-10-01", 26.0),  # 26/90 = 0.289 < 0.30: churn
        ("just", "2017-10-01", 27.0),  # 27/90 = 0.30: not below 30 %: not churn
        ("edge_in", "2017-11-29 23:59", 90.0),  # last instant inside the 90-day horizon
        ("edge_out", "2017-11-30", 90.0),  # first instant after the horizon: counts as no purchase
    ]
    y = churn_labels(_tx(history + future + [("new", "2017-09-01", 5.0)]), as_of=AS_OF, horizon_days=90)
    assert y.to_dict() == {"drop": 1, "edge_in": 0, "edge_out": 1, "just": 0, "lapse": 1, "stay": 0}
    assert "new" not in y.index  # first seen ON as_of: not active before it


def test_churn_respects_members_filter_and_horizon_validation() -> None:
    tx = _tx([("a", "2017-08-01", 10.0), ("b", "2017-08-01", 10.0)])
    y = churn_labels(tx, as_of=AS_OF, horizon_days=30, members=pd.DataFrame({"member_id": ["a"]}))
    assert list(y.index) == ["a"]
    with pytest.raises(ValueError, match="horizon_days"):
        churn_labels(tx, as_of=AS_OF, horizon_days=0)


def test_propensity_any_campaign_in_window_inside_its_coupon_window() -> None:
    rows = [  # member, campaign, start, end, redeemed_at
        ("a", "1", "2017-09-01", "2017-09-20", None),
        ("a", "2", "2017-09-10", "2017-10-10", "2017-10-10 18:00"),
        ("b", "1", "2017-09-01", "2017-09-20", "2017-09-21"),
        ("c", "3", "2017-08-31", "2017-09-20", "2017-09-02"),
        ("d", "4", "2017-09-30", "2017-10-30", None),
        ("e", "1", "2017-09-01", "2017-09-20", "2017-09-20"),
        ("f", "5", "2017-10-01", "2017-10-30", "2017-10-02"),
    ]
    columns = ["member_id", "campaign_id", "start_date", "end_date", "redeemed_at"]
    campaigns = pd.DataFrame(rows, columns=columns)
    for column in ("start_date", "end_date", "redeemed_at"):
        campaigns[column] = pd.to_datetime(campaigns[column], format="ISO8601")
    y = propensity_labels(campaigns, as_of=AS_OF, horizon_days=30)
    # a: second campaign redeemed on its last day; b: after the window; c: campaign started before
    # as_of (not labelled); d: starts on the last day of the horizon; e: redeemed on end day;
    # f: campaign starts the day after the horizon (not labelled).
    assert y.to_dict() == {"a": 1, "b": 0, "d": 0, "e": 1}


def test_propensity_without_redemption_column_is_all_negative() -> None:
    campaigns = pd.DataFrame(
        {"member_id": ["a"], "campaign_id": ["1"], "start_date": [AS_OF], "end_date": [AS_OF]}
    )
    assert propensity_labels(campaigns, as_of=AS_OF, horizon_days=1).to_dict() == {"a": 0}


def test_task_defaults_fit_inside_complete_journey() -> None:
    for task in Task:
        as_of, horizon = task_defaults(task)
        assert pd.Timestamp("2017-05-01") <= pd.Timestamp(as_of)
        assert pd.Timestamp(as_of) + pd.Timedelta(days=horizon) <= pd.Timestamp("2018-01-01")
