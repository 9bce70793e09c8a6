"""The typed replies a node sends, written and parsed by one module on both sides.

Each reply type builds the Flower records it travels in (``to_content``) and parses them back
(``parse``); a reply of the wrong shape raises ``MalformedReplyError`` naming the record and key,
which the coordinator counts as a failed node rather than crashing the job. Only aggregates leave a
node (counts over ≥ k members, DP outputs, fingerprints); a refusal's reason is the node's own
safe text, never an exception's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from flwr.app import ConfigRecord, MetricRecord, RecordDict

from protocol.errors import MalformedReplyError
from protocol.wire_keys import (
    MomentsKey,
    NodeKey,
    RecordKey,
    RefusalKey,
    SpentKey,
    TrainKey,
)

__all__ = [
    "MomentsReply",
    "NodeRecord",
    "PrivacySpentReply",
    "Refusal",
    "TrainReply",
    "refusal_of",
]

_REASON_MAX = 500


def _value(record: Mapping[str, Any], name: str, key: str) -> Any:
    if key not in record:
        raise MalformedReplyError(f"reply record '{name}' has no '{key}'")
    return record[key]


def _record(content: RecordDict, name: str) -> Mapping[str, Any]:
    if name not in content:
        raise MalformedReplyError(f"reply has no '{name}' record")
    record: Mapping[str, Any] = content[name]
    return record


def _str(record: Mapping[str, Any], name: str, key: str) -> str:
    value = _value(record, name, key)
    if not isinstance(value, str) or not value:
        raise MalformedReplyError(f"reply record '{name}': '{key}' must be a non-empty string")
    return value


def _number(record: Mapping[str, Any], name: str, key: str, *, minimum: float = -math.inf) -> float:
    value = _value(record, name, key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MalformedReplyError(f"reply record '{name}': '{key}' must be a finite number")
    if value < minimum:
        raise MalformedReplyError(f"reply record '{name}': '{key}' must be at least {minimum}")
    return float(value)


def _count(record: Mapping[str, Any], name: str, key: str) -> int:
    value = _number(record, name, key, minimum=0)
    if value != int(value):
        raise MalformedReplyError(f"reply record '{name}': '{key}' must be a whole number")
    return int(value)


def _numbers(record: Mapping[str, Any], name: str, key: str) -> tuple[float, ...]:
    value = _value(record, name, key)
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise MalformedReplyError(f"reply record '{name}': '{key}' must be a list of finite numbers")
    return tuple(float(v) for v in value)


def _counts(record: Mapping[str, Any], name: str, key: str) -> tuple[int, ...]:
    values = _numbers(record, name, key)
    if any(v < 0 or v != int(v) for v in values):
        raise MalformedReplyError(f"reply record '{name}': '{key}' must be counts")
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class NodeRecord:
    """Who answered and on which data: identity, fingerprints and member counts."""

    partner_id: str
    data_fingerprint: str
    consent_snapshot_hash: str = ""
    members_used: int = 0
    members_excluded_by_consent: int = 0

    def to_record(self) -> ConfigRecord:
        return ConfigRecord(
            {
                NodeKey.PARTNER_ID: self.partner_id,
                NodeKey.DATA_FINGERPRINT: self.data_fingerprint,
                NodeKey.CONSENT_SNAPSHOT_HASH: self.consent_snapshot_hash,
                NodeKey.MEMBERS_USED: self.members_used,
                NodeKey.MEMBERS_EXCLUDED_BY_CONSENT: self.members_excluded_by_consent,
            }
        )

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        record, name = _record(content, RecordKey.NODE), RecordKey.NODE
        return cls(
            partner_id=_str(record, name, NodeKey.PARTNER_ID),
            data_fingerprint=_str(record, name, NodeKey.DATA_FINGERPRINT),
            consent_snapshot_hash=str(record.get(NodeKey.CONSENT_SNAPSHOT_HASH, "")),
            members_used=_count(record, name, NodeKey.MEMBERS_USED) if NodeKey.MEMBERS_USED in record else 0,
            members_excluded_by_consent=(
                _count(record, name, NodeKey.MEMBERS_EXCLUDED_BY_CONSENT)
                if NodeKey.MEMBERS_EXCLUDED_BY_CONSENT in record
                else 0
            ),
        )


@dataclass(frozen=True)
class TrainReply:
    """A train reply's figures (its weights travel beside them in ``RecordKey.ARRAYS``)."""

    node: NodeRecord
    num_examples: int
    epsilon: float  # the job's ε at this node after this round, from the node's own accountant
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int  # the job's DP-SGD steps at this node so far
    train_loss: float
    cpu_seconds: float = 0.0

    def metrics(self) -> MetricRecord:
        return MetricRecord(
            {
                TrainKey.NUM_EXAMPLES: self.num_examples,
                TrainKey.EPSILON: self.epsilon,
                TrainKey.DELTA: self.delta,
                TrainKey.NOISE_MULTIPLIER: self.noise_multiplier,
                TrainKey.SAMPLE_RATE: self.sample_rate,
                TrainKey.STEPS: self.steps,
                TrainKey.TRAIN_LOSS: self.train_loss,
                TrainKey.CPU_SECONDS: self.cpu_seconds,
            }
        )

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        if RecordKey.ARRAYS not in content:
            raise MalformedReplyError(f"reply has no '{RecordKey.ARRAYS}' record")
        m, name = _record(content, RecordKey.METRICS), RecordKey.METRICS
        return cls(
            node=NodeRecord.parse(content),
            num_examples=_count(m, name, TrainKey.NUM_EXAMPLES),
            epsilon=_number(m, name, TrainKey.EPSILON, minimum=0.0),
            delta=_number(m, name, TrainKey.DELTA, minimum=0.0),
            noise_multiplier=_number(m, name, TrainKey.NOISE_MULTIPLIER, minimum=0.0),
            sample_rate=_number(m, name, TrainKey.SAMPLE_RATE, minimum=0.0),
            steps=_count(m, name, TrainKey.STEPS),
            train_loss=float(_value(m, name, TrainKey.TRAIN_LOSS)),
            cpu_seconds=float(m.get(TrainKey.CPU_SECONDS, 0.0)),
        )


@dataclass(frozen=True)
class MomentsReply:
    """Count, sums and sums of squares of a node's training members' publicly scaled features."""

    node: NodeRecord
    count: int
    sums: tuple[float, ...]
    sums_of_squares: tuple[float, ...]

    def to_content(self) -> RecordDict:
        moments = MetricRecord(
            {
                MomentsKey.COUNT: self.count,
                MomentsKey.SUMS: list(self.sums),
                MomentsKey.SUMS_OF_SQUARES: list(self.sums_of_squares),
            }
        )
        return RecordDict({RecordKey.MOMENTS: moments, RecordKey.NODE: self.node.to_record()})

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        return cls(node=NodeRecord.parse(content), **moments_fields(_record(content, RecordKey.MOMENTS)))


def moments_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """count, sums and sums_of_squares of a ``moments`` record, checked (MalformedReplyError)."""
    name = RecordKey.MOMENTS
    sums = _numbers(record, name, MomentsKey.SUMS)
    squares = _numbers(record, name, MomentsKey.SUMS_OF_SQUARES)
    if len(sums) != len(squares):
        raise MalformedReplyError(f"reply record '{name}': sums and sums-of-squares differ in length")
    return {"count": _count(record, name, MomentsKey.COUNT), "sums": sums, "sums_of_squares": squares}


@dataclass(frozen=True)
class Refusal:
    """A node refuses a job: its partner id and its reason (its own safe text, at most 500 chars)."""

    partner_id: str
    reason: str

    def __post_init__(self) -> None:
        if not self.partner_id or not self.reason:
            raise MalformedReplyError("a refusal needs a partner id and a reason")
        object.__setattr__(self, "reason", self.reason[:_REASON_MAX])

    def to_content(self) -> RecordDict:
        record = ConfigRecord({RefusalKey.PARTNER_ID: self.partner_id, RefusalKey.REASON: self.reason})
        return RecordDict({RecordKey.REFUSAL: record})

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        record, name = _record(content, RecordKey.REFUSAL), RecordKey.REFUSAL
        return cls(
            partner_id=_str(record, name, RefusalKey.PARTNER_ID), reason=_str(record, name, RefusalKey.REASON)
        )

    def __str__(self) -> str:
        return f"refused by node {self.partner_id}: {self.reason}"


def refusal_of(content: RecordDict) -> Refusal | None:
    """The refusal a reply carries, or None for any other reply."""
    return Refusal.parse(content) if RecordKey.REFUSAL in content else None


@dataclass(frozen=True)
class PrivacySpentReply:
    """What a node's own accountant has charged to one job: the authority the ledger settles from."""

    partner_id: str
    job_id: str
    epsilon: float
    delta: float
    steps: int

    def to_content(self) -> RecordDict:
        record = ConfigRecord(
            {
                SpentKey.PARTNER_ID: self.partner_id,
                SpentKey.JOB_ID: self.job_id,
                SpentKey.EPSILON: self.epsilon,
                SpentKey.DELTA: self.delta,
                SpentKey.STEPS: self.steps,
            }
        )
        return RecordDict({RecordKey.SPENT: record})

    @classmethod
    def parse(cls, content: RecordDict) -> Self:
        record, name = _record(content, RecordKey.SPENT), RecordKey.SPENT
        return cls(
            partner_id=_str(record, name, SpentKey.PARTNER_ID),
            job_id=_str(record, name, SpentKey.JOB_ID),
            epsilon=_number(record, name, SpentKey.EPSILON, minimum=0.0),
            delta=_number(record, name, SpentKey.DELTA, minimum=0.0),
            steps=_count(record, name, SpentKey.STEPS),
        )
