"""What a job produced, filled in as it runs: per-node reports, per-round reports, the model."""

from __future__ import annotations

from dataclasses import dataclass, field

from flwr.app import ArrayRecord

from coordinator.federated_evaluation import EvaluationSummary
from protocol import JobSpec, PrivacySpentReply, TrainReply

__all__ = ["JobOutcome", "NodeReport", "RoundReport"]


@dataclass(frozen=True)
class NodeReport:
    """What one node reported about itself in its last training reply (counts and accounting only)."""

    partner_id: str
    data_fingerprint: str
    consent_snapshot_hash: str
    members_used: int
    members_excluded_by_consent: int
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int

    @classmethod
    def of(cls, reply: TrainReply) -> NodeReport:
        node = reply.node
        return cls(
            partner_id=node.partner_id,
            data_fingerprint=node.data_fingerprint,
            consent_snapshot_hash=node.consent_snapshot_hash,
            members_used=node.members_used,
            members_excluded_by_consent=node.members_excluded_by_consent,
            epsilon=reply.epsilon,
            delta=reply.delta,
            noise_multiplier=reply.noise_multiplier,
            sample_rate=reply.sample_rate,
            steps=reply.steps,
        )


@dataclass(frozen=True)
class RoundReport:
    """One finished round, as the progress sink receives it."""

    job_id: str
    server_round: int
    nodes_ok: int  # nodes whose update was aggregated
    nodes_failed: int  # nodes sampled whose update was not (error, malformed, lost or late)
    seconds: float
    train_loss: float  # pooled, weighted by training members
    max_epsilon: float  # the largest ε any node reports spent on the job so far
    node_cpu_seconds: float = 0.0
    validation_auc: float | None = None  # pooled from k-member histograms, on evaluation rounds


@dataclass
class JobOutcome:
    """Filled in by the job runner as the job runs; read by whoever launched it."""

    job: JobSpec
    arrays: ArrayRecord | None = None
    rounds: list[RoundReport] = field(default_factory=list)
    nodes: dict[str, NodeReport] = field(default_factory=dict)
    evaluation: EvaluationSummary | None = None
    stopped_early: bool = False
    # What each node's own accountant says the job spent (the ledger settles from it).
    spent: dict[str, PrivacySpentReply] = field(default_factory=dict)
