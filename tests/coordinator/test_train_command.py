"""`loyalfed train`, `loyalfed score` and `loyalfed budget` as an operator runs them (real processes)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_errors import BudgetExceededError
from loyalfed.federated_run import experiment_policies, run_federated_job
from protocol import JobSpec

LOYALFED = [str(Path(sys.executable).parent / "loyalfed")]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # A guard against a hung command, not a speed target: a two-round secure job took 256 s here
    # with the suite sharing 2 cores with other benchmarks (load ~20).
    return subprocess.run([*LOYALFED, *args], capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture
def federation(cj_federation: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "federation"
    shutil.copytree(cj_federation, copy)
    return copy


def _policy_file(federation: Path, tmp_path: Path, *, epsilon: float = 8.0) -> Path:
    """An experiment policy over the federation's store groups, written as the analyst's JSON file."""
    from loyalfed.federated_run import select_partners
    from loyalfed.local_officers import experiment_policy
    from participant_node.data import load_federation
    from policies.purpose import Purpose

    loaded = load_federation(federation)
    stores = [p[0] for p in select_partners(loaded, None)]
    regions = [p.region for p in loaded.partners if p.partner_id in stores]
    policy = experiment_policy(Purpose.CHURN_MODEL, stores, regions=regions, epsilon=epsilon, delta=1e-5)
    path = tmp_path / "churn-policy.json"
    path.write_text(json.dumps(policy.model_dump(mode="json")))
    return path


def _draft_and_approve(policy: Path, registry: Path) -> None:
    """`policy draft-local --approve-as-local-officers`: each store group's officer signs with its own key."""
    drafted = _run(
        "policy", "draft-local", str(policy), "--approve-as-local-officers", "--registry", str(registry)
    )
    assert drafted.returncode == 0, drafted.stderr


def test_a_job_over_a_partners_cap_is_refused_before_any_training(federation: Path, tmp_path: Path) -> None:
    ledger_file = tmp_path / "budget.sqlite"
    ledger = BudgetLedger(f"sqlite:///{ledger_file}")
    ledger.set_cap("freshmart-east", 2.0, year=datetime.now(UTC).year, set_by="data_officer:freshmart-east")
    with pytest.raises(
        BudgetExceededError, match=r"refused before any training.*freshmart-east.*cap ε=2\.00"
    ):
        job = JobSpec(epsilon=3.0)
        policies = experiment_policies(federation, [job], registry=tmp_path / "api-registry.sqlite")
        run_federated_job(federation, job, policies=policies, ledger=ledger)
    ledger.close()
    registry = tmp_path / "registry.sqlite"
    _draft_and_approve(_policy_file(federation, tmp_path), registry)
    refused = _run(
        "train",
        "--task",
        "churn",
        "--federation",
        str(federation),
        "--epsilon",
        "3",
        "--out",
        str(tmp_path / "model"),
        "--ledger",
        str(ledger_file),
        "--policy",
        "experiment-churn-model",
        "--registry",
        str(registry),
    )
    message = " ".join(refused.stderr.split())
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "refused before any training" in message and "freshmart-east" in message
    # No node took a step: no accountant, no usage record, no model.
    assert not list(federation.glob("*/.loyalfed/privacy_accountant.json"))
    assert not list(federation.glob("*/.loyalfed/usage/*"))
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_train_prints_the_model_card_and_score_writes_member_scores(federation: Path, tmp_path: Path) -> None:
    model, registry = tmp_path / "model", tmp_path / "registry.sqlite"
    _draft_and_approve(_policy_file(federation, tmp_path), registry)
    result = _run(
        "train",
        "--task",
        "churn",
        "--federation",
        str(federation),
        "--epsilon",
        "3",
        "--rounds",
        "2",
        "--local-steps",
        "5",
        "--secure-evaluation",
        "--out",
        str(model),
        "--json",
        "--ledger",
        str(tmp_path / "b.sqlite"),
        "--policy",
        "experiment-churn-model",
        "--registry",
        str(registry),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(result.stdout)
    assert card["policy_id"] == "experiment-churn-model" and card["policy_version"] == 1
    from coordinator.approvals import PolicyRegistry

    book = PolicyRegistry.at_path(registry)
    assert card["policy_hash"] == book.get("experiment-churn-model").content_hash
    book.close()
    assert card == json.loads((model / "model_card.json").read_text())
    assert (card["task"], card["model"], card["rounds"], card["delta"], card["strategy"]) == (
        "churn",
        "logreg",
        2,
        1e-5,
        "fedavg",
    )
    assert len(card["nodes"]) == 4 and all(n["steps"] == 10 and n["epsilon"] <= 3.03 for n in card["nodes"])
    assert 0.5 < card["metrics"]["auc"] <= 1.0 and set(card["metrics"]) >= {
        "auc",
        "pr_auc",
        "brier",
        "node_auc",
    }
    # --secure-evaluation: plain training rounds, the held-out histograms summed under SecAgg+ (exact).
    assert not card["secure_aggregation"] and "summed under SecAgg+" in card["metrics"]["evaluation"]
    assert card["metrics"]["heldout_noise_sigma"] == 0.0

    scores_dir = tmp_path / "scores"
    scored = _run(
        "score",
        "--model",
        str(model),
        "--federation",
        str(federation),
        "--as-of",
        "2017-09-01",
        "--out",
        str(scores_dir),
        "--json",
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    summary = json.loads(scored.stdout)
    groups = {f"freshmart-{s}" for s in ("north", "south", "east", "west")}
    assert set(summary) == groups and {p.stem for p in scores_dir.glob("*.csv")} == groups  # no pooled file
    seen: set[str] = set()
    for partner_id in groups:
        with (scores_dir / f"{partner_id}.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert list(rows[0]) == ["member_id", "score", "days_since_last_purchase", "band"]
        assert all(0.0 < float(r["score"]) < 1.0 for r in rows)
        assert {r["band"] for r in rows} <= {"low", "watch", "at_risk", "lapsed"}
        assert all(r["band"] == "lapsed" for r in rows if not r["days_since_last_purchase"])
        assert sum(summary[partner_id]["bands"].values()) == len(rows) == summary[partner_id]["members"]
        ids = {r["member_id"] for r in rows}
        assert not ids & seen  # one partner's members in its own file only
        seen |= ids
    assert len(seen) > 1500


def test_budget_commands_set_and_show_caps(federation: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from loyalfed.cli import app

    ledger = str(tmp_path / "budget.sqlite")
    runner = CliRunner()
    common = ["--federation", str(federation), "--ledger", ledger]
    set_cap = runner.invoke(
        app, ["budget", "set-cap", "--partner", "freshmart-east", "--epsilon", "2", *common]
    )
    assert set_cap.exit_code == 0, set_cap.output
    shown = runner.invoke(app, ["budget", "show", "--json", *common])
    budgets = {b["partner_id"]: b for b in json.loads(shown.stdout)["budgets"]}
    assert budgets["freshmart-east"] == {"partner_id": "freshmart-east", "cap": 2.0, "spent": 0.0}
    assert budgets["freshmart-west"]["cap"] == 10.0
