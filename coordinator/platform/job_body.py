"""The body of ``POST /jobs``: the job engine's ``protocol.JobSpec``, read in one place.

The coordinator fills what only it may set — the job id, the policy hash and the signed decisions
on it — and refuses a job that names no policy or that the policy does not cover.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from coordinator.platform.errors import InvalidRequestError
from policies.policy import DataUsePolicy
from protocol import JobSpec

__all__ = ["COORDINATOR_FIELDS", "JobSpec", "check_against_policy", "parse_job_body"]

# Fields a submitter may not choose: the coordinator sets them when the job runs.
COORDINATOR_FIELDS = frozenset({"job_id", "signed_decisions"})


def parse_job_body(data: Any) -> JobSpec:
    """Validate a submitted job; the error names fields and rules, never submitted values."""
    if not isinstance(data, dict):
        raise InvalidRequestError("a job is a JSON object (protocol.JobSpec)")
    if not data.get("policy_id"):
        raise InvalidRequestError("a job names the policy_id it runs under")
    chosen = sorted(COORDINATOR_FIELDS & data.keys())
    if chosen:
        raise InvalidRequestError(f"{', '.join(chosen)} are set by the coordinator, not by the submitter")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        where = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p in JobSpec.model_fields) or 'job'}: {e['msg']}"
            for e in err.errors()[:5]
        )
        raise InvalidRequestError(f"invalid job specification ({where})") from None


def check_against_policy(spec: JobSpec, policy: DataUsePolicy, policy_hash: str) -> None:
    """Early refusal of a job its policy does not cover (each node checks this again by itself)."""
    if spec.policy_hash is not None and spec.policy_hash != policy_hash:
        raise InvalidRequestError("policy_hash differs from the policy version's content hash")
    if spec.purpose != policy.purpose:
        raise InvalidRequestError(
            f"task {spec.task.value} needs purpose {spec.purpose.value}, "
            f"the policy allows {policy.purpose.value}"
        )
    if spec.epsilon > policy.privacy.epsilon or spec.delta > policy.privacy.delta:
        raise InvalidRequestError(
            f"the job's (ε, δ) = ({spec.epsilon:g}, {spec.delta:g}) exceeds the policy's cap "
            f"({policy.privacy.epsilon:g}, {policy.privacy.delta:g})"
        )
