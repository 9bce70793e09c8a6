"""`loyalfed train`, `loyalfed score` and `loyalfed budget` as an operator runs them (real processes)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_config import JobConfig
from coordinator.job_errors import BudgetExceededError
from loyalfed.federated_run import run_federated_job

LOYALFED = [str(Path(sys.executable).parent / "loyalfed")]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LOYALFED, *args], capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture
def federation(cj_federation: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "federation"
    shutil.copytree(cj_federation, copy)
    return copy


def test_a_job_over_a_partners_cap_is_refused_before_any_training(federation: Path, tmp_path: Path) -> None:
    ledger_file = tmp_path / "budget.sqlite"
    capped = _run(
        "budget",
        "set-cap",
        "--federation",
        str(federation),
        "--partner",
        "freshmart-east",
        "--epsilon",
        "2",
        "--ledger",
        str(ledger_file),
    )
    assert capped.returncode == 0, capped.stderr
    ledger = BudgetLedger(f"sqlite:///{ledger_file}")
    with pytest.raises(
        BudgetExceededError, match=r"refused before any training.*freshmart-east.*cap ε=2\.00"
    ):
        run_federated_job(federation, JobConfig(epsilon=3.0), ledger=ledger)
    ledger.close()
    # No node took a step: no accountant, no usage record.
    assert not list(federation.glob("*/.loyalfed/privacy_accountant.json"))
    assert not list(federation.glob("*/.loyalfed/usage/*"))
    shown = _run("budget", "show", "--federation", str(federation), "--ledger", str(ledger_file), "--json")
    budgets = {b["partner_id"]: b for b in json.loads(shown.stdout)["budgets"]}
    assert budgets["freshmart-east"] == {"partner_id": "freshmart-east", "cap": 2.0, "spent": 0.0}


@pytest.mark.slow
def test_train_prints_the_model_card_and_score_writes_member_scores(federation: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
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
        "--out",
        str(model),
        "--json",
        "--ledger",
        str(tmp_path / "b.sqlite"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(result.stdout)
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

    scores_file = tmp_path / "scores.csv"
    scored = _run(
        "score",
        "--model",
        str(model),
        "--federation",
        str(federation),
        "--as-of",
        "2017-09-01",
        "--out",
        str(scores_file),
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    with scores_file.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["member_id", "partner_id", "score"]
    assert {r["partner_id"] for r in rows} == {f"freshmart-{s}" for s in ("north", "south", "east", "west")}
    assert all(0.0 < float(r["score"]) < 1.0 for r in rows)
    assert len({r["member_id"] for r in rows}) == len(rows) > 1500
