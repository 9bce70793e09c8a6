"""The job protocol between the coordinator and the nodes: one typed, versioned definition.

Both sides import it (the coordinator and the node never import each other): the job spec, every
message action and record key, the typed replies (including a node's refusal), and the model card.
"""

from protocol.errors import JobSpecError, MalformedReplyError, ModelCardError, ProtocolError
from protocol.evaluation_sum import (
    EvaluationLayout,
    EvaluationReply,
    GroupLabelsReply,
    ReleaseNoise,
    release_epsilon,
    release_noise,
)
from protocol.job_spec import JOB_SPEC_VERSION, JobSpec, SignedDecisionRecord, StrategyName, parse_job_spec
from protocol.model_card import CARD_VERSION, ModelCard, read_model_card, write_model_card
from protocol.replies import (
    MomentsReply,
    NodeRecord,
    PrivacySpentReply,
    Refusal,
    TrainReply,
    refusal_of,
)
from protocol.requests import job_config_record, query_type, server_round_of, spec_of
from protocol.wire_keys import ConfigKey, QueryAction, RecordKey, RunConfigKey

__all__ = [
    "CARD_VERSION",
    "JOB_SPEC_VERSION",
    "ConfigKey",
    "EvaluationLayout",
    "EvaluationReply",
    "GroupLabelsReply",
    "JobSpec",
    "JobSpecError",
    "MalformedReplyError",
    "ModelCard",
    "ModelCardError",
    "MomentsReply",
    "NodeRecord",
    "PrivacySpentReply",
    "ProtocolError",
    "QueryAction",
    "RecordKey",
    "Refusal",
    "ReleaseNoise",
    "RunConfigKey",
    "SignedDecisionRecord",
    "StrategyName",
    "TrainReply",
    "job_config_record",
    "parse_job_spec",
    "query_type",
    "read_model_card",
    "refusal_of",
    "release_epsilon",
    "release_noise",
    "server_round_of",
    "spec_of",
    "write_model_card",
]
