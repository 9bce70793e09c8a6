"""Held-out evaluation as one vector per node that the federation sums: layout, replies, noise.

Every node counts its held-out members on the same public grid (``models.score_histogram_metrics``):
one block for all members, then one block per demographic group of the layout, each block being a
``ScoreHistogramTotal`` vector. Because every node's vector has the same layout, the coordinator
can learn their element-wise SUM without any node's vector: under SecAgg+ the vectors travel masked
(``coordinator.secure_server_app.SecureEvaluation``). Without secure aggregation each node's vector
is seen alone, so the node releases it only under differential privacy (``release_noise``).

The overall block uses the layout's bins; a group's block at most `GROUP_BINS` (gaps between groups
need not be exact to 10^-4, and the groups multiply the vector's length).

The layout is public: the bin count, the groups (the union of the group labels the nodes hold,
``GroupLabelsReply``) and nothing else. The noise a node adds is decided by the node from the job
spec alone, never from the coordinator's word.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from models.score_histogram_metrics import CALIBRATION_BINS, FINE_BINS, ScoreHistogramTotal
from protocol.errors import MalformedReplyError
from protocol.job_spec import JobSpec
from protocol.replies import NodeRecord
from protocol.wire_keys import EvaluationKey, GroupsKey, RecordKey

__all__ = [
    "GROUP_BINS",
    "EvaluationLayout",
    "EvaluationReply",
    "GroupLabelsReply",
    "ReleaseNoise",
    "release_epsilon",
    "release_noise",
]

_BLOCK_SCALARS = 3
GROUP_BINS = 1000


@dataclass(frozen=True)
class EvaluationLayout:
    """The public layout of every node's evaluation vector: bins, then the groups' blocks in order."""

    bins: int = FINE_BINS
    groups: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.bins < CALIBRATION_BINS or FINE_BINS % self.bins or self.bins % CALIBRATION_BINS:
            raise MalformedReplyError(
                f"evaluation layout: {self.bins} bins must divide {FINE_BINS} and be a multiple of 10"
            )
        if len(set(self.groups)) != len(self.groups) or any(not a or not g for a, g in self.groups):
            raise MalformedReplyError("evaluation layout: groups must be distinct (attribute, group) pairs")

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(sorted({a for a, _ in self.groups}))

    @property
    def group_bins(self) -> int:
        return min(self.bins, GROUP_BINS)

    @property
    def block(self) -> int:
        return 3 * self.bins + _BLOCK_SCALARS

    @property
    def group_block(self) -> int:
        return 3 * self.group_bins + _BLOCK_SCALARS

    @property
    def length(self) -> int:
        return self.block + self.group_block * len(self.groups)

    def to_wire(self) -> str:
        return json.dumps({"bins": self.bins, "groups": [list(g) for g in self.groups]})

    @classmethod
    def from_wire(cls, text: object) -> EvaluationLayout:
        try:
            data = json.loads(str(text))
            return cls(int(data["bins"]), tuple((str(a), str(g)) for a, g in data["groups"]))
        except (ValueError, KeyError, TypeError) as err:
            raise MalformedReplyError(
                f"evaluation layout: not a valid layout ({type(err).__name__})"
            ) from err

    def vector(self, labels: np.ndarray, scores: np.ndarray, groups: Mapping[str, np.ndarray]) -> np.ndarray:
        """A node's vector: its held-out members' histogram, then each group's (zeros if absent)."""
        parts = [ScoreHistogramTotal.of(labels, scores, n_bins=self.bins).to_vector()]
        for attribute, group in self.groups:
            member = np.asarray(groups.get(attribute, np.array([], dtype=object))) == group
            if len(member) != len(labels):
                member = np.zeros(len(labels), dtype=bool)
            group_total = ScoreHistogramTotal.of(labels[member], scores[member], n_bins=self.group_bins)
            parts.append(group_total.to_vector())
        return np.concatenate(parts)

    def split(
        self, vector: np.ndarray
    ) -> tuple[ScoreHistogramTotal, dict[tuple[str, str], ScoreHistogramTotal]]:
        """The overall total and each group's, from a vector (one node's or a sum of them)."""
        values = np.asarray(vector, dtype=np.float64).ravel()
        if len(values) != self.length:
            raise MalformedReplyError(
                f"evaluation vector: {len(values)} values, the layout has {self.length}"
            )
        overall = ScoreHistogramTotal.from_vector(values[: self.block])
        groups = [
            ScoreHistogramTotal.from_vector(values[i : i + self.group_block])
            for i in range(self.block, self.length, self.group_block)
        ]
        return overall, dict(zip(self.groups, groups, strict=True))


@dataclass(frozen=True)
class ReleaseNoise:
    """The Gaussian noise one node adds to each count of its vector, and what it costs.

    ``noise_multiplier`` is σ over the L2 sensitivity of one release (a member moves one count by
    one in the overall block and in one group block per attribute); ``releases`` evaluations of
    the job compose in the node's RDP accountant (``participant_node.training.privacy_accountant``).
    """

    sigma: float
    noise_multiplier: float
    sensitivity: float
    epsilon: float

    @property
    def is_noisy(self) -> bool:
        return self.sigma > 0


def release_epsilon(spec: JobSpec, *, secure: bool) -> float:
    """ε of the held-out histograms: the spec's ``evaluation_epsilon``, or by default the job's ε
    when a node's vector is seen alone and none (an exact total) under secure aggregation."""
    if spec.evaluation_epsilon > 0:
        return spec.evaluation_epsilon
    return 0.0 if secure else spec.epsilon


def release_noise(
    spec: JobSpec, layout: EvaluationLayout, *, secure: bool, noise_multiplier: float
) -> ReleaseNoise:
    """The noise of one node's release, given the accountant's ``noise_multiplier`` for the job's
    evaluations at ``release_epsilon`` (0 for an exact release).

    Under secure aggregation each of at least ``spec.min_nodes`` nodes adds variance σ² / K so the
    sum carries σ² (distributed noise; Kairouz, Liu & Steinke, ICML 2021, §1): the node trusts only
    the spec's ``min_nodes`` for K, never the coordinator's count of connected nodes.
    """
    sensitivity = math.sqrt(1 + len(layout.attributes))
    sigma = noise_multiplier * sensitivity
    if secure:
        sigma /= math.sqrt(max(spec.min_nodes, 1))
    return ReleaseNoise(sigma, noise_multiplier, sensitivity, release_epsilon(spec, secure=secure))


@dataclass(frozen=True)
class EvaluationReply:
    """A node's evaluation: clear aggregates over ≥ k held-out members and its (noisy) vector.

    ``vector`` is empty when the vector travelled masked under secure aggregation instead.
    """

    node: NodeRecord
    num_examples: int
    brier: float
    auc: float | None
    noise_sigma: float
    vector: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def metrics(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            EvaluationKey.NUM_EXAMPLES: self.num_examples,
            EvaluationKey.BRIER: self.brier,
            EvaluationKey.NOISE_SIGMA: self.noise_sigma,
        }
        if self.auc is not None:
            out[EvaluationKey.AUC] = self.auc
        return out

    def to_content(self) -> RecordDict:
        histograms = ArrayRecord({EvaluationKey.VECTOR: Array(np.asarray(self.vector, dtype=np.float64))})
        return RecordDict(
            {
                RecordKey.METRICS: MetricRecord(self.metrics()),  # type: ignore[arg-type]
                RecordKey.NODE: self.node.to_record(),
                RecordKey.HISTOGRAMS: histograms,
            }
        )

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        if RecordKey.METRICS not in content:
            raise MalformedReplyError(f"reply has no '{RecordKey.METRICS}' record")
        vector = np.zeros(0)
        if RecordKey.HISTOGRAMS in content.array_records:
            arrays = content.array_records[RecordKey.HISTOGRAMS]
            if EvaluationKey.VECTOR not in arrays:
                raise MalformedReplyError(
                    f"reply record '{RecordKey.HISTOGRAMS}' has no '{EvaluationKey.VECTOR}'"
                )
            vector = arrays[EvaluationKey.VECTOR].numpy().astype(np.float64).ravel()
        return cls.of_metrics(NodeRecord.parse(content), content[RecordKey.METRICS], vector)

    @classmethod
    def of_metrics(cls, node: NodeRecord, metrics: Mapping[str, Any], vector: np.ndarray) -> Self:
        """A reply from its clear metrics (a plain reply's record, or a SecAgg+ FitRes's metrics)."""
        count, brier, sigma = (
            metrics.get(k)
            for k in (EvaluationKey.NUM_EXAMPLES, EvaluationKey.BRIER, EvaluationKey.NOISE_SIGMA)
        )
        numbers = (count, brier, sigma)
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in numbers
        ):
            raise MalformedReplyError(
                "evaluation reply: num-examples, brier and noise-sigma must be non-negative numbers"
            )
        if not np.all(np.isfinite(vector)):
            raise MalformedReplyError("evaluation reply: the vector must hold finite numbers")
        auc = metrics.get(EvaluationKey.AUC)
        return cls(
            node=node,
            num_examples=int(count),  # type: ignore[arg-type]
            brier=float(brier),  # type: ignore[arg-type]
            # A node's exact AUC is kept only when it is a number in [0, 1].
            auc=float(auc) if isinstance(auc, int | float) and 0.0 <= float(auc) <= 1.0 else None,
            noise_sigma=float(sigma),  # type: ignore[arg-type]
            vector=vector,
        )


@dataclass(frozen=True)
class GroupLabelsReply:
    """The demographic group labels a node's held-out members carry, and its rounded held-out count.

    Labels are schema-level facts (the values a column takes), like the column names a node
    registers; no count per label leaves the node.
    """

    node: NodeRecord
    labels: tuple[tuple[str, str], ...]
    heldout_members: int

    def to_content(self) -> RecordDict:
        record = ConfigRecord(
            {
                GroupsKey.LABELS: [f"{a}={g}" for a, g in self.labels],
                GroupsKey.HELDOUT_MEMBERS: self.heldout_members,
            }
        )
        return RecordDict({RecordKey.GROUPS: record, RecordKey.NODE: self.node.to_record()})

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        if RecordKey.GROUPS not in content:
            raise MalformedReplyError(f"reply has no '{RecordKey.GROUPS}' record")
        record = content[RecordKey.GROUPS]
        raw, count = record.get(GroupsKey.LABELS, []), record.get(GroupsKey.HELDOUT_MEMBERS)
        if not isinstance(raw, list) or not all(isinstance(x, str) and "=" in x for x in raw):
            raise MalformedReplyError(
                f"reply record '{RecordKey.GROUPS}': labels must be 'attribute=group' strings"
            )
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise MalformedReplyError(f"reply record '{RecordKey.GROUPS}': heldout-members must be a count")
        labels = tuple(tuple(str(x).split("=", 1)) for x in raw)
        return cls(NodeRecord.parse(content), labels, count)  # type: ignore[arg-type]
