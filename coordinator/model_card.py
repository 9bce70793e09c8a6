"""Building the model card of a federated job (``protocol.ModelCard``) and publishing the model.

``MODEL_DIR`` holds ``model.pt`` (the global weights as a torch state dict), ``model_card.json``
and, optionally, ``checkpoints/``. The card says what was trained on what under which policy, what
it cost in privacy (per node, from each node's own accountant, and, where one member can sit at
several nodes, in the worst case across them), how it performs, and which mechanism covers every
figure that left a node. It is written and read only through ``protocol.model_card``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import torch
from flwr.app import ArrayRecord

from coordinator.approvals import ApprovedPolicy
from coordinator.job_outcome import JobOutcome, NodeReport, RoundReport
from coordinator.secure_server_app import SecureJobOutcome
from protocol.model_card import (
    WEIGHTS_FILE,
    CardCalibration,
    CardDpSgd,
    CardFairnessGap,
    CardFeatureSchema,
    CardMetrics,
    CardNode,
    CardRocCurve,
    CardRound,
    CardStandardisation,
    ModelCard,
    write_model_card,
)

__all__ = ["build_model_card", "worst_case_epsilon", "write_model"]

# Which mechanism protects each output that left a node.
_MECHANISMS = {
    "model_updates": "DP-SGD (Opacus, Poisson sampling, per-example clipping, Gaussian noise); member-level "
    "(epsilon, delta) from each node's own RDP accountant",
    "feature_scaling": "public bounds fixed in the feature schema; no statistic of member data is used",
    "training_member_counts": "aggregate over at least 2k members (a node with fewer refuses to train)",
    "evaluation_histograms": "each node's score histograms (on a public grid of at most 10,000 bins, "
    "coarser as the noise requires; at most 1,000 per group) with Gaussian noise on every count, "
    "(epsilon, delta)-DP for the node's held-out members, charged to "
    "its own accountant; held-out members never train, so this composes in parallel with training; "
    "the card thresholds what it publishes at k members of the total",
    "brier_and_heldout_counts": "aggregate over at least k held-out members",
    "node_auc": "aggregate: each node's exact ROC-AUC over its at least k held-out members",
    "label_rates": "derived from the summed histograms, never sent separately",
}
_SECURE_HISTOGRAMS = (
    "each node's fine score histograms (10,000 bins overall, 1,000 per group) summed under SecAgg+: the "
    "coordinator sees only the federation's total (with DP noise on the counts when the job sets "
    "evaluation_epsilon); the card thresholds what it publishes at k members of the total"
)


_POOLED_STANDARDISATION = (
    "public bounds fixed in the feature schema, then one standardisation pooled from every node's "
    "count, sums and sums of squares of its training members' features: an aggregate over at least k "
    "members per node (a node with fewer refuses), NOT differentially private; the member-level "
    "epsilon covers the DP-SGD updates given this standardisation"
)


def _mechanisms(*, secure_agg: bool, standardised: bool, secure_sum: bool) -> dict[str, str]:
    mechanisms = dict(_MECHANISMS)
    if secure_sum:
        mechanisms["evaluation_histograms"] = _SECURE_HISTOGRAMS
    if standardised:
        mechanisms["feature_scaling"] = _POOLED_STANDARDISATION
    if secure_agg:
        mechanisms["model_updates"] += (
            "; masked by SecAgg+ secure aggregation: the coordinator sees only the weighted sum over nodes"
        )
    return mechanisms


def worst_case_epsilon(per_node: list[float], *, members_may_overlap: bool) -> tuple[float, str]:
    """Member-level ε across nodes: the max if every member sits at one node, else the sum.

    A member present at several nodes contributes to each node's update; the releases compose, and
    basic composition bounds the total by the sum of the per-node ε (Dwork and Roth 2014, Thm. 3.16).
    """
    if not per_node:
        return 0.0, "none"
    if members_may_overlap:
        return float(sum(per_node)), "sum over nodes (basic composition: a member may sit at several nodes)"
    return float(max(per_node)), "max over nodes (each member sits at exactly one node)"


def build_model_card(
    outcome: JobOutcome,
    *,
    members_may_overlap: bool,
    now: datetime | None = None,
    lineage_id: str | None = None,
    policy: ApprovedPolicy | None = None,
) -> ModelCard:
    """The card of ``outcome`` (its ``weights_sha256`` is filled in by ``write_model``).

    The policy on the card is the one the job's spec names; ``policy`` (the approved data-use
    policy the job ran under) takes precedence: the hash every partner's data officer signed.
    """
    job = outcome.job
    secagg = outcome.secagg if isinstance(outcome, SecureJobOutcome) else None
    nodes = sorted(outcome.nodes.values(), key=lambda r: r.partner_id)
    worst, rule = worst_case_epsilon([n.epsilon for n in nodes], members_may_overlap=members_may_overlap)
    standardisation = job.standardisation
    return ModelCard(
        job_id=job.job_id,
        task=job.task.value,
        purpose=job.purpose.value,
        model=job.model.value,
        strategy=job.strategy.value,
        proximal_mu=job.proximal_mu,
        # What ran, not what was asked: only the SecAgg+ ServerApp produces a SecureJobOutcome.
        secure_aggregation=secagg is not None,
        secure_aggregation_protocol=secagg.card() if secagg is not None else None,
        policy_id=policy.policy_id if policy is not None else job.policy_id,
        policy_version=policy.version if policy is not None else job.policy_version,
        policy_hash=policy.content_hash if policy is not None else job.policy_hash,
        rounds=len(outcome.rounds),
        rounds_planned=job.rounds,
        stopped_early=outcome.stopped_early,
        local_steps_per_round=job.local_steps,
        dp_sgd=CardDpSgd(
            expected_batch_size=job.batch_size,
            learning_rate=job.learning_rate,
            max_grad_norm=job.max_grad_norm,
        ),
        # Post-processing of the nodes' DP outputs (FedAvgM momentum, iterate averaging): no privacy cost.
        server_momentum=job.server_momentum,
        published_model=f"mean of the last {min(job.average_last, len(outcome.rounds))} global models",
        target_epsilon=job.epsilon,
        delta=job.delta,
        accountant="RDP (Opacus RDPAccountant), sampled Gaussian mechanism",
        epsilon_worst_case_member=worst,
        epsilon_composition_across_nodes=rule,
        k_min=job.k_min,
        as_of=job.as_of.date(),
        horizon_days=job.horizon_days,
        feature_schema=CardFeatureSchema(fingerprint=job.schema.fingerprint, features=list(job.schema.names)),
        # Folded into the published weights' input layer: scoring applies the public scaling only.
        feature_standardisation=(
            CardStandardisation(mean=list(standardisation.mean), scale=list(standardisation.scale))
            if standardisation is not None
            else None
        ),
        nodes=[_card_node(n) for n in nodes],
        metrics=_metrics(outcome),
        round_history=[_card_round(r) for r in outcome.rounds],
        mechanisms=_mechanisms(
            secure_agg=secagg is not None,
            standardised=standardisation is not None,
            secure_sum=outcome.evaluation is not None and outcome.evaluation.secure_sum,
        ),
        data_fingerprints={n.partner_id: n.data_fingerprint for n in nodes},
        lineage_id=lineage_id or job.job_id,
        created_at=now or datetime.now(UTC),
        heldout_members=outcome.evaluation.n if outcome.evaluation else 0,
    )


def _card_node(n: NodeReport) -> CardNode:
    return CardNode(
        partner_id=n.partner_id,
        members_used=n.members_used,
        members_excluded_by_consent=n.members_excluded_by_consent,
        epsilon=round(n.epsilon, 6),
        delta=n.delta,
        noise_multiplier=n.noise_multiplier,
        sample_rate=n.sample_rate,
        steps=n.steps,
        consent_snapshot_hash=n.consent_snapshot_hash,
    )


def _card_round(r: RoundReport) -> CardRound:
    return CardRound(
        round=r.server_round,
        nodes_ok=r.nodes_ok,
        nodes_failed=r.nodes_failed,
        seconds=round(r.seconds, 3),
        train_loss=r.train_loss,
        validation_auc=r.validation_auc,
    )


def _metrics(outcome: JobOutcome) -> CardMetrics | None:
    evaluation = outcome.evaluation
    if evaluation is None:
        return None
    how = "summed under SecAgg+" if evaluation.secure_sum else "DP-noised per node and summed"
    gaps = {a: CardFairnessGap(**f.to_dict()) for a, f in evaluation.fairness.items()}  # type: ignore[arg-type]
    not_reported = "no held-out member of the federation has a consented demographic attribute"
    return CardMetrics(
        auc=round(evaluation.auc, 4),
        pr_auc=round(evaluation.pr_auc, 4),
        brier=round(evaluation.brier, 4),
        base_rate=round(evaluation.base_rate, 4),
        node_auc={k: round(v, 4) for k, v in sorted(evaluation.node_auc.items())},
        fairness_gaps=gaps or {"not_reported": not_reported},  # type: ignore[arg-type]
        evaluation=f"auc, pr_auc, the ROC curve and calibration: every node's held-out members, from "
        f"{evaluation.bins}-bin score histograms {how}, thresholded at k members of the total; "
        "node_auc: each node's exact AUC over its held-out members",
        roc_curve=CardRocCurve(
            fpr=[round(x, 5) for x in evaluation.roc_fpr], tpr=[round(x, 5) for x in evaluation.roc_tpr]
        ),
        calibration=CardCalibration(
            mean_predicted=[
                None if v is None else round(v, 4) for v in evaluation.calibration_mean_predicted
            ],
            fraction_positive=[
                None if v is None else round(v, 4) for v in evaluation.calibration_fraction_positive
            ],
            members=list(evaluation.calibration_counts),
        ),
        heldout_noise_sigma=round(evaluation.noise_sigma, 4),
    )


def write_model(model_dir: Path, arrays: ArrayRecord, card: ModelCard) -> Path:
    """Write the weights and the card (with the weights' SHA-256) into ``model_dir``; return the card path."""
    model_dir.mkdir(parents=True, exist_ok=True)
    weights = model_dir / WEIGHTS_FILE
    torch.save(arrays.to_torch_state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    return write_model_card(model_dir, card.model_copy(update={"weights_sha256": digest}))
