"""Federated evaluation from the sum of the nodes' fine score histograms.

In process: the pooled metrics of summed node vectors against the exact per-member figures; and a
real job over the four Complete Journey store groups on the in-process grid (real nodes, real
accountants), whose plain evaluations release DP-noised vectors charged to the held-out members.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message
from flwr.supercore.task_identity import TaskIdentity
from local_grid import LocalGrid
from sklearn.metrics import average_precision_score, roc_auc_score

from coordinator.federated_evaluation import summarise
from coordinator.job_lifecycle import run_job
from coordinator.model_card import build_model_card
from participant_node.training.heldout_release import heldout_dataset
from participant_node.training.job_handler import NodeContext
from protocol import EvaluationLayout, EvaluationReply, JobSpec, NodeRecord


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    # Flower's Message needs a run identity; a real grid sets it (as in test_budget_settlement).
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)


PARTNERS = ("freshmart-north", "freshmart-south", "freshmart-east", "freshmart-west")


def _node(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = (rng.random(n) < 0.2).astype(float)
    scores = 1 / (1 + np.exp(-rng.normal(-1.5 + shift * labels, 1.0)))
    bands = rng.choice(np.array(["18-34", "35-54", "rare"], dtype=object), n, p=[0.5, 0.497, 0.003])
    return labels, scores, bands


def test_summed_vectors_give_the_exact_pooled_metrics_and_name_small_groups() -> None:
    rng = np.random.default_rng(3)
    nodes = [_node(rng, n, shift) for n, shift in ((900, 1.0), (400, 1.8), (2_000, 0.6))]
    layout = EvaluationLayout(groups=(("age_band", "18-34"), ("age_band", "35-54"), ("age_band", "rare")))
    vectors = [layout.vector(y, p, {"age_band": b}) for y, p, b in nodes]
    replies = [
        EvaluationReply(NodeRecord(f"n{i}", "f" * 64), len(y), float(np.mean((p - y) ** 2)), None, 0.0)
        for i, (y, p, _) in enumerate(nodes)
    ]
    summary = summarise(layout, np.sum(vectors, axis=0), replies, k=20, secure_sum=True)
    y = np.concatenate([n[0] for n in nodes])
    p = np.concatenate([n[1] for n in nodes])
    assert summary.auc == pytest.approx(roc_auc_score(y, p), abs=1e-3)
    assert summary.pr_auc == pytest.approx(average_precision_score(y, p), abs=5e-3)
    assert summary.brier == pytest.approx(float(np.mean((p - y) ** 2)), abs=1e-9)
    assert summary.n == len(y)
    fairness = summary.fairness["age_band"]
    assert fairness.too_small == ("rare",) and set(fairness.auc_by_group) == {"18-34", "35-54"}
    assert not fairness.alarm  # one model, two large groups: no gap


class _Recording(LocalGrid):
    def __init__(self, nodes: dict[int, NodeContext]) -> None:
        super().__init__(nodes)
        self.evaluations: list[EvaluationReply] = []

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = list(super().send_and_receive(messages, timeout=timeout))
        self.evaluations += [
            EvaluationReply.parse(r.content) for r in replies if r.metadata.message_type == "evaluate"
        ]
        return replies


def test_a_plain_job_releases_only_noisy_vectors_charged_to_the_heldout_members(
    cj_federation: Path, tmp_path: Path
) -> None:
    federation = tmp_path / "federation"
    shutil.copytree(cj_federation, federation)
    nodes = {
        node_id: NodeContext(federation / p, partner_id=p, state_dir=tmp_path / p)
        for node_id, p in enumerate(PARTNERS, start=11)
    }
    job = JobSpec(job_id="job-test-noisy-eval", rounds=2, local_steps=1, min_nodes=3, eval_every=1)
    grid = _Recording(nodes)
    outcome = run_job(grid, job, expected_nodes=4)
    assert len(grid.evaluations) == 4 * job.evaluations_planned == 8
    for reply in grid.evaluations:
        counts = reply.vector[: 2 * 10]
        assert reply.noise_sigma > 1.0 and not np.allclose(counts, np.round(counts))  # noisy counts
    evaluation = outcome.evaluation
    assert evaluation is not None and not evaluation.secure_sum and evaluation.noise_sigma > 0
    for node in nodes.values():
        spent = node.accountant.epsilon(
            dataset=heldout_dataset(node.partner_id), purpose=job.purpose, delta=job.delta, job_id=job.job_id
        )
        assert 0.5 * job.epsilon < spent <= job.epsilon * 1.01  # two releases, calibrated together
    card = build_model_card(outcome, members_may_overlap=False)
    assert card.metrics is not None and card.metrics.heldout_noise_sigma > 0
    assert "Gaussian noise" in card.mechanisms["evaluation_histograms"]
