"""Run one federated job on Flower's simulation engine: one virtual SuperNode per partner folder.

This is the only place that holds both sides: the coordinator's ServerApp and the node's
ClientApp (the two packages never import each other). The CLI, the demo and the benchmark call
``run_federated_job``; the deployment engine runs the very same apps from the Flower App the
package ships (``loyalfed/flower_app``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from coordinator.approvals import ApprovedPolicy
from coordinator.budget_ledger import BudgetLedger, NodeSpent
from coordinator.job_errors import JobFailedError
from coordinator.job_outcome import JobOutcome
from coordinator.job_progress import JobProgress, RoundCallback, on_rounds
from coordinator.secure_server_app import SecureEvaluation, make_secure_server_app
from coordinator.server_app import make_server_app
from loyalfed.job_approvals import JobPolicies, approved_experiment_policies, require_job_policies
from loyalfed.simulation_dispatch import dispatching_by_destination
from participant_node.data import (
    DataContractError,
    Federation,
    PartnerKind,
    load_federation,
    validate_partner,
)
from participant_node.training.client_app import make_client_app
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from participant_node.training.secure_client_app import make_secure_client_app
from policies.purpose import Purpose
from protocol import JobSpec, parse_job_spec

__all__ = [
    "FederatedRun",
    "JobPolicies",
    "experiment_policies",
    "node_accountant_spent",
    "require_readable_data",
    "run_federated_job",
    "run_federated_jobs",
    "select_partners",
]


@dataclass(frozen=True)
class FederatedRun:
    outcome: JobOutcome
    partner_ids: tuple[str, ...]
    members_may_overlap: bool
    policy: ApprovedPolicy


def select_partners(
    federation: Federation, partner_ids: Sequence[str] | None
) -> list[tuple[str, Path, PartnerKind]]:
    """The named partners, or by default every store-group partner (the retailer's own stores)."""
    known = {p.partner_id: p for p in federation.partners}
    if partner_ids:
        unknown = [p for p in partner_ids if p not in known]
        if unknown:
            raise ValueError(
                f"unknown partner(s) {', '.join(unknown)}; the federation has {', '.join(sorted(known))}"
            )
        chosen = [known[p] for p in partner_ids]
    else:
        chosen = [p for p in federation.partners if p.kind is PartnerKind.STORE_GROUP]
    if not chosen:
        raise ValueError(f"{federation.path}: no partner to train with")
    return [(p.partner_id, p.path, p.kind) for p in chosen]


def require_readable_data(partners: Sequence[tuple[str, Path, PartnerKind]]) -> None:
    """Every partner's files are readable, checked before any budget is reserved or engine started.

    A partner whose data cannot be read would otherwise fail inside its node, mid-run, after the
    ε of the job was reserved. Unusable rows are not fatal (each node counts and skips them).
    """
    for partner_id, path, _ in partners:
        try:
            validate_partner(path)
        except DataContractError as err:
            raise JobFailedError(f"partner {partner_id}: its data cannot be read: {err}") from err


def node_accountant_spent(federation: Federation) -> NodeSpent:
    """(job, partner) -> ε the partner node's own accountant recorded for the job, or None if unknown.

    In the local simulation each node keeps its accountant in ``<partner>/.loyalfed`` (the ClientApp's
    default state folder); a node that never trained for the job has spent 0.
    """
    folders = {p.partner_id: p.path for p in federation.partners}

    def spent(job_id: str, partner_id: str) -> float | None:
        folder = folders.get(partner_id)
        if folder is None:
            return None
        accountant = NodePrivacyAccountant(folder / ".loyalfed" / "privacy_accountant.json")
        total = 0.0
        for purpose in Purpose:
            entries = accountant.entries(dataset=partner_id, purpose=purpose, job_id=job_id)
            if entries:
                delta = entries[0].delta
                total += accountant.epsilon(dataset=partner_id, purpose=purpose, delta=delta, job_id=job_id)
        return total

    return spent


def experiment_policies(
    federation_dir: Path,
    jobs: Sequence[JobSpec],
    *,
    registry: Path,
    partner_ids: Sequence[str] | None = None,
    sensitive_columns: Mapping[str, Sequence[str]] | None = None,
) -> JobPolicies:
    """Draft and approve (as every partner's local officer) policies for experiments on bundled data.

    The partners are those ``run_federated_jobs`` would choose; see ``approved_experiment_policies``.
    """
    federation = load_federation(federation_dir)
    chosen = [p[0] for p in select_partners(federation, partner_ids)]
    return approved_experiment_policies(
        federation, chosen, jobs, registry=registry, sensitive_columns=sensitive_columns
    )


def run_federated_job(
    federation_dir: Path,
    job: JobSpec,
    *,
    policies: JobPolicies,
    partner_ids: Sequence[str] | None = None,
    ledger: BudgetLedger | None = None,
    on_round: RoundCallback | None = None,
    progress: JobProgress | None = None,
    checkpoint_dir: Path | None = None,
    client_app_factory: Callable[[Sequence[Path]], object] | None = None,
) -> FederatedRun:
    """Train ``job`` over the chosen partners of ``federation_dir``; raise typed errors, never exit."""
    runs = run_federated_jobs(
        federation_dir,
        [job],
        policies=policies,
        partner_ids=partner_ids,
        ledger=ledger,
        on_round=on_round,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        client_app_factory=client_app_factory,
    )
    return runs[0]


def run_federated_jobs(
    federation_dir: Path,
    jobs: Sequence[JobSpec],
    *,
    policies: JobPolicies,
    partner_ids: Sequence[str] | None = None,
    ledger: BudgetLedger | None = None,
    on_round: RoundCallback | None = None,
    progress: JobProgress | None = None,
    checkpoint_dir: Path | None = None,
    client_app_factory: Callable[[Sequence[Path]], object] | None = None,
) -> list[FederatedRun]:
    """Train ``jobs`` one after the other in one simulation (one engine start-up) over the same partners.

    Refused (``PolicyNotApprovedError``) before any partner's data is read unless every job names a
    policy that every involved partner's officer approved for its current hash, and fits it. Each
    job then names that policy (id, version, hash) in its spec, so its nodes and its card see it.
    ``progress`` receives rounds, refusals and settlements; ``on_round`` is the shorthand for rounds.
    """
    federation = load_federation(federation_dir)
    partners = select_partners(federation, partner_ids)
    ids = tuple(p[0] for p in partners)
    approved = require_job_policies(policies, federation, ids, jobs)
    jobs = [_under_policy(job, approved[job.job_id]) for job in jobs]
    if ledger is not None:
        # Start-up recovery: reservations of earlier runs that died are settled from what each
        # node's own accountant recorded (coordinator.budget_ledger, "Recovery rule").
        ledger.recover(node_spent=node_accountant_spent(federation))
    require_readable_data(partners)
    for job in jobs:
        if len(partners) < job.min_nodes:
            raise ValueError(
                f"the job needs {job.min_nodes} nodes but only {len(partners)} partners were chosen"
            )
    if ledger is not None:
        # Refuse before starting any engine (the ServerApp reserves again, atomically, before round 1).
        ledger.check(ids, epsilon=sum(j.epsilon for j in jobs), job_id=", ".join(j.job_id for j in jobs))
    # Each member homes at one store group; a brand partner can hold the same member again.
    overlap = bool(partner_ids) and len({p[2] for p in partners} | {PartnerKind.STORE_GROUP}) > 1
    outcomes: list[JobOutcome] = []
    make_server, make_client = _apps_for(jobs)
    server_app = make_server(
        jobs,
        outcome_sink=outcomes.append,
        ledger=ledger,
        expected_nodes=len(partners),
        progress=progress or on_rounds(on_round),
        checkpoint_dir=checkpoint_dir,
    )
    dirs = [p[1] for p in partners]
    client_app = client_app_factory(dirs) if client_app_factory else make_client(dirs)
    _simulate(server_app, client_app, len(partners))
    if len(outcomes) < len(jobs):
        raise JobFailedError("the federated run ended before every job finished (see the log above)")
    return [FederatedRun(outcome, ids, overlap, approved[outcome.job.job_id]) for outcome in outcomes]


def _apps_for(jobs: Sequence[JobSpec]) -> tuple[Callable[..., object], Callable[..., object]]:
    """The server and client app makers for a run's jobs: plain, SecAgg+ rounds, or plain rounds
    with the held-out histograms summed under SecAgg+ (``coordinator.secure_server_app``)."""
    secure = {j.secure_agg for j in jobs}
    secure_sum = {j.secure_heldout_sum for j in jobs}
    if len(secure) > 1 or len(secure_sum) > 1:
        raise ValueError(
            "jobs of one run must all use secure aggregation (or secure evaluation) or all not use it"
        )
    if True in secure:
        return make_secure_server_app, make_secure_client_app
    if True in secure_sum:
        return functools.partial(make_server_app, evaluate_round=SecureEvaluation), make_secure_client_app
    return make_server_app, make_client_app


def _under_policy(job: JobSpec, policy: ApprovedPolicy) -> JobSpec:
    """``job`` naming the approved policy it runs under (validated like any other field)."""
    fields = {"policy_id": policy.policy_id, "policy_version": policy.version}
    return parse_job_spec({**job.model_dump(), **fields, "policy_hash": policy.content_hash})


def _simulate(server_app: object, client_app: object, nodes: int) -> None:
    from flwr.simulation import run_simulation

    # Ray and Flower are chatty; keep the operator's terminal for our own progress output.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    backend = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": min(2, os.cpu_count() or 1),
            "log_to_driver": False,
            "include_dashboard": False,
        },
    }
    # Flower's dispatch loop scans every stored message per node per poll (loyalfed.simulation_dispatch).
    with dispatching_by_destination():
        run_simulation(server_app, client_app, num_supernodes=nodes, backend_config=backend)  # type: ignore[arg-type]
