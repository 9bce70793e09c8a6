"""The ServerApp the deployment engine runs (``loyalfed/flower_app``): the simulation's job, plus I/O.

Flower's ``run_config`` carries the job (``job-spec`` as JSON, or its fields in kebab-case,
overridable with ``flwr run --run-config``) and the deployment settings (``protocol.RunConfigKey``):
``expected-nodes`` (how many SuperNodes must connect before round 1), ``ledger-url`` (the budget
ledger's SQLAlchemy URL; empty: no ledger), ``members-may-overlap``, and where the model goes:
``coordinator-url`` with ``job-token`` (and ``coordinator-ca``) to report progress to the
coordinator service and publish into its registry (``coordinator.coordinator_reports``), and/or
``out-dir``, a model folder on the coordinator's disk. A job with ``secure-agg`` trains with SecAgg+
rounds (``coordinator.secure_server_app``): the server sees masked updates and their sum only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from coordinator.budget_ledger import BudgetLedger
from coordinator.coordinator_reports import CoordinatorReporter, ReportTarget
from coordinator.errors import CoordinatorError
from coordinator.job_errors import JobConfigError
from coordinator.job_lifecycle import plain_round, run_job
from coordinator.job_outcome import JobOutcome
from coordinator.model_card import build_model_card, write_model
from coordinator.prompt_grid import PromptGrid
from coordinator.secure_server_app import SecureEvaluation, SecureJobOutcome, SecureRound
from protocol import JobSpec, ProtocolError, RunConfigKey, read_model_card
from protocol.model_card import WEIGHTS_FILE

__all__ = ["app", "run_deployment_job"]


def _reporter(config: Mapping[str, object]) -> CoordinatorReporter | None:
    url = str(config.get(RunConfigKey.COORDINATOR_URL, ""))
    if not url:
        return None
    ca = str(config.get(RunConfigKey.COORDINATOR_CA, "")) or None
    return CoordinatorReporter(ReportTarget(url, str(config.get(RunConfigKey.JOB_TOKEN, "")), ca))


def run_deployment_job(grid: Grid, context: Context) -> None:
    """Run the job of ``context.run_config``; publish its model into ``out-dir`` and/or the registry."""
    config: Mapping[str, object] = dict(context.run_config)
    job = JobSpec.from_run_config(config)
    out_dir = str(config.get(RunConfigKey.OUT_DIR, ""))
    reporter = _reporter(config)
    if not out_dir and reporter is None:
        raise JobConfigError("run_config needs out-dir or coordinator-url: where to publish the model")
    try:
        # Replies are collected every 0.5 s rather than Flower's 3 s (coordinator.prompt_grid).
        _run(PromptGrid(grid), context, job, config, reporter, out_dir)
    except (CoordinatorError, ProtocolError) as err:
        if reporter is not None:
            reporter.failed(job.job_id, str(err))
        raise
    finally:
        if reporter is not None:
            reporter.close()


def _run(
    grid: Grid,
    context: Context,
    job: JobSpec,
    config: Mapping[str, object],
    reporter: CoordinatorReporter | None,
    out_dir: str,
) -> JobOutcome:
    ledger_url = str(config.get(RunConfigKey.LEDGER_URL, ""))
    ledger = BudgetLedger(ledger_url) if ledger_url else None
    try:
        outcome = run_job(
            grid,
            job,
            expected_nodes=int(str(config.get(RunConfigKey.EXPECTED_NODES, job.min_nodes))),
            ledger=ledger,
            progress=reporter,
            checkpoint_dir=_checkpoint_dir(config, out_dir),
            # SecAgg+ rounds: every node's ClientApp (loyalfed/flower_app) wraps training in
            # secaggplus_mod, so the same app serves plain and secure jobs.
            train_round=SecureRound(context) if job.secure_agg else plain_round,
            outcome=SecureJobOutcome(job=job) if job.secure_agg else None,
            # Held-out histograms summed under SecAgg+: the card's figures are the exact totals.
            evaluate_round=SecureEvaluation(context) if job.secure_heldout_sum else None,
        )
    finally:
        if ledger is not None:
            ledger.close()
    _publish(outcome, config, reporter, out_dir)
    return outcome


def _checkpoint_dir(config: Mapping[str, object], out_dir: str) -> Path | None:
    configured = str(config.get(RunConfigKey.CHECKPOINT_DIR, ""))
    if configured:
        return Path(configured)
    return Path(out_dir) / "checkpoints" if out_dir else None


def _publish(
    outcome: JobOutcome, config: Mapping[str, object], reporter: CoordinatorReporter | None, out_dir: str
) -> None:
    assert outcome.arrays is not None
    # Deployment jobs may span brands: account for a member present at several nodes.
    overlap = bool(config.get(RunConfigKey.MEMBERS_MAY_OVERLAP, True))
    card = build_model_card(outcome, members_may_overlap=overlap)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(out_dir) if out_dir else Path(scratch)
        write_model(folder, outcome.arrays, card)
        if reporter is not None:
            reporter.publish(read_model_card(folder), (folder / WEIGHTS_FILE).read_bytes())
            reporter.finished(outcome.job.job_id)


app = ServerApp()
app.main()(run_deployment_job)
