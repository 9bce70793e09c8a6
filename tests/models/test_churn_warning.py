"""Churn warning bands: the programme's day rules first, then the score cuts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.churn_warning import WarningBand, WarningPolicy, days_since_last_purchase, warning_bands


def test_bands_follow_the_programme_rules_and_the_score() -> None:
    policy = WarningPolicy.from_base_rate(0.15)
    assert (policy.watch_score, policy.at_risk_score) == (0.15, 0.30)
    scores = np.array([0.05, 0.05, 0.20, 0.20, 0.40, 0.01, 0.9, np.nan])
    days = np.array([3, 30, 3, 31, 2, 90, np.inf, 45])
    assert warning_bands(scores, days, policy).tolist() == [
        WarningBand.LOW, WarningBand.WATCH, WarningBand.WATCH, WarningBand.AT_RISK,
        WarningBand.AT_RISK, WarningBand.LAPSED, WarningBand.LAPSED, WarningBand.WATCH,
    ]  # fmt: skip


def test_policy_refuses_inconsistent_cuts() -> None:
    with pytest.raises(ValueError, match="watch_score"):
        WarningPolicy(watch_score=0.5, at_risk_score=0.2)
    with pytest.raises(ValueError, match="warning_days"):
        WarningPolicy(watch_score=0.1, at_risk_score=0.2, warning_days=90, lapsed_days=30)
    with pytest.raises(ValueError, match="base_rate"):
        WarningPolicy.from_base_rate(0.0)
    assert WarningPolicy.from_base_rate(0.8).at_risk_score == pytest.approx(0.9)


def test_days_since_last_purchase_ignores_the_future_and_marks_non_buyers() -> None:
    tx = pd.DataFrame(
        {
            "member_id": ["a", "a", "b", "c"],
            "timestamp": pd.to_datetime(
                ["2017-08-01", "2017-08-22", "2017-09-02", "2017-06-03 12:00"], format="ISO8601"
            ),
        }
    )
    days = days_since_last_purchase(["a", "b", "c", "d"], tx, as_of="2017-09-01")
    assert days[0] == pytest.approx(10.0) and days[2] == pytest.approx(89.5)
    assert np.isinf(days[1]) and np.isinf(days[3])
