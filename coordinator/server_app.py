"""The coordinator's Flower ServerApp: runs jobs one after the other over the same nodes.

Each job runs through ``coordinator.job_lifecycle.run_job`` with the strategy of
``coordinator.job_strategy`` (wrappers around Flower's FedAvgM). The simulation (``loyalfed train``,
the benchmarks), the demo and the deployment engine's Flower App (``loyalfed/flower_app``) all
build their ServerApp here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_lifecycle import EvaluateRound, TrainRound, plain_round, run_job
from coordinator.job_outcome import JobOutcome
from coordinator.job_progress import JobProgress
from protocol import JobSpec, RunConfigKey

__all__ = ["EvaluateRoundFactory", "OutcomeFactory", "TrainRoundFactory", "make_server_app"]

TrainRoundFactory = Callable[[Context], TrainRound]
EvaluateRoundFactory = Callable[[Context], EvaluateRound | None]
OutcomeFactory = Callable[[JobSpec], JobOutcome]


def _plain(context: Context) -> TrainRound:
    return plain_round


def make_server_app(
    jobs: Sequence[JobSpec] | None,
    *,
    outcome_sink: Callable[[JobOutcome], None] | None = None,
    ledger: BudgetLedger | None = None,
    expected_nodes: int | None = None,
    progress: JobProgress | None = None,
    checkpoint_dir: Path | None = None,
    train_round: TrainRoundFactory = _plain,
    new_outcome: OutcomeFactory = JobOutcome,
    grid_wrapper: Callable[[Grid], Grid] | None = None,
    evaluate_round: EvaluateRoundFactory | None = None,
) -> ServerApp:
    """Build the ServerApp running ``jobs`` one after the other over the same nodes.

    ``jobs=None`` reads one job from Flower's ``run_config``; several jobs in one run share the
    engine's start-up cost (the demo trains churn and propensity together). ``train_round`` makes
    the round runner from the run's context (plain rounds, or SecAgg+), ``evaluate_round`` the
    evaluation runner (None: the nodes' DP-noised vectors, summed at the coordinator);
    ``grid_wrapper`` lets a caller observe what the server receives (tests check SecAgg+ vectors
    are masked).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        the_jobs = list(jobs) if jobs else [JobSpec.from_run_config(context.run_config)]
        configured = context.run_config.get(RunConfigKey.EXPECTED_NODES, the_jobs[0].min_nodes)
        nodes = expected_nodes or int(str(configured))
        seen = grid_wrapper(grid) if grid_wrapper is not None else grid
        round_runner = train_round(context)
        evaluation_runner = evaluate_round(context) if evaluate_round is not None else None
        for job in the_jobs:
            outcome = run_job(
                seen,
                job,
                expected_nodes=nodes,
                ledger=ledger,
                progress=progress,
                checkpoint_dir=checkpoint_dir / job.job_id if checkpoint_dir is not None else None,
                train_round=round_runner,
                outcome=new_outcome(job),
                evaluate_round=evaluation_runner,
            )
            if outcome_sink is not None:
                outcome_sink(outcome)

    return app
