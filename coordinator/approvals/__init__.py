"""Policy registry, multi-party approvals and the job-launch gate (issue 5 items 3 and 7)."""

from coordinator.approvals.errors import PolicyNotApprovedError, PolicyNotFoundError, RegistryError
from coordinator.approvals.gate import ApprovedPolicy, require_approved, require_job_allowed, resolve_policy
from coordinator.approvals.records import records_of_processing
from coordinator.approvals.registry import DEFAULT_REGISTRY_PATH, PolicyRegistry, RegisteredPolicy

__all__ = [
    "DEFAULT_REGISTRY_PATH",
    "ApprovedPolicy",
    "PolicyNotApprovedError",
    "PolicyNotFoundError",
    "PolicyRegistry",
    "RegisteredPolicy",
    "RegistryError",
    "records_of_processing",
    "require_approved",
    "require_job_allowed",
    "resolve_policy",
]
