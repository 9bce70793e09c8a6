"""Early stopping on the pooled validation AUC: the job stops, and the nodes are charged only for
the rounds that ran (the ledger settles what they report, below the reserved ε)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.budget_ledger import BudgetLedger
from loyalfed.federated_run import experiment_policies, run_federated_job
from protocol import JobSpec

pytestmark = pytest.mark.slow

# A learning rate so small that the model cannot move: the pooled validation AUC (from binned,
# DP-noised histograms) moves only by the release's noise, which is not an improvement, so with
# patience 2 the job must stop after round 3 of 8. The job keeps to
# the public scaling (no feature-moments query), which this run covers end to end.
JOB = JobSpec(
    job_id="job-test-early-stop",
    task="churn",
    epsilon=3.0,
    rounds=8,
    local_steps=2,
    learning_rate=1e-9,
    eval_every=1,
    patience=2,
    min_nodes=3,
    standardise=False,
)


def test_the_job_stops_when_validation_auc_stalls_and_is_charged_for_what_ran(
    cj_federation: Path, tmp_path: Path
) -> None:
    federation = tmp_path / "federation"
    shutil.copytree(cj_federation, federation)
    ledger = BudgetLedger(f"sqlite:///{tmp_path / 'budget.sqlite'}")
    policies = experiment_policies(federation, [JOB], registry=tmp_path / "registry.sqlite")
    run = run_federated_job(federation, JOB, policies=policies, ledger=ledger)
    outcome = run.outcome
    assert outcome.stopped_early
    assert outcome.job.standardisation is None  # nothing but DP outputs and k-histograms left the nodes
    assert [r.server_round for r in outcome.rounds] == [1, 2, 3]
    aucs = [r.validation_auc for r in outcome.rounds]
    assert outcome.evaluation is not None and outcome.evaluation.auc_noise_sd > 0
    spread = 8 * outcome.evaluation.auc_noise_sd  # the same release noise as every round's
    assert all(auc is not None for auc in aucs) and max(aucs) - min(aucs) <= spread  # type: ignore[operator]
    year = datetime.now(UTC).year
    for node in outcome.nodes.values():
        assert node.steps == 3 * JOB.local_steps
        assert node.epsilon < JOB.epsilon  # noise was calibrated for 8 rounds, 3 ran
        (charge,) = ledger.charges(node.partner_id, year=year)
        assert charge[0] == JOB.job_id and charge[3] == "spent"
        assert charge[2] == pytest.approx(node.epsilon)
    ledger.close()
