"""The coordinator reads a node's feature-moments reply, and refuses a malformed one by name."""

from __future__ import annotations

import math

import pytest
from flwr.app import MetricRecord

from coordinator.pooled_standardisation import feature_moments_of


def test_a_well_formed_reply_becomes_moments() -> None:
    moments = feature_moments_of(
        MetricRecord({"count": 30, "sums": [3.0, 6.0], "sums-of-squares": [1.5, 2.5]})
    )
    assert (moments.count, moments.sums, moments.sums_of_squares) == (30, (3.0, 6.0), (1.5, 2.5))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"count": 30, "sums": [3.0, math.nan], "sums-of-squares": [1.5, 2.5]}, "finite numbers"),
        ({"count": 30, "sums": [3.0], "sums-of-squares": [1.5, 2.5]}, "differ in length"),
        ({"count": -1, "sums": [3.0], "sums-of-squares": [1.5]}, "at least 0"),
        ({"count": 30, "sums": [3.0]}, "sums-of-squares"),
    ],
)
def test_a_malformed_reply_is_refused_with_the_reason(record: dict, reason: str) -> None:
    with pytest.raises((KeyError, ValueError), match=reason):
        feature_moments_of(MetricRecord(record))
