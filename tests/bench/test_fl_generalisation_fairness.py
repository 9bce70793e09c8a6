"""The bench's Complete Journey fairness target: met by a gap any Complete Journey card measured,
never by a gap the card could not measure."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.fl_generalisation import complete_journey_fairness, measured_gap_attributes
from models.group_fairness import group_fairness
from models.score_histogram_metrics import ScoreHistogramTotal


def _card_fairness(base_rate: float, *, groups_score_low: bool, seed: int) -> dict[str, Any]:
    """One ε = 3 card's ``fairness_eps3``: 450 held-out members, 150 of them in three age bands."""
    rng = np.random.default_rng(seed)
    y = (rng.random(450) < base_rate).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(-1.5, 0.8, len(y)) + 1.5 * y)))
    band = np.array(["unknown"] * 300 + ["25-34"] * 40 + ["35-44"] * 50 + ["45-54"] * 60, dtype=object)
    if groups_score_low:  # steady shoppers: nobody in a band scores near the top 14 %, few churn
        p = np.where(band != "unknown", p * 0.05, p)
        y = np.where(band != "unknown", 0.0, y)
    overall = ScoreHistogramTotal.of(y, p)
    groups = {g: ScoreHistogramTotal.of(y[band == g], p[band == g]) for g in ("25-34", "35-44", "45-54")}
    return {"age_band": group_fairness(overall, groups, attribute="age_band", k=20).to_dict()}


def _entry(fairness: dict[str, Any]) -> dict[str, Any]:
    return {"federated_dp": {"3": {"auc": 0.77}}, "fairness_eps3": fairness}


def test_a_card_that_measured_no_gap_does_not_meet_the_target() -> None:
    churn = _card_fairness(0.14, groups_score_low=True, seed=1)
    assert churn["age_band"]["auc_gap"] is None and churn["age_band"]["positive_rate_gap"] is None
    assert measured_gap_attributes(churn) == []
    summary = complete_journey_fairness({"complete-journey": _entry(churn), "cj-like-1k": _entry({})})
    assert summary == {
        "fairness_gaps_measured_at_eps3": {"complete-journey": []},
        "fairness_gaps_reported_for_an_attribute": False,
    }


def test_a_gap_measured_on_another_complete_journey_card_meets_it() -> None:
    churn = _card_fairness(0.14, groups_score_low=True, seed=1)
    propensity = _card_fairness(0.3, groups_score_low=False, seed=2)
    assert propensity["age_band"]["positive_rate_gap"] is not None
    summary = complete_journey_fairness(
        {"complete-journey": _entry(churn), "complete-journey-propensity": _entry(propensity)}
    )
    assert summary["fairness_gaps_measured_at_eps3"] == {
        "complete-journey": [],
        "complete-journey-propensity": ["age_band"],
    }
    assert summary["fairness_gaps_reported_for_an_attribute"] is True


def test_no_complete_journey_run_no_verdict() -> None:
    synthetic = _entry(_card_fairness(0.3, groups_score_low=False, seed=3))
    assert complete_journey_fairness({"cj-like-1k": synthetic}) == {}
