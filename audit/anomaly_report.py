"""Anomaly signals over the audit log, for ``loyalfed audit report``.

Three signals, each cheap and explainable (an auditor must be able to check it by hand):

- **unusual access rate** — an actor whose events in one time bucket exceed ``factor`` × its median
  bucket (and an absolute floor), a robust baseline in the spirit of median/MAD outlier rules;
- **out-of-policy job** — a job event naming a partner or data category the drafted policy (found by
  its hash) does not list, a job with no policy, or a job started before every involved partner's
  data officer approved;
- **orphan budget charge** — ε charged with no job id, or for a job the log never saw start.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from audit.lineage_event import EventType, LineageEvent

__all__ = ["Anomaly", "AnomalyKind", "AnomalyThresholds", "find_anomalies"]

Entry = tuple[int, LineageEvent]


class AnomalyKind(StrEnum):
    UNUSUAL_ACCESS_RATE = "unusual_access_rate"
    OUT_OF_POLICY = "out_of_policy"
    UNAPPROVED_JOB = "unapproved_job"
    ORPHAN_BUDGET_CHARGE = "orphan_budget_charge"


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    seq: int
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind.value, "seq": self.seq, "message": self.message}


class AnomalyThresholds(BaseModel):
    """Tuning for the access-rate signal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: timedelta = timedelta(days=1)
    factor: float = Field(default=5.0, gt=1.0)
    min_events: int = Field(default=20, ge=1)
    min_buckets: int = Field(default=3, ge=2)


def find_anomalies(entries: Iterable[Entry], thresholds: AnomalyThresholds | None = None) -> list[Anomaly]:
    """All anomalies in log order."""
    entries = list(entries)
    found = [
        *_access_rate(entries, thresholds or AnomalyThresholds()),
        *_out_of_policy(entries),
        *_orphan_charges(entries),
    ]
    return sorted(found, key=lambda a: (a.seq, a.kind.value))


def _access_rate(entries: list[Entry], thresholds: AnomalyThresholds) -> list[Anomaly]:
    seconds = thresholds.bucket.total_seconds()
    buckets: dict[str, Counter[int]] = defaultdict(Counter)
    first_seq: dict[tuple[str, int], int] = {}
    for seq, event in entries:
        bucket = int(event.time.timestamp() // seconds)
        buckets[event.actor][bucket] += 1
        first_seq.setdefault((event.actor, bucket), seq)
    found = []
    for actor, counts in buckets.items():
        if len(counts) < thresholds.min_buckets:
            continue
        baseline = statistics.median(counts.values())
        for bucket, count in sorted(counts.items()):
            if count >= thresholds.min_events and count > thresholds.factor * baseline:
                message = (
                    f"actor {actor!r}: {count} events in one {thresholds.bucket} window, usual {baseline:g}"
                )
                found.append(Anomaly(AnomalyKind.UNUSUAL_ACCESS_RATE, first_seq[(actor, bucket)], message))
    return found


def _out_of_policy(entries: list[Entry]) -> list[Anomaly]:
    drafted = {
        e.policy_hash: e for _, e in entries if e.event_type == EventType.POLICY_DRAFTED and e.policy_hash
    }
    approvals: dict[str, set[str]] = defaultdict(set)
    job_policy: dict[str | None, str] = {}
    found, seen = [], set()
    for seq, event in entries:
        if event.event_type == EventType.POLICY_APPROVED and event.policy_hash and event.partner:
            approvals[event.policy_hash].add(event.partner)
        if not event.event_type.value.startswith("job.") or event.event_type == EventType.JOB_REFUSED:
            continue
        # Later events of a job (rounds, finish) run under the policy its earlier events named.
        policy_hash = job_policy.setdefault(event.job_id, event.policy_hash) if event.policy_hash else None
        policy_hash = policy_hash or job_policy.get(event.job_id)
        for anomaly in _job_problems(seq, event, policy_hash, drafted, approvals):
            # Once per job and problem: every round of a job repeats the same finding.
            if (anomaly.kind, anomaly.message) not in seen:
                seen.add((anomaly.kind, anomaly.message))
                found.append(anomaly)
    return found


def _job_problems(
    seq: int,
    event: LineageEvent,
    policy_hash: str | None,
    drafted: dict[str, LineageEvent],
    approvals: dict[str, set[str]],
) -> list[Anomaly]:
    job = event.job_id or "?"
    if policy_hash is None:
        return [Anomaly(AnomalyKind.OUT_OF_POLICY, seq, f"job {job}: its events carry no policy hash")]
    policy = drafted.get(policy_hash)
    if policy is None:
        return [
            Anomaly(AnomalyKind.OUT_OF_POLICY, seq, f"job {job}: no drafted policy matches its policy hash")
        ]
    found = []
    partners = event.partner_names()
    if policy.partners and (extra := sorted(partners - set(policy.partners))):
        found.append(
            Anomaly(AnomalyKind.OUT_OF_POLICY, seq, f"job {job}: partners {extra} not in its policy")
        )
    if policy.categories and (cats := sorted(set(event.categories) - set(policy.categories))):
        found.append(
            Anomaly(AnomalyKind.OUT_OF_POLICY, seq, f"job {job}: data categories {cats} not in its policy")
        )
    if event.event_type == EventType.JOB_STARTED:
        missing = sorted(partners - approvals[policy_hash])
        if missing:
            found.append(
                Anomaly(AnomalyKind.UNAPPROVED_JOB, seq, f"job {job}: started without approval by {missing}")
            )
    return found


def _orphan_charges(entries: list[Entry]) -> list[Anomaly]:
    started: set[str] = set()
    found = []
    for seq, event in entries:
        if event.event_type == EventType.JOB_STARTED and event.job_id:
            started.add(event.job_id)
        elif event.event_type == EventType.BUDGET_CHARGED and event.job_id not in started:
            what = f"job {event.job_id} never started" if event.job_id else "no job id"
            found.append(Anomaly(AnomalyKind.ORPHAN_BUDGET_CHARGE, seq, f"ε {event.epsilon} charged: {what}"))
    return found
