"""The demo report's fairness rows: a gap the card could not measure reads "not computable", never 0."""

from __future__ import annotations

from loyalfed.demo.stages.federated_training import fairness_row
from protocol.model_card import CardFairnessGap


def test_a_gap_the_card_could_not_measure_is_not_a_zero_in_the_report() -> None:
    nobody = CardFairnessGap(
        auc_by_group={}, positive_rate_by_group={"35-44": 0.0, "45-54": 0.0}, auc_gap=None,
        positive_rate_gap=None, warning=False, too_small_for_auc=["35-44", "45-54"],
        not_computable=["no member of any group predicted positive at the cut (score >= 0.990)"],
    )  # fmt: skip
    assert fairness_row("age_band", nobody) == ["age_band", "not computable", "not computable", "no", "none"]
    measured = nobody.model_copy(
        update={"auc_gap": 0.04, "positive_rate_gap": 0.02, "too_small_to_report": ["65+"]}
    )
    assert fairness_row("age_band", measured) == ["age_band", "0.040", "0.020", "no", "65+"]
