"""The job's strategy, composed the way Flower composes privacy: wrappers around FedAvgM.

``BudgetGuard(HistogramEvaluation(IterateAveraging(FedAvgM(server_momentum=β))))``: Flower's
FedAvgM weights the nodes' models by their training-member counts and applies server momentum
(FedProx jobs add the proximal term at the nodes, ``JobSpec.proximal_mu``); iterate averaging keeps
the models to publish; histogram evaluation replaces Flower's metric averaging by the sum of the
nodes' fine score histograms (DP-noised, or masked under SecAgg+); the budget guard admits only
well-formed, in-budget updates and stops on a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import FedAvgM

from coordinator.budget_guard import BudgetGuard
from coordinator.histogram_evaluation import HistogramEvaluation
from coordinator.iterate_averaging import IterateAveraging
from coordinator.node_refusal import RefusalCallback
from models.networks import make_model
from protocol import JobSpec

__all__ = ["JobStrategy", "compose_strategy", "initial_arrays", "published_arrays"]


@dataclass(frozen=True)
class JobStrategy:
    """The composed strategy (``guard``, the outermost) and its layers, for the job runner."""

    guard: BudgetGuard
    evaluation: HistogramEvaluation
    averaging: IterateAveraging
    momentum: FedAvgM


def compose_strategy(job: JobSpec, nodes: int, *, on_refusal: RefusalCallback | None = None) -> JobStrategy:
    """The job's strategy over ``nodes`` connected nodes (every one is sampled every round)."""
    sampled = min(nodes, max(job.min_nodes, 1))
    momentum = FedAvgM(
        min_train_nodes=sampled,
        min_evaluate_nodes=sampled,
        min_available_nodes=sampled,
        server_momentum=job.server_momentum,
    )
    averaging = IterateAveraging(momentum, average_last=job.average_last)
    evaluation = HistogramEvaluation(averaging, job=job)
    guard = BudgetGuard(evaluation, job, on_refusal=on_refusal)
    return JobStrategy(guard=guard, evaluation=evaluation, averaging=averaging, momentum=momentum)


def initial_arrays(job: JobSpec) -> ArrayRecord:
    """The starting global model, seeded by the job so every run of a job starts the same."""
    torch.manual_seed(job.seed)
    return ArrayRecord(make_model(job.model, job.schema.n_features).state_dict())


def published_arrays(job: JobSpec, arrays: ArrayRecord) -> ArrayRecord:
    """``arrays`` with the job's standardisation folded into the input layer (unchanged without one)."""
    standardisation = job.standardisation
    if standardisation is None:
        return arrays
    model = make_model(job.model, job.schema.n_features)
    model.load_state_dict(arrays.to_torch_state_dict())
    return ArrayRecord(standardisation.fold_into(model).state_dict())
