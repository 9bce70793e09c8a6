"""Every name that crosses between the coordinator and a node: message actions, record keys, fields.

One definition, imported by both sides (``tests/protocol/test_wire_keys.py`` pins every value: a
change here is a protocol change and must bump ``JOB_SPEC_VERSION``). Flower routes a message by
its type, ``"<kind>"`` or ``"<kind>.<action>"`` (``flwr.app.message_type``).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConfigKey",
    "EvaluationKey",
    "GroupsKey",
    "MomentsKey",
    "NodeKey",
    "QueryAction",
    "RecordKey",
    "RefusalKey",
    "RunConfigKey",
    "SpentKey",
    "TrainKey",
]


class QueryAction(StrEnum):
    """Actions of ``query`` messages (the message type is ``query.<action>``)."""

    DESCRIBE = "describe"  # partner id and data fingerprint, before any member data is read
    FEATURE_MOMENTS = "feature_moments"  # k-member feature moments for the pooled standardisation
    PRIVACY_SPENT = "privacy_spent"  # what the node's own accountant charged to one job
    GROUP_LABELS = "group_labels"  # the demographic group labels among the node's held-out members


class RecordKey(StrEnum):
    """Keys of the records inside a message's ``RecordDict``."""

    ARRAYS = "arrays"  # ArrayRecord: the model (request) or the node's updated model (reply)
    CONFIG = "config"  # ConfigRecord: the job spec and the round (request)
    METRICS = "metrics"  # MetricRecord: training or evaluation figures (reply)
    NODE = "node"  # ConfigRecord: who answered and on which data (reply)
    MOMENTS = "moments"  # MetricRecord: feature moments (reply)
    SPENT = "spent"  # ConfigRecord: the node's accountant's figures for one job (reply)
    REFUSAL = "refusal"  # ConfigRecord: the node refuses the job, with its reason (reply)
    HISTOGRAMS = "histograms"  # ArrayRecord: the node's score-histogram vector (evaluate reply)
    GROUPS = "groups"  # ConfigRecord: group labels and the rounded held-out count (reply)


class ConfigKey(StrEnum):
    """Keys of the request's ``config`` record."""

    JOB_SPEC = "job-spec"  # protocol.JobSpec as JSON (one versioned value, not ~30 loose keys)
    SERVER_ROUND = "server-round"  # added by Flower's strategies to every train/evaluate config
    EVALUATION_LAYOUT = "evaluation-layout"  # protocol.EvaluationLayout as JSON (evaluate requests)
    SECURE_SUM = "secure-sum"  # a SecAgg+ train message that sums evaluation histograms instead


class NodeKey(StrEnum):
    """Keys of the ``node`` record of a reply (identity, counts; aggregates only)."""

    PARTNER_ID = "partner-id"
    DATA_FINGERPRINT = "data-fingerprint"
    CONSENT_SNAPSHOT_HASH = "consent-snapshot-hash"
    MEMBERS_USED = "members-used"
    MEMBERS_EXCLUDED_BY_CONSENT = "members-excluded-by-consent"


class TrainKey(StrEnum):
    """Keys of the ``metrics`` record of a train reply."""

    NUM_EXAMPLES = "num-examples"  # Flower's weighting key (FedAvg weighted_by_key)
    EPSILON = "epsilon"
    DELTA = "delta"
    NOISE_MULTIPLIER = "noise-multiplier"
    SAMPLE_RATE = "sample-rate"
    STEPS = "steps"
    TRAIN_LOSS = "train-loss"
    CPU_SECONDS = "cpu-seconds"


class EvaluationKey(StrEnum):
    """Keys of the ``metrics`` record of an evaluate reply (aggregates over >= k members)."""

    NUM_EXAMPLES = "num-examples"
    BRIER = "brier"
    AUC = "auc"
    NOISE_SIGMA = "noise-sigma"  # the standard deviation of the DP noise the node added to each count
    VECTOR = "vector"  # the name of the one Array in the ``histograms`` record


class GroupsKey(StrEnum):
    """Keys of the ``groups`` record of a group-labels reply."""

    LABELS = "labels"  # "<attribute>=<group>" of every group among the node's held-out members
    HELDOUT_MEMBERS = "heldout-members"  # rounded to two significant figures


class MomentsKey(StrEnum):
    """Keys of the ``moments`` record of a feature-moments reply."""

    COUNT = "count"
    SUMS = "sums"
    SUMS_OF_SQUARES = "sums-of-squares"


class RefusalKey(StrEnum):
    """Keys of the ``refusal`` record."""

    PARTNER_ID = "partner-id"
    REASON = "reason"


class SpentKey(StrEnum):
    """Keys of the ``spent`` record of a privacy-spent reply."""

    PARTNER_ID = "partner-id"
    JOB_ID = "job-id"
    EPSILON = "epsilon"
    DELTA = "delta"
    STEPS = "steps"


class RunConfigKey(StrEnum):
    """Flower ``run_config`` keys of a deployment run, beside the job spec's own fields."""

    JOB_SPEC = "job-spec"  # the whole protocol.JobSpec as JSON (wins over loose field keys)
    EXPECTED_NODES = "expected-nodes"  # SuperNodes that must connect before round 1
    OUT_DIR = "out-dir"  # the model folder to publish into (coordinator's disk); may be empty
    LEDGER_URL = "ledger-url"  # the budget ledger's SQLAlchemy URL; empty: no ledger
    MEMBERS_MAY_OVERLAP = "members-may-overlap"  # a member may sit at several nodes (cross-brand)
    COORDINATOR_URL = "coordinator-url"  # the coordinator service that receives progress
    JOB_TOKEN = "job-token"  # the job-run token minted by the coordinator for this run
    COORDINATOR_CA = "coordinator-ca"  # path of the coordinator's CA certificate
    CHECKPOINT_DIR = "checkpoint-dir"  # the job's round checkpoints (coordinator's disk); may be empty
