"""Typed replies: each round-trips through Flower records, and a malformed one is a typed error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from protocol import (
    EvaluationLayout,
    EvaluationReply,
    GroupLabelsReply,
    MalformedReplyError,
    MomentsReply,
    NodeRecord,
    PrivacySpentReply,
    Refusal,
    TrainReply,
    refusal_of,
)

NODE = NodeRecord("freshmart-north", "f" * 64, "c" * 64, members_used=420, members_excluded_by_consent=12)


def _train_content(reply: TrainReply) -> RecordDict:
    return RecordDict({"arrays": ArrayRecord(), "metrics": reply.metrics(), "node": reply.node.to_record()})


def test_replies_round_trip() -> None:
    train = TrainReply(NODE, 300, 1.2, 1e-5, 0.9, 0.5, 10, 0.41, 0.2)
    assert TrainReply.parse(_train_content(train)) == train
    layout = EvaluationLayout(100, (("age_band", "25-34"), ("gender", "F")))
    vector = np.arange(layout.length, dtype=np.float64)
    evaluation = EvaluationReply(NODE, 58, 0.12, 0.8, 3.5, vector)
    parsed = EvaluationReply.parse(evaluation.to_content())
    assert parsed.metrics() == evaluation.metrics() and np.array_equal(parsed.vector, vector)
    assert EvaluationLayout.from_wire(layout.to_wire()) == layout
    labels = GroupLabelsReply(NODE, (("age_band", "25-34"), ("gender", "F")), 1200)
    assert GroupLabelsReply.parse(labels.to_content()) == labels
    moments = MomentsReply(NODE, 30, (3.0, 6.0), (1.5, 2.5))
    assert MomentsReply.parse(moments.to_content()) == moments
    spent = PrivacySpentReply("freshmart-north", "job-1", 0.997, 1e-5, 30)
    assert PrivacySpentReply.parse(spent.to_content()) == spent
    refusal = Refusal("freshmart-north", "no approval of policy hash ab12 by this node's data officer")
    assert refusal_of(refusal.to_content()) == refusal
    assert str(refusal).startswith("refused by node freshmart-north: no approval")
    assert refusal_of(moments.to_content()) is None


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (RecordDict({"metrics": MetricRecord({"num-examples": 3})}), "no 'arrays'"),
        (RecordDict({"arrays": ArrayRecord(), "metrics": MetricRecord({"num-examples": 3})}), "no 'node'"),
        (
            RecordDict(
                {
                    "arrays": ArrayRecord(),
                    "metrics": MetricRecord({"num-examples": 3, "epsilon": math.inf}),
                    "node": NODE.to_record(),
                }
            ),
            "'epsilon' must be a finite number",
        ),
        (
            RecordDict(
                {
                    "arrays": ArrayRecord(),
                    "metrics": MetricRecord({}),
                    "node": ConfigRecord({"partner-id": ""}),
                }
            ),
            "'partner-id' must be a non-empty string",
        ),
    ],
)
def test_a_malformed_train_reply_is_a_typed_error(content: RecordDict, reason: str) -> None:
    with pytest.raises(MalformedReplyError, match=reason):
        TrainReply.parse(content)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"count": 30, "sums": [3.0, math.nan], "sums-of-squares": [1.5, 2.5]}, "finite numbers"),
        ({"count": 30, "sums": [3.0], "sums-of-squares": [1.5, 2.5]}, "differ in length"),
        ({"count": -1, "sums": [3.0], "sums-of-squares": [1.5]}, "at least 0"),
        ({"count": 30, "sums": [3.0]}, "sums-of-squares"),
    ],
)
def test_a_malformed_moments_reply_names_the_reason(record: dict, reason: str) -> None:
    content = RecordDict({"moments": MetricRecord(record), "node": NODE.to_record()})
    with pytest.raises(MalformedReplyError, match=reason):
        MomentsReply.parse(content)


def test_a_malformed_histogram_or_refusal_is_a_typed_error() -> None:
    bad = RecordDict(
        {
            "metrics": MetricRecord(
                {
                    "num-examples": 5,
                    "brier": 0.1,
                    "noise-sigma": -1.0,
                }
            ),
            "node": NODE.to_record(),
        }
    )
    with pytest.raises(MalformedReplyError, match="non-negative"):
        EvaluationReply.parse(bad)
    with pytest.raises(MalformedReplyError, match="values, the layout has"):
        EvaluationLayout(100).split(np.zeros(7))
    with pytest.raises(MalformedReplyError, match="divide 1000"):
        EvaluationLayout(30)
    with pytest.raises(MalformedReplyError, match="'reason'"):
        refusal_of(RecordDict({"refusal": ConfigRecord({"partner-id": "p"})}))


def test_a_refusal_reason_is_bounded() -> None:
    assert len(Refusal("p", "x" * 5000).reason) == 500
