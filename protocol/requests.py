"""What the coordinator sends: message types, and the config record carrying the job spec."""

from __future__ import annotations

from flwr.app import ConfigRecord, RecordDict
from flwr.app.message_type import MessageType

from protocol.errors import JobSpecError
from protocol.job_spec import JobSpec
from protocol.wire_keys import ConfigKey, QueryAction, RecordKey

__all__ = ["job_config_record", "query_type", "server_round_of", "spec_of"]


def query_type(action: QueryAction) -> str:
    """The Flower message type of a query with ``action`` (``query.<action>``)."""
    return f"{MessageType.QUERY}.{action}"


def job_config_record(spec: JobSpec) -> ConfigRecord:
    """The ``config`` record of a request: the job spec as one JSON value."""
    return ConfigRecord({str(ConfigKey.JOB_SPEC): spec.to_wire()})


def spec_of(content: RecordDict) -> JobSpec:
    """The job spec a request carries; ``JobSpecError`` when it is missing or invalid."""
    if RecordKey.CONFIG not in content:
        raise JobSpecError("invalid job spec: the request has no config record")
    config = content[RecordKey.CONFIG]
    if ConfigKey.JOB_SPEC not in config:
        raise JobSpecError(f"invalid job spec: the config record has no '{ConfigKey.JOB_SPEC}'")
    return JobSpec.from_wire(config[ConfigKey.JOB_SPEC])


def server_round_of(content: RecordDict) -> int:
    """The round a train/evaluate request belongs to (0 when the strategy sent none)."""
    if RecordKey.CONFIG not in content:
        return 0
    value = content[RecordKey.CONFIG].get(ConfigKey.SERVER_ROUND, 0)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0
