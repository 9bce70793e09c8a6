"""Local data officers: signed approvals for experiments where every partner runs on this machine.

A federation on one machine (the bundled demo data, tests, benchmarks) still needs each partner's
data officer to approve a job's policy before any data is read. Here each partner's officer has an
Ed25519 key of its own under ``<officers_dir>/<partner>/`` (``officer.key`` 0600, ``officer.pub``,
``policies.signed_approval.write_key_pair``), made on first use, and signs a decision over the
policy's exact content hash (``policies.signed_approval``). The signed decision is kept beside the
key (``decisions/<policy hash>.json``) and recorded in the policy registry. The local simulation
verifies every involved partner's signed decision with that partner's public key
(``loyalfed.job_approvals``); a real deployment keeps the keys on the officers' own machines and
the decisions on the coordinator service, and each node verifies its own officer's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.approvals import PolicyNotApprovedError, PolicyRegistry, RegisteredPolicy, resolve_policy
from policies.approval import ApprovalDecision
from policies.policy import DataUsePolicy, parse_policy
from policies.purpose import Purpose
from policies.roles import Actor, Role
from policies.signed_approval import (
    DecisionStatement,
    SignatureRejectedError,
    SignedDecision,
    SigningKeyError,
    generate_signing_key,
    load_private_key,
    load_public_key,
    sign_decision,
    write_key_pair,
)

__all__ = [
    "approve_as_local_officers",
    "experiment_policy",
    "local_officer_decision",
    "officers_dir_for",
    "sign_as_local_officer",
]

_OFFICERS = "officers"
# What a training job reads from the bundled data (participant_node.training.local_task_data).
_TRAINING_COLUMNS = {
    "members": ("member_id", "joined_at"),
    "transactions": (
        "member_id", "timestamp", "amount", "quantity", "store_id", "category", "discount", "basket_id",
    ),
    "campaigns": ("member_id", "campaign_id", "start_date", "end_date", "redeemed_at"),
}  # fmt: skip


def officers_dir_for(registry_path: Path) -> Path:
    """Where the local officers of a registry file keep their keys: ``<registry folder>/officers``."""
    return Path(registry_path).parent / _OFFICERS


def _officer_key(officers_dir: Path, partner: str) -> Ed25519PrivateKey:
    folder = officers_dir / partner
    if (folder / "officer.key").is_file():
        return load_private_key(folder / "officer.key")
    key = generate_signing_key()
    write_key_pair(key, folder)
    return key


def _decision_path(officers_dir: Path, partner: str, policy_hash: str) -> Path:
    return officers_dir / partner / "decisions" / f"{policy_hash}.json"


def sign_as_local_officer(
    registered: RegisteredPolicy, partner: str, *, officers_dir: Path, now: datetime | None = None
) -> Path:
    """The partner's local officer signs an approval of ``registered``'s hash; returns the decision file."""
    signed = sign_decision(
        _officer_key(officers_dir, partner),
        policy_id=registered.policy_id,
        policy_version=registered.version,
        policy_hash=registered.content_hash,
        partner_id=partner,
        decision=ApprovalDecision.APPROVED,
        now=now,
    )
    path = _decision_path(officers_dir, partner, registered.content_hash)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(json.dumps(signed.to_dict(), indent=1), encoding="utf-8")
    return path


def approve_as_local_officers(
    registry: PolicyRegistry,
    ref: str,
    *,
    officers_dir: Path,
    partners: Iterable[str] | None = None,
    now: datetime | None = None,
) -> RegisteredPolicy:
    """Each partner's local officer signs an approval of the policy's current hash, and it is recorded.

    ``partners`` defaults to every partner the policy names. Returns the registered policy.
    """
    registered = resolve_policy(registry, ref)
    for partner in partners if partners is not None else registered.policy.partners:
        registry.approve(
            registered.ref,
            actor=Actor(Role.DATA_OFFICER, partner),
            reason="signed with the partner's local officer key",
        )
        sign_as_local_officer(registered, partner, officers_dir=officers_dir, now=now)
    return registered


def experiment_policy(
    purpose: Purpose,
    partners: Iterable[str],
    *,
    regions: Iterable[str],
    epsilon: float,
    delta: float,
    min_aggregation_k: int = 20,
    sensitive_columns: Mapping[str, Sequence[str]] | None = None,
) -> DataUsePolicy:
    """A training policy for an experiment on bundled data: the partners, their regions, the ε/δ cap.

    ``sensitive_columns`` (e.g. the members' demographic bands) are read only for fairness
    evaluation, of members with the separate sensitive-data consent (PIPL Art. 29 / GDPR Art. 9).

    Draft it and have it approved in one step with ``approve_as_local_officers`` (or the CLI's
    ``loyalfed policy draft-local FILE --approve-as-local-officers``); it is checked like any other.
    """
    slug = purpose.value.split(".")[-1].replace("_", "-")
    area = sorted(set(regions))
    return parse_policy(
        {
            "policy_id": f"experiment-{slug}",
            "title": f"Experiment on bundled data: federated {slug.replace('-', ' ')}",
            "purpose": purpose.value,
            "partners": sorted(set(partners)),
            "regions": area,
            "coordinator_region": area[0],
            "columns": _TRAINING_COLUMNS,
            "privacy": {"epsilon": epsilon, "delta": delta},
            "min_aggregation_k": min_aggregation_k,
            "sensitive_columns": {table: list(cols) for table, cols in (sensitive_columns or {}).items()},
            "impact_assessment": {"reference": "experiment on bundled data", "completed_on": "2026-01-01"},
            "joint_handling_agreement": "experiment on bundled data",
        },
        source=f"experiment policy for {purpose.value}",
    )


def local_officer_decision(officers_dir: Path, partner: str, policy_hash: str) -> DecisionStatement:
    """The partner's officer's signed approval of ``policy_hash``, verified with the officer's key.

    Raises ``PolicyNotApprovedError`` when there is no key, no decision, a decision that does not
    verify (the same message whatever the cause), or a rejection.
    """
    path = _decision_path(officers_dir, partner, policy_hash)
    public = officers_dir / partner / "officer.pub"
    if not public.is_file() or not path.is_file():
        raise PolicyNotApprovedError(
            f"partner {partner}: no decision signed by its data officer on policy hash {policy_hash[:12]} "
            f"(looked in {officers_dir / partner})"
        )
    try:
        signed = SignedDecision.from_dict(json.loads(path.read_text(encoding="utf-8")))
        statement = signed.verify_for([load_public_key(public)], policy_hash=policy_hash, partner_id=partner)
    except (SignatureRejectedError, SigningKeyError, ValueError) as err:
        raise PolicyNotApprovedError(
            f"partner {partner}: the signed decision on policy hash {policy_hash[:12]} is not valid"
        ) from err
    if statement.decision is not ApprovalDecision.APPROVED:
        raise PolicyNotApprovedError(
            f"partner {partner}: its data officer rejected policy hash {policy_hash[:12]}"
        )
    return statement
