"""The ServerApp the deployment engine runs (``deploy/flower_app``): the simulation's, plus I/O.

Flower's ``run_config`` carries the job (``[tool.flwr.app.config]``, overridable with
``flwr run --run-config``) and three deployment settings: ``expected-nodes`` (how many SuperNodes
must connect before round 1), ``out-dir`` (the model folder to publish into, on the coordinator's
disk) and ``ledger-url`` (the budget ledger's SQLAlchemy URL; empty: no ledger).
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_config import JobConfig
from coordinator.job_errors import JobConfigError
from coordinator.model_card import build_model_card, write_model
from coordinator.server_app import run_job

__all__ = ["app"]

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    job = JobConfig.from_run_config(config)
    if job.secure_agg:
        # The deployed Flower App ships the plain ClientApp; SecAgg+ needs secaggplus_mod on every
        # node, which takes over all train messages. Refuse rather than train unmasked.
        raise JobConfigError(
            "secure-agg is not available on the deployment engine yet: the deployed ClientApp has no "
            "SecAgg+ mod; run without secure-agg or use the simulation engine (loyalfed train --secure-agg)"
        )
    out_dir = str(config.get("out-dir", ""))
    if not out_dir:
        raise JobConfigError("run_config out-dir is required: the folder to publish the model into")
    ledger_url = str(config.get("ledger-url", ""))
    ledger = BudgetLedger(ledger_url) if ledger_url else None
    try:
        outcome = run_job(
            grid,
            job,
            expected_nodes=int(config.get("expected-nodes", job.min_nodes)),
            ledger=ledger,
            checkpoint_dir=Path(out_dir) / "checkpoints",
        )
    finally:
        if ledger is not None:
            ledger.close()
    assert outcome.arrays is not None
    # Deployment jobs may span brands: account for a member present at several nodes.
    card = build_model_card(outcome, members_may_overlap=bool(config.get("members-may-overlap", True)))
    write_model(Path(out_dir), outcome.arrays, card)
