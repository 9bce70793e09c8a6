"""Every name that crosses the wire, pinned: changing one is a protocol change (bump the version)."""

from __future__ import annotations

from protocol import JOB_SPEC_VERSION, JobSpec
from protocol.wire_keys import (
    ConfigKey,
    EvaluationKey,
    GroupsKey,
    MomentsKey,
    NodeKey,
    QueryAction,
    RecordKey,
    RefusalKey,
    RunConfigKey,
    SpentKey,
    TrainKey,
)

PINNED = {
    QueryAction: {
        "DESCRIBE": "describe",
        "FEATURE_MOMENTS": "feature_moments",
        "PRIVACY_SPENT": "privacy_spent",
        "GROUP_LABELS": "group_labels",
    },
    RecordKey: {
        "ARRAYS": "arrays",
        "CONFIG": "config",
        "METRICS": "metrics",
        "NODE": "node",
        "MOMENTS": "moments",
        "SPENT": "spent",
        "REFUSAL": "refusal",
        "HISTOGRAMS": "histograms",
        "GROUPS": "groups",
    },
    ConfigKey: {
        "JOB_SPEC": "job-spec",
        "SERVER_ROUND": "server-round",
        "EVALUATION_LAYOUT": "evaluation-layout",
        "SECURE_SUM": "secure-sum",
    },
    NodeKey: {
        "PARTNER_ID": "partner-id",
        "DATA_FINGERPRINT": "data-fingerprint",
        "CONSENT_SNAPSHOT_HASH": "consent-snapshot-hash",
        "MEMBERS_USED": "members-used",
        "MEMBERS_EXCLUDED_BY_CONSENT": "members-excluded-by-consent",
    },
    TrainKey: {
        "NUM_EXAMPLES": "num-examples",
        "EPSILON": "epsilon",
        "DELTA": "delta",
        "NOISE_MULTIPLIER": "noise-multiplier",
        "SAMPLE_RATE": "sample-rate",
        "STEPS": "steps",
        "TRAIN_LOSS": "train-loss",
        "CPU_SECONDS": "cpu-seconds",
    },
    EvaluationKey: {
        "NUM_EXAMPLES": "num-examples",
        "BRIER": "brier",
        "AUC": "auc",
        "NOISE_SIGMA": "noise-sigma",
        "VECTOR": "vector",
    },
    GroupsKey: {"LABELS": "labels", "HELDOUT_MEMBERS": "heldout-members"},
    MomentsKey: {"COUNT": "count", "SUMS": "sums", "SUMS_OF_SQUARES": "sums-of-squares"},
    RefusalKey: {"PARTNER_ID": "partner-id", "REASON": "reason"},
    SpentKey: {
        "PARTNER_ID": "partner-id",
        "JOB_ID": "job-id",
        "EPSILON": "epsilon",
        "DELTA": "delta",
        "STEPS": "steps",
    },
    RunConfigKey: {
        "JOB_SPEC": "job-spec",
        "EXPECTED_NODES": "expected-nodes",
        "OUT_DIR": "out-dir",
        "LEDGER_URL": "ledger-url",
        "MEMBERS_MAY_OVERLAP": "members-may-overlap",
        "COORDINATOR_URL": "coordinator-url",
        "JOB_TOKEN": "job-token",
        "COORDINATOR_CA": "coordinator-ca",
        "CHECKPOINT_DIR": "checkpoint-dir",
    },
}

# The job spec's JSON fields (version 2), in order. secure_evaluation was added to version 2 with a
# default (False): every stored or sent version-2 spec without it still parses the same.
SPEC_FIELDS = [
    "spec_version", "job_id", "task", "model", "epsilon", "delta", "rounds", "local_steps", "batch_size",
    "learning_rate", "max_grad_norm", "schedule_by_rule", "strategy", "proximal_mu", "server_momentum",
    "average_last", "min_nodes", "round_timeout_s", "eval_every", "patience", "as_of", "horizon_days",
    "k_min",
    "category_mix", "standardise", "feature_mean", "feature_scale", "secure_agg", "secure_evaluation",
    "evaluation_epsilon",
    "seed", "policy_id", "policy_version", "policy_hash", "signed_decisions",
]  # fmt: skip


def test_every_key_is_pinned() -> None:
    for enum, expected in PINNED.items():
        assert {member.name: member.value for member in enum} == expected, enum.__name__


def test_the_job_spec_fields_and_version_are_pinned() -> None:
    assert JOB_SPEC_VERSION == 2
    assert list(JobSpec.model_fields) == SPEC_FIELDS
