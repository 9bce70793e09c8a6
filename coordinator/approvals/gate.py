"""``require_approved``: the check a job launch makes before anything is trained.

``loyalfed train --policy FILE_OR_ID`` (and the coordinator's job launch) call it with the job's
partners. It refuses, naming each partner that has not approved which hash, unless every involved
partner's data officer approved the *current* version of the policy (issue 5 items 3 and 7).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from coordinator.approvals.errors import PolicyNotApprovedError, PolicyNotFoundError
from coordinator.approvals.registry import PolicyRegistry, RegisteredPolicy
from policies.approval import Approval, ApprovalDecision, approval_status
from policies.evaluation import UseRequest, evaluate
from policies.policy import DataUsePolicy, load_policy
from policies.purpose import Purpose

__all__ = ["ApprovedPolicy", "require_approved", "require_job_allowed", "resolve_policy"]


@dataclass(frozen=True)
class ApprovedPolicy:
    """A policy every involved partner approved, with the approvals that made it so."""

    policy: DataUsePolicy
    policy_id: str
    version: int
    content_hash: str
    approvals: tuple[Approval, ...]


def resolve_policy(registry: PolicyRegistry, policy_ref: str | Path | DataUsePolicy) -> RegisteredPolicy:
    """Find the registered policy a file, a policy object, ``id``, ``id@version`` or hash refers to."""
    if isinstance(policy_ref, DataUsePolicy):
        return _by_content(registry, policy_ref, f"policy {policy_ref.policy_id}")
    path = Path(policy_ref)
    if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
        return _by_content(registry, load_policy(path), f"policy file {path}")
    return registry.get(str(policy_ref))


def _by_content(registry: PolicyRegistry, policy: DataUsePolicy, what: str) -> RegisteredPolicy:
    registered = registry.by_hash(policy.content_hash())
    if registered is None:
        raise PolicyNotFoundError(
            f"{what} (sha256 {policy.content_hash()[:12]}) is not registered: draft it with "
            "`loyalfed policy draft` and have each partner's data officer approve it"
        )
    return registered


def require_approved(
    registry: PolicyRegistry, policy_ref: str | Path | DataUsePolicy, *, partners: Iterable[str]
) -> ApprovedPolicy:
    """Return the approved policy, or raise ``PolicyNotApprovedError`` saying who has not approved.

    Parameters
    ----------
    registry
        The coordinator's policy registry.
    policy_ref
        A policy file (YAML/JSON), a ``DataUsePolicy``, a policy id (its current version),
        ``id@version`` or a content-hash prefix.
    partners
        The partners the job involves; each must be named by the policy and have approved it.
    """
    registered = resolve_policy(registry, policy_ref)
    label = f"policy {registered.ref} (sha256 {registered.content_hash[:12]})"
    current = registry.latest(registered.policy_id)
    if current.content_hash != registered.content_hash:
        raise PolicyNotApprovedError(
            f"{label} was changed: the current version is {current.ref} "
            f"(sha256 {current.content_hash[:12]}); approvals of an earlier version are void"
        )
    involved = sorted(set(partners))
    if not involved:
        raise PolicyNotApprovedError(f"{label}: a job must involve at least one partner")
    outside = [p for p in involved if p not in registered.policy.partners]
    if outside:
        raise PolicyNotApprovedError(f"{label} does not cover partner(s) {', '.join(outside)}")
    decisions = registry.decisions(registered.policy_id)
    status = approval_status(registered.policy_id, registered.content_hash, involved, decisions)
    if not status.approved:
        raise PolicyNotApprovedError(f"{label} is not approved: {'; '.join(status.missing())}")
    approvals = tuple(
        a
        for a in decisions
        if a.policy_hash == registered.content_hash and a.decision is ApprovalDecision.APPROVED
    )
    return ApprovedPolicy(
        registered.policy, registered.policy_id, registered.version, registered.content_hash, approvals
    )


def require_job_allowed(
    registry: PolicyRegistry,
    policy_ref: str | Path | DataUsePolicy,
    *,
    purpose: Purpose,
    partners: Iterable[str],
    epsilon: float,
    delta: float,
    min_aggregation_k: int = 20,
    partner_regions: Mapping[str, str] | None = None,
) -> ApprovedPolicy:
    """Approvals first, then the job itself against the approved policy.

    An approved churn policy must not let a propensity job through, nor a job whose ε or δ is
    above the policy's cap (PIPL Art. 6 / GDPR Art. 5(1)(b): purpose limitation), nor a partner whose
    region (``partner_regions``) lies outside the policy's regions (PIPL Art. 38-39). Raises
    ``PolicyNotApprovedError`` naming every violated rule.
    """
    involved = tuple(sorted(set(partners)))
    approved = require_approved(registry, policy_ref, partners=involved)
    request = UseRequest(
        purpose=purpose,
        partners=involved,
        epsilon=epsilon,
        delta=delta,
        min_aggregation_k=min_aggregation_k,
        partner_regions=dict(partner_regions or {}),
    )
    decision = evaluate(approved.policy, request)
    if not decision.allowed:
        raise PolicyNotApprovedError(
            f"policy {approved.policy_id}@{approved.version} (sha256 {approved.content_hash[:12]}) "
            f"does not allow this job: {decision.message()}"
        )
    return approved
