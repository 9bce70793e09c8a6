"""Fairness gaps from summed group histograms: as the centralized gaps, and no alarm on small-group noise."""

from __future__ import annotations

import numpy as np
import pytest

from models.group_fairness import group_fairness
from models.metrics import fairness_gaps
from models.score_histogram_metrics import ScoreHistogramTotal


def _members(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(float)
    p = 1 / (1 + np.exp(-(rng.normal(-1.5, 1.0, n) + 1.2 * y)))
    return y, p


def test_group_fairness_from_summed_group_histograms_matches_the_centralized_gaps() -> None:
    y, p = _members(4_000, 5)
    rng = np.random.default_rng(6)
    band = rng.choice(
        np.array(["18-34", "35-54", "55+", "tiny"], dtype=object), len(y), p=[0.4, 0.4, 0.195, 0.005]
    )
    p = np.where(band == "55+", np.clip(p * 1.6, 0, 1), p)  # the model over-scores one group
    overall = ScoreHistogramTotal.of(y, p)
    groups = {g: ScoreHistogramTotal.of(y[band == g], p[band == g]) for g in set(band)}
    result = group_fairness(overall, groups, attribute="age_band", k=25)
    exact = fairness_gaps(y, p, {"age_band": band}, min_group_size=25)[0]
    assert result.too_small == ("tiny",)
    for group, auc in exact.auc_by_group.items():
        assert result.auc_by_group[group] == pytest.approx(auc, abs=2e-3)
        assert result.positive_rate_by_group[group] == pytest.approx(
            exact.positive_rate_by_group[group], abs=0.01
        )
    # 800 members in the over-scored group: the rate gap is far outside its noise.
    assert result.positive_rate_gap > 0.15 and result.positive_rate_gap_clear_of_noise and result.alarm
    card = result.to_dict()
    assert card["too_small_to_report"] == ["tiny"] and card["warning"] is True


def test_no_alarm_on_the_noise_of_small_groups_of_a_fair_model() -> None:
    # The same model for every group; groups of 30-40 members differ by chance alone.
    fired, above = 0, 0
    for seed in range(40):
        y, p = _members(4_000, 100 + seed)
        rng = np.random.default_rng(seed)
        band = rng.choice(
            np.array(["a", "b", "c", "d"], dtype=object), len(y), p=[0.98, 0.0075, 0.0075, 0.005]
        )
        groups = {g: ScoreHistogramTotal.of(y[band == g], p[band == g]) for g in set(band)}
        result = group_fairness(ScoreHistogramTotal.of(y, p), groups, attribute="x", k=20)
        above += (result.auc_gap or 0.0) > 0.15 or (result.positive_rate_gap or 0.0) > 0.15
        fired += result.alarm
        assert result.alarm or not result.within_noise or result.to_dict()["gap_within_noise"]
    assert above >= 10  # raw gaps above 15 points are common at these sizes...
    assert fired <= 2  # ...but the alarm stays quiet (Bonferroni 95%: about 5% false alarms at most)


def test_a_real_gap_in_small_groups_is_still_caught_when_it_is_large_enough() -> None:
    y, p = _members(6_000, 9)
    rng = np.random.default_rng(3)
    band = rng.choice(np.array(["a", "b"], dtype=object), len(y), p=[0.95, 0.05])
    p = np.where(band == "b", rng.random(len(y)), p)  # the model knows nothing about group b
    groups = {g: ScoreHistogramTotal.of(y[band == g], p[band == g]) for g in set(band)}
    result = group_fairness(ScoreHistogramTotal.of(y, p), groups, attribute="x", k=20)
    assert result.auc_gap > 0.15 and result.alarm


def test_gaps_that_cannot_be_measured_are_none_with_the_reason_never_zero() -> None:
    # A DP model whose scores all fall in one fine bin predicts nobody positive at the base-rate
    # cut, and groups of 60 members at a 5 % base rate hold under 10 positives each: neither gap
    # exists, and the card must say so instead of reporting 0.000.
    rng = np.random.default_rng(4)
    y = (rng.random(180) < 0.05).astype(float)
    p = np.full(len(y), 0.3)
    band = np.repeat(np.array(["a", "b", "c"], dtype=object), 60)
    groups = {g: ScoreHistogramTotal.of(y[band == g], p[band == g]) for g in ("a", "b", "c")}
    result = group_fairness(ScoreHistogramTotal.of(y, p), groups, attribute="age_band", k=20)
    assert result.positive_rate_by_group == {"a": 0.0, "b": 0.0, "c": 0.0}
    assert result.auc_gap is None and result.positive_rate_gap is None and not result.alarm
    card = result.to_dict()
    assert card["auc_gap"] is None and card["positive_rate_gap"] is None
    nobody, no_auc = card["not_computable"]
    assert nobody.startswith("no member of any group predicted positive")
    assert no_auc.startswith("AUC gap not computable: fewer than two groups with at least 10")
    assert "a, b, c" in no_auc
    # One group of k members: no gap at all, said as such.
    alone = group_fairness(ScoreHistogramTotal.of(y, p), {"a": groups["a"]}, attribute="x", k=20)
    assert alone.to_dict()["not_computable"] == [
        "no gap: fewer than two groups of at least k held-out members (x)"
    ]
