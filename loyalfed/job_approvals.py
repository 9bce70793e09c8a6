"""The local simulation's approvals check: every job names a policy every involved partner approved.

``require_job_policies`` is the one function a locally simulated job passes before any partner's
data is read (``loyalfed.federated_run`` calls it first): for each job, the policy it names must be
registered, its current version approved by every involved partner (``require_job_allowed``), and
the job must fit it — purpose, partners, ε and δ within its cap, every partner's region inside the
policy's regions (PIPL Art. 6, 38-39; GDPR Art. 5(1)(b), 44-46). Then each involved partner's own
data officer's signed decision on that exact hash is verified with the officer's key
(``loyalfed.local_officers``), as a node does for itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.approvals import ApprovedPolicy, PolicyNotApprovedError, PolicyRegistry, require_job_allowed
from loyalfed.local_officers import (
    approve_as_local_officers,
    experiment_policy,
    local_officer_decision,
    officers_dir_for,
)
from participant_node.data import Federation
from policies.roles import Actor, Role
from protocol import JobSpec

__all__ = ["JobPolicies", "approved_experiment_policies", "require_job_policies"]


@dataclass(frozen=True)
class JobPolicies:
    """Which policy each job runs under, and where its approvals are kept.

    ``refs`` maps a job id to a policy reference (file, id, id@version or hash prefix); ``registry``
    is the policy registry file; the local officers' keys and signed decisions live in
    ``officers_dir`` (default: beside the registry).
    """

    registry: Path
    refs: Mapping[str, str]
    officers_dir: Path | None = field(default=None)

    @classmethod
    def one_for_all(cls, registry: Path, ref: str, jobs: Sequence[JobSpec]) -> JobPolicies:
        return cls(registry=registry, refs={job.job_id: ref for job in jobs})

    @property
    def officers(self) -> Path:
        return self.officers_dir or officers_dir_for(self.registry)


def require_job_policies(
    policies: JobPolicies, federation: Federation, partner_ids: Sequence[str], jobs: Sequence[JobSpec]
) -> dict[str, ApprovedPolicy]:
    """The approved policy of every job, or ``PolicyNotApprovedError`` naming what is missing."""
    if not policies.registry.is_file():
        raise PolicyNotApprovedError(
            f"no policy registry at {policies.registry}: draft a policy and have every partner's data "
            "officer approve it (`loyalfed policy draft-local FILE --approve-as-local-officers` "
            "for experiments)"
        )
    regions = {p.partner_id: p.region for p in federation.partners if p.partner_id in partner_ids}
    registry = PolicyRegistry.at_path(policies.registry)
    try:
        return {job.job_id: _approved(registry, policies, job, partner_ids, regions) for job in jobs}
    finally:
        registry.close()


def _approved(
    registry: PolicyRegistry,
    policies: JobPolicies,
    job: JobSpec,
    partner_ids: Sequence[str],
    regions: Mapping[str, str],
) -> ApprovedPolicy:
    ref = policies.refs.get(job.job_id)
    if ref is None:
        raise PolicyNotApprovedError(
            f"job {job.job_id} names no data-use policy; every job must run under one"
        )
    approved = require_job_allowed(
        registry,
        ref,
        purpose=job.purpose,
        partners=partner_ids,
        epsilon=job.epsilon,
        delta=job.delta,
        min_aggregation_k=job.k_min,
        partner_regions=regions,
    )
    for partner in sorted(set(partner_ids)):
        local_officer_decision(policies.officers, partner, approved.content_hash)
    return approved


def approved_experiment_policies(
    federation: Federation,
    partner_ids: Sequence[str],
    jobs: Sequence[JobSpec],
    *,
    registry: Path,
    sensitive_columns: Mapping[str, Sequence[str]] | None = None,
) -> JobPolicies:
    """Draft one experiment policy per purpose of ``jobs`` and approve it as every partner's local officer.

    The one step for experiments on bundled data (benchmarks, tests): the jobs then run under
    policies that cover exactly their partners, regions and ε/δ, signed by each partner's own key.
    """
    regions = [p.region for p in federation.partners if p.partner_id in partner_ids]
    refs: dict[str, str] = {}
    book = PolicyRegistry.at_path(registry)
    try:
        for purpose in sorted({job.purpose for job in jobs}):
            mine = [job for job in jobs if job.purpose is purpose]
            policy = experiment_policy(
                purpose,
                partner_ids,
                regions=regions,
                epsilon=max(job.epsilon for job in mine),
                delta=max(job.delta for job in mine),
                min_aggregation_k=min(job.k_min for job in mine),
                sensitive_columns=sensitive_columns,
            )
            registered = book.draft(policy, actor=Actor(Role.ANALYST))
            approve_as_local_officers(book, registered.ref, officers_dir=officers_dir_for(registry))
            refs.update({job.job_id: registered.ref for job in mine})
    finally:
        book.close()
    return JobPolicies(registry=registry, refs=refs)
