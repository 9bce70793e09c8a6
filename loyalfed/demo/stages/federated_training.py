"""Demo stage: federated DP-SGD churn and propensity models over the four FreshMart store groups.

Both jobs run in one Flower simulation (one engine start-up) after the approvals gate has checked
that every store group approved the policy of each purpose. Each job reserves its ε on every store
group's budget ledger first; the report gets the model cards, the pooled ROC curves (from the
nodes' k-member score histograms) and a comparison with the centralized reference models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_outcome import RoundReport
from coordinator.model_card import build_model_card, write_model
from loyalfed.demo.pipeline import DemoContext
from loyalfed.federated_run import FederatedRun, JobPolicies, run_federated_jobs
from loyalfed.job_approvals import require_job_policies
from models.task import Task as TaskName
from participant_node.data import PartnerKind, load_federation
from protocol import JobSpec, ModelCard, read_model_card
from protocol.model_card import CardMetrics

__all__ = ["DEMO_EPSILON", "FederatedTraining"]

DEMO_EPSILON = 3.0
# Sized for the demo's time budget on 2 cores; the benchmark runs the full 20 rounds.
_ROUNDS = 8


class FederatedTraining:
    """Train churn and propensity with federated DP-SGD (ε=3, δ=1e-5) and publish model cards."""

    name = "federated_training"

    def run(self, ctx: DemoContext) -> None:
        jobs = [_job(TaskName.CHURN, ctx.seed), _job(TaskName.PROPENSITY, ctx.seed)]
        policies = _job_policies(ctx, jobs)
        # The approvals are checked (and the hashes known) before any data is read; the run checks
        # them again itself, through the same function.
        approved = require_job_policies(
            policies, load_federation(ctx.federation_dir), _partners_of(ctx), jobs
        )
        policy_hashes = {job_id: a.content_hash for job_id, a in approved.items()}
        ctx.artefacts["policy_hashes"] = policy_hashes
        for job in jobs:
            ctx.record_lineage(
                "job.started",
                actor="analyst",
                role="analyst",
                job_id=job.job_id,
                policy_hash=policy_hashes.get(job.job_id),
                purpose=job.purpose.value,
                epsilon=job.epsilon,
                details={"rounds": job.rounds, "local_steps": job.local_steps},
            )
        ledger = BudgetLedger(f"sqlite:///{ctx.out_dir / 'budget_ledger.sqlite'}")
        try:
            runs = run_federated_jobs(
                ctx.federation_dir,
                jobs,
                policies=policies,
                partner_ids=_partners_of(ctx),
                ledger=ledger,
                on_round=_round_recorder(ctx),
            )
        finally:
            ledger.close()
        published = [_publish(ctx, run) for run in runs]
        ctx.artefacts["federated_models"] = {card.task: card for card in published}
        exact = {run.outcome.job.task.value: _exact_heldout_auc(ctx, run) for run in runs}
        _report(ctx, published, exact)
        _report_warning_bands(ctx, ctx.artefacts["federated_models"]["churn"])


def _report_warning_bands(ctx: DemoContext, card: ModelCard) -> None:
    """Churn warning bands per node, each node's list computed and kept at that node."""
    from loyalfed.demo.warning_bands import BANDS, warning_band_rows
    from models.task import task_defaults

    as_of, _ = task_defaults(TaskName.CHURN)  # the date the churn model's features were built at
    rows = warning_band_rows(card, ctx.out_dir / "models" / "churn", ctx.federation_dir, as_of=as_of)
    ctx.report.add_table(
        f"Churn warning bands per node at {as_of:%Y-%m-%d} (30 days without a purchase: warning; "
        "90: lapsed; score cuts at the held-out base rate and twice it). Each node's member list "
        "stays at the node.",
        ["partner", *BANDS],
        rows,
    )


def _job(task: TaskName, seed: int) -> JobSpec:
    return JobSpec(
        job_id=f"demo-{task.value}-dp",
        task=task,
        epsilon=DEMO_EPSILON,
        rounds=_ROUNDS,
        min_nodes=3,
        seed=seed,
    )


def _job_policies(ctx: DemoContext, jobs: list[JobSpec]) -> JobPolicies:
    """The policy of each job's purpose, as the policy stage drafted and had approved.

    Without that stage's approvals there is nothing to train under: the run refuses every job.
    """
    policies: dict[str, Any] = ctx.artefacts.get("policies") or {}
    refs = {job.job_id: policies[job.purpose.value]["ref"] for job in jobs if job.purpose.value in policies}
    registry = (
        Path(next(iter(policies.values()))["registry"]) if policies else ctx.out_dir / "registry.sqlite"
    )
    return JobPolicies(registry=registry, refs=refs)


def _partners_of(ctx: DemoContext) -> list[str]:
    """The retailer's store groups: the partners every demo job trains over."""
    federation = load_federation(ctx.federation_dir)
    return [p.partner_id for p in federation.partners if p.kind is PartnerKind.STORE_GROUP]


def _round_recorder(ctx: DemoContext):
    progress = ctx.console

    def on_round(report: RoundReport) -> None:
        progress.print(
            f"  {report.job_id} round {report.server_round}: {report.nodes_ok} nodes, "
            f"ε≤{report.max_epsilon:.2f}, {report.seconds:.1f} s",
            highlight=False,
        )
        ctx.record_lineage(
            "job.round",
            actor="coordinator",
            role="coordinator",
            job_id=report.job_id,
            epsilon=round(report.max_epsilon, 4),
            details={
                "round": report.server_round,
                "nodes_ok": report.nodes_ok,
                "nodes_failed": report.nodes_failed,
            },
        )

    return on_round


def _publish(ctx: DemoContext, run: FederatedRun) -> ModelCard:
    outcome = run.outcome
    job = outcome.job
    policy_hash = (ctx.artefacts.get("policy_hashes") or {}).get(job.job_id)
    assert outcome.arrays is not None
    card = build_model_card(outcome, members_may_overlap=run.members_may_overlap, policy=run.policy)
    model_dir = ctx.out_dir / "models" / job.task.value
    write_model(model_dir, outcome.arrays, card)
    card = read_model_card(model_dir)
    for node in card.nodes:
        ctx.record_lineage(
            "budget.charged",
            actor="coordinator",
            role="coordinator",
            partner=node.partner_id,
            job_id=job.job_id,
            policy_hash=policy_hash,
            purpose=job.purpose.value,
            epsilon=node.epsilon,
            consent_snapshot_hash=node.consent_snapshot_hash,
            details={"steps": node.steps, "members_excluded_by_consent": node.members_excluded_by_consent},
        )
    inputs = [{"partner": p, "fingerprint": f} for p, f in card.data_fingerprints.items()]
    ctx.record_lineage(
        "job.finished",
        actor="coordinator",
        role="coordinator",
        job_id=job.job_id,
        policy_hash=policy_hash,
        purpose=job.purpose.value,
        inputs=inputs,
        epsilon=card.epsilon_worst_case_member,
        details={"rounds": card.rounds},
    )
    ctx.record_lineage(
        "model.published",
        actor="coordinator",
        role="coordinator",
        job_id=job.job_id,
        policy_hash=policy_hash,
        model_id=job.job_id,
        outputs=[{"name": f"models/{job.task.value}/model.pt", "sha256": card.weights_sha256}],
        epsilon=card.epsilon_worst_case_member,
    )
    return card


def _exact_heldout_auc(ctx: DemoContext, run: FederatedRun) -> float:
    """ROC-AUC of the published model on every node's held-out members, pooled exactly.

    Only the demo can compute this: it holds every partner's data. A real coordinator learns the
    k-member histogram AUC of the model card, which binning biases low on nodes this small.
    """
    from datetime import UTC, datetime

    from models import TaskDataset, make_model, predict_proba
    from models.metrics import roc_auc
    from participant_node.data import load_federation
    from participant_node.training.local_task_data import load_local_task_data

    job = run.outcome.job
    # The published weights take publicly scaled rows (the standardisation is folded in).
    spec = job.model_copy(update={"feature_mean": None, "feature_scale": None})
    now = datetime.now(UTC).replace(tzinfo=None)
    paths = {p.partner_id: p.path for p in load_federation(ctx.federation_dir).partners}
    heldout = TaskDataset.concatenate(
        load_local_task_data(paths[pid], spec, at=now).heldout for pid in run.partner_ids
    )
    model = make_model(job.model, heldout.X.shape[1])
    assert run.outcome.arrays is not None
    model.load_state_dict(run.outcome.arrays.to_torch_state_dict())
    return float(roc_auc(heldout.y, predict_proba(model, heldout.X)))


def _report(ctx: DemoContext, cards: list[ModelCard], exact: dict[str, float]) -> None:
    ctx.report.add_heading("Federated DP training (Flower + Opacus)")
    job = _job(TaskName.CHURN, 0)
    ctx.report.add_text(
        "Churn and propensity logistic regressions trained over the four FreshMart store groups with "
        f"DP-SGD (member-level ε={DEMO_EPSILON:g}, δ=1e-5 per node, {_ROUNDS} rounds × "
        f"{job.local_steps} local steps, FedAvg with server momentum {job.server_momentum:g}, the "
        f"published model the mean of the last {job.average_last} global models). Each node filters "
        "by consent, calibrates its own noise and keeps its own RDP accountant. Before round 1 the "
        "nodes send their training members' feature moments (k-member aggregates, not DP), pooled into "
        "one standardisation that is folded into the published weights. Evaluation pools k=20 score "
        "histograms, never per-member scores."
    )
    reference: dict[str, Any] = ctx.artefacts.get("reference_metrics") or {}
    rows = []
    for card in cards:
        metrics = _metrics(card)
        ref = _reference_auc(reference, card.task)
        rows.append(
            [
                card.task,
                f"{metrics.auc:.3f}",
                f"{exact[card.task]:.3f}",
                "-" if ref is None else f"{ref:.3f}",
                f"{metrics.pr_auc:.3f}",
                f"{metrics.brier:.3f}",
                f"{card.epsilon_worst_case_member:.2f}",
                str(sum(n.members_used for n in card.nodes)),
                str(sum(n.members_excluded_by_consent for n in card.nodes)),
            ]
        )
        ctx.add_summary(
            "federated_training",
            f"{card.task} AUC (ε={DEMO_EPSILON:g}): k-histograms / exact held-out",
            f"{metrics.auc:.3f} / {exact[card.task]:.3f}",
        )
    ctx.report.add_table(
        "Federated DP models vs centralized non-private reference",
        [
            "task",
            "federated AUC (k-histograms)",
            "federated AUC (exact, demo only)",
            "centralized AUC",
            "PR-AUC",
            "Brier",
            "ε (worst case)",
            "members used",
            "excluded by consent",
        ],
        rows,
    )
    for card in cards:
        ctx.report.add_table(
            f"{card.task} model card: nodes",
            ["partner", "members used", "excluded by consent", "ε", "σ", "q", "steps", "node AUC"],
            [
                [
                    n.partner_id,
                    str(n.members_used),
                    str(n.members_excluded_by_consent),
                    f"{n.epsilon:.2f}",
                    f"{n.noise_multiplier:.2f}",
                    f"{n.sample_rate:.3f}",
                    str(n.steps),
                    f"{_metrics(card).node_auc.get(n.partner_id, float('nan')):.3f}",
                ]
                for n in card.nodes
            ],
        )
    for card in cards:
        gaps = _metrics(card).fairness_gaps
        if isinstance(gaps.get("not_reported"), str):
            ctx.report.add_text(f"{card.task}: fairness gaps {gaps['not_reported']}.")
        elif gaps:
            ctx.report.add_table(
                f"{card.task}: fairness gaps (groups of ≥ k held-out members in the federation)",
                [
                    "attribute",
                    "AUC gap",
                    "positive-rate gap",
                    "alarm (> 15 points, clear of noise)",
                    "too small",
                ],
                [
                    [
                        a,
                        f"{g.auc_gap:.3f}",
                        f"{g.positive_rate_gap:.3f}",
                        "yes" if g.warning else ("no (gap within noise)" if g.gap_within_noise else "no"),
                        ", ".join(g.too_small_to_report) or "none",
                    ]
                    for a, g in gaps.items()
                    if not isinstance(g, str)
                ],
            )
    reference_roc = ctx.artefacts.get("reference_heldout") or {}
    ctx.report.add_figure(
        "Pooled ROC curves of the federated DP models (dotted: centralized non-private reference)",
        _roc_figure(ctx.out_dir, cards, reference_roc),
    )


def _reference_auc(reference: dict[str, Any], task: str) -> float | None:
    value = reference.get(task)
    if isinstance(value, dict):
        value = value.get("auc")
    return float(value) if isinstance(value, int | float) else None


def _metrics(card: ModelCard) -> CardMetrics:
    assert card.metrics is not None  # a published model was evaluated
    return card.metrics


def _roc_figure(out_dir: Path, cards: list[ModelCard], reference_roc: dict[str, Any]) -> str:
    figure = Figure(figsize=(5, 5))  # no pyplot: no global state, no GUI backend
    axis = figure.subplots()
    for card in cards:
        metrics = _metrics(card)
        roc = metrics.roc_curve
        line = axis.plot(roc.fpr, roc.tpr, label=f"{card.task} (AUC {metrics.auc:.3f})")[0]
        if card.task in reference_roc:
            fpr, tpr = reference_roc[card.task]
            axis.plot(fpr, tpr, linestyle=":", color=line.get_color(), label=f"{card.task} centralized")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(f"Federated DP-SGD, ε={DEMO_EPSILON:g}")
    axis.legend(loc="lower right")
    relative = "federated_roc.png"
    figure.savefig(out_dir / relative, dpi=110, bbox_inches="tight")
    return relative
