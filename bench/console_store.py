"""A coordinator store with a busy federation's year in it, for the console benchmark.

Filled through the coordinator's own domain functions (the ones its API routes call), so every row
and audit event is what the service itself writes: organisations, every role's credentials, officer
keys, dataset summaries, policies with officers' signed decisions, budgets, and jobs through their
whole life — submitted, gated, run, round by round, published with a model card, finished (or
failed, queued, awaiting approval). Policy revisions and their signed decisions then bring the audit
log up to the requested number of events.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from coordinator.platform import budgets, datasets, decisions, job_reports, job_runs, jobs, policy_registry
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.jobs import JobState
from coordinator.platform.model_registry import publish_model
from coordinator.platform.organisations import (
    OrganisationKind,
    create_organisation,
    issue_token,
    register_officer_key,
)
from coordinator.platform.principals import Principal, authenticate
from policies.approval import ApprovalDecision
from policies.roles import Role
from policies.signed_approval import public_key_b64, sign_decision

__all__ = ["PARTNERS", "Seats", "fill_store"]

PARTNERS = ("freshmart-north", "freshmart-south", "careplus", "fuelgo")
_FEATURES = ["recency_days", "frequency_90d", "monetary_90d", "tenure_days"]


@dataclass
class Seats:
    """Principals and their tokens (for the browser), officer signing keys."""

    admin: Principal
    tokens: dict[str, str] = field(default_factory=dict)
    principals: dict[str, Principal] = field(default_factory=dict)
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def issue(self, session: Session, trail: AuditTrail, seat: str, role: Role, organisation: str) -> None:
        principal, token = issue_token(
            session, trail, actor=self.admin, name=seat, role=role, organisation=organisation
        )
        self.principals[seat], self.tokens[seat] = principal, token


def _policy(policy_id: str, partners: list[str], revision: int) -> dict[str, Any]:
    return {
        "policy_id": policy_id,
        "title": f"Churn model across {len(partners)} partners, revision {revision}",
        "purpose": "analytics.churn_model",
        "partners": partners,
        "regions": ["CN"],
        "coordinator_region": "CN",
        "columns": {
            "members": ["member_id", "joined_at", "tier"],
            "transactions": ["member_id", "timestamp", "amount", "category"][: 2 + revision % 3],
        },
        "privacy": {"epsilon": 4.0 + revision % 5, "delta": 1e-5},
        "impact_assessment": {"reference": f"PIA-2026-{revision:03d}", "completed_on": "2026-01-10"},
        "joint_handling_agreement": "JHA-2026",
    }


def _seats(session: Session, trail: AuditTrail, admin_token: str) -> Seats:
    seats = Seats(admin=authenticate(session, admin_token))
    for partner in PARTNERS:
        kind = OrganisationKind.BRAND if partner in ("careplus", "fuelgo") else OrganisationKind.STORE_GROUP
        create_organisation(
            session, trail, actor=seats.admin, org_id=partner, name=partner, kind=kind, region="CN"
        )
        seats.issue(session, trail, f"officer-{partner}", Role.DATA_OFFICER, partner)
        seats.issue(session, trail, f"operator-{partner}", Role.PARTNER_OPERATOR, partner)
        seats.issue(session, trail, f"node-{partner}", Role.NODE, partner)
        seats.keys[partner] = Ed25519PrivateKey.generate()
        register_officer_key(
            session,
            trail,
            actor=seats.principals[f"officer-{partner}"],
            public_key_b64=public_key_b64(seats.keys[partner]),
        )
        datasets.register_dataset(
            session,
            trail,
            actor=seats.principals[f"node-{partner}"],
            partner_id=partner,
            name=f"{partner}-loyalty",
            tables={
                "members": {"columns": ["member_id", "joined_at", "tier"], "rows_rounded": 48_000},
                "transactions": {"columns": ["member_id", "timestamp", "amount"], "rows_rounded": 2_400_000},
            },
        )
        budgets.set_cap(
            session, trail, actor=seats.admin, partner_id=partner, year=trail.clock().year, epsilon_cap=100.0
        )
    seats.issue(session, trail, "analyst", Role.ANALYST, "federation")
    seats.issue(session, trail, "auditor", Role.AUDITOR, "federation")
    return seats


def _decide(
    session: Session, trail: AuditTrail, seats: Seats, row: Any, partners: list[str], *, reject: str = ""
) -> None:
    for partner in partners:
        decision = ApprovalDecision.REJECTED if partner == reject else ApprovalDecision.APPROVED
        signed = sign_decision(
            seats.keys[partner],
            policy_id=row.policy_id,
            policy_version=row.version,
            policy_hash=row.policy_hash,
            partner_id=partner,
            decision=decision,
        )
        decisions.record_decision(
            session,
            trail,
            actor=seats.principals[f"officer-{partner}"],
            policy_id=row.policy_id,
            version=row.version,
            signed=signed,
            reason="the notice does not cover this purpose" if partner == reject else "",
        )


def _card(job_id: str, rng: random.Random) -> dict[str, Any]:
    auc = 0.66 + 0.1 * rng.random()
    fpr = [i / 20 for i in range(21)]
    tpr = [min(1.0, x ** (1 - (auc - 0.5))) for x in fpr]
    bins = [(i + 0.5) / 10 for i in range(10)]
    gap = 0.05 + 0.15 * rng.random()
    return {
        "card_version": 2, "job_id": job_id, "task": "churn", "purpose": "analytics.churn_model",
        "model": "logreg", "strategy": "fedavg", "proximal_mu": 0.0, "secure_aggregation": False,
        "rounds": 3, "rounds_planned": 3, "stopped_early": False, "local_steps_per_round": 5,
        "dp_sgd": {"expected_batch_size": 256, "learning_rate": 1.0, "max_grad_norm": 0.3},
        "server_momentum": 0.5, "published_model": "the average of the last rounds' global models",
        "target_epsilon": 0.05, "delta": 1e-5, "accountant": "RDP", "epsilon_worst_case_member": 0.05,
        "epsilon_composition_across_nodes": "max", "k_min": 20, "as_of": date(2017, 9, 1).isoformat(),
        "horizon_days": 90, "feature_schema": {"fingerprint": "f" * 16, "features": _FEATURES},
        "nodes": [], "mechanisms": {}, "data_fingerprints": {}, "lineage_id": job_id,
        "created_at": datetime(2026, 6, 1, tzinfo=UTC).isoformat(), "heldout_members": 9_600,
        "metrics": {
            "auc": auc, "pr_auc": auc - 0.2, "brier": 0.19, "base_rate": 0.3, "node_auc": {},
            "evaluation": "k-member histograms", "roc_curve": {"fpr": fpr, "tpr": tpr},
            "calibration": {"mean_predicted": bins, "fraction_positive": [b * 0.9 for b in bins],
                            "members": [960] * 10},
            "fairness_gaps": {"age_band": {
                "auc_by_group": {"18-34": auc, "35-54": auc - gap / 2, "55+": auc - gap},
                "positive_rate_by_group": {"18-34": 0.3, "35-54": 0.32, "55+": 0.3 + gap},
                "auc_gap": gap, "positive_rate_gap": gap, "warning": gap > 0.15}},
        },
    }  # fmt: skip


def _run_job(session: Session, trail: AuditTrail, job_id: str, rng: random.Random, *, finish: bool) -> None:
    token = job_runs.begin_run(session, trail, job_id=job_id)
    runner = authenticate(session, token)
    rounds = 3 if finish else 1
    for number in range(1, rounds + 1):
        job_reports.record_progress(
            session,
            trail,
            actor=runner,
            job_id=job_id,
            round_number=number,
            nodes_answered=len(PARTNERS),
            epsilon_spent=0.05 * number / rounds,
            metrics={"train_loss": 0.6 - 0.02 * number, "validation_auc": 0.65 + 0.02 * number},
        )
    if finish:
        weights = rng.randbytes(2_048)
        card = _card(job_id, rng)
        digest = hashlib.sha256(weights).hexdigest()
        publish_model(session, trail, actor=runner, job_id=job_id, card=card, weights=weights, sha256=digest)
    job_reports.record_outcome(
        session,
        trail,
        actor=runner,
        job_id=job_id,
        finished=finish,
        reason=None if finish else "evaluation: only 1 nodes answered; the job needs 2",
    )


def _jobs(session: Session, trail: AuditTrail, seats: Seats, count: int, rng: random.Random) -> None:
    analyst = seats.principals["analyst"]
    approved = policy_registry.draft_policy(
        session, trail, actor=analyst, document=_policy("churn-federation", list(PARTNERS), 0)
    )
    _decide(session, trail, seats, approved, list(PARTNERS))
    waiting = policy_registry.draft_policy(
        session, trail, actor=analyst, document=_policy("churn-brands", ["careplus", "fuelgo"], 0)
    )
    _decide(session, trail, seats, waiting, ["careplus"])  # fuelgo's officer has not decided yet
    for index in range(count):
        pending = index % 10 == 9
        row = waiting if pending else approved
        body = {"task": "churn", "policy_id": row.policy_id, "policy_version": row.version,
                "epsilon": 0.05, "delta": 1e-5, "rounds": 3}  # fmt: skip
        job = jobs.submit_job(session, trail, actor=analyst, body=body)
        if pending or index % 10 == 8:  # one in ten awaits an approval, one in ten is queued
            continue
        _run_job(session, trail, job.id, rng, finish=index % 10 != 7)
        assert job.state in (JobState.FINISHED.value, JobState.FAILED.value)


def _revisions(session: Session, trail: AuditTrail, seats: Seats, events: int) -> None:
    """Officers at work: revised policies, each signed (one in seven rejected by one partner)."""
    revision = 1
    while trail.log.size < events:
        partners = list(PARTNERS) if revision % 2 else ["freshmart-north", "careplus"]
        row = policy_registry.draft_policy(
            session,
            trail,
            actor=seats.principals["analyst"],
            document=_policy(f"campaign-{revision % 40:02d}", partners, revision),
        )
        reject = partners[-1] if revision % 7 == 0 else ""
        _decide(session, trail, seats, row, partners[: max(1, events - trail.log.size)], reject=reject)
        revision += 1


def fill_store(
    session: Session, trail: AuditTrail, admin_token: str, *, jobs: int, events: int, seed: int = 7
) -> Seats:
    """Fill the store with ``jobs`` jobs and the audit log up to ``events`` events."""
    rng = random.Random(seed)
    seats = _seats(session, trail, admin_token)
    _jobs(session, trail, seats, jobs, rng)
    _revisions(session, trail, seats, events)
    return seats
