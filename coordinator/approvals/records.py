"""Records of processing activities, generated from the policy registry and the audit log.

GDPR Art. 30(1) lists what a controller's record must hold (purposes, categories of data subjects
and data, recipients, third-country transfers and safeguards, erasure time limits, security
measures); PIPL Art. 54-56 require handlers to audit their processing and keep impact-assessment
records. One record per registered policy version; job counts and ε spent come from the lineage
events of the audit log (counts only, no member identifiers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from coordinator.approvals.registry import PolicyRegistry, RegisteredPolicy
from policies.approval import ApprovalStatus, approval_status
from policies.taxonomy import data_use

__all__ = ["RECORD_VERSION", "records_of_processing"]

RECORD_VERSION = 1


def records_of_processing(
    registry: PolicyRegistry, *, lineage: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One GDPR Art. 30 / PIPL Art. 54 record per registered policy version.

    Parameters
    ----------
    registry
        The policy registry.
    lineage
        Lineage events (dicts with ``event_type``, ``policy_hash``, ``epsilon``…) from the audit log.
    """
    totals = _lineage_totals(lineage)
    records = []
    for registered in registry.list_policies():
        policy = registered.policy
        decisions = registry.decisions(policy.policy_id)
        status = approval_status(policy.policy_id, registered.content_hash, policy.partners, decisions)
        records.append(_record(registered, status, totals))
    return records


def _lineage_totals(lineage: Iterable[Mapping[str, Any]]) -> dict[str, Counter[str]]:
    """Per policy hash: jobs finished and refused; per hash and partner: ε charged (in micro-ε)."""
    totals: dict[str, Counter[str]] = {"jobs": Counter(), "refused": Counter(), "epsilon_micro": Counter()}
    for event in lineage:
        digest = str(event.get("policy_hash") or "")
        kind = event.get("event_type")
        if kind == "job.finished":
            totals["jobs"][digest] += 1
        elif kind == "job.refused":
            totals["refused"][digest] += 1
        elif kind == "budget.charged" and event.get("epsilon") is not None:
            # Each node has its own privacy accountant: ε adds up per partner, never across partners.
            partner = str(event.get("partner") or "unattributed")
            totals["epsilon_micro"][f"{digest}|{partner}"] += round(float(event["epsilon"]) * 1e6)
    return totals


def _record(
    registered: RegisteredPolicy, status: ApprovalStatus, totals: dict[str, Counter[str]]
) -> dict[str, Any]:
    policy, digest = registered.policy, registered.content_hash
    return {
        "record_version": RECORD_VERSION,
        "policy": registered.ref,
        "policy_hash": digest,
        "controllers": list(policy.partners),  # joint handlers, PIPL Art. 20 / GDPR Art. 26
        "joint_handling_agreement": policy.joint_handling_agreement,
        "purpose": policy.purpose.value,
        "purpose_description": data_use(policy.purpose.value).description,
        "lawful_basis": policy.lawful_basis.value,
        "data_subjects": ["loyalty programme members"],
        "data_categories": sorted(policy.data_categories),
        "sensitive_columns": {t: list(c) for t, c in policy.sensitive_columns.items()},
        "recipients": ["coordinator (DP-noised model updates only)", *policy.partners],
        "regions": list(policy.regions),
        "cross_border_transfer": {
            "allowed": policy.cross_border.allowed,
            "mechanism": policy.cross_border.mechanism.value if policy.cross_border.mechanism else None,
        },
        "retention_days": {
            "member_data": policy.data_retention_days,
            "artefacts": policy.artefact_retention_days,
        },
        "security_measures": [
            f"DP-SGD with epsilon <= {policy.privacy.epsilon}, delta <= {policy.privacy.delta}",
            f"aggregates over at least k={policy.min_aggregation_k} members",
            "member data stays at each node; consent enforced at the node",
            "tamper-evident audit log",
        ],
        "impact_assessment": (
            policy.impact_assessment.model_dump(mode="json") if policy.impact_assessment else None
        ),
        "approvals": {p: s.value for p, s in sorted(status.states.items())},
        "jobs_finished": totals["jobs"][digest],
        "jobs_refused": totals["refused"][digest],
        "epsilon_spent_per_partner": {
            key.split("|", 1)[1]: micro / 1e6
            for key, micro in sorted(totals["epsilon_micro"].items())
            if key.split("|", 1)[0] == digest
        },
    }
