"""A job over a partner whose data cannot be read fails at once, with one line naming the partner,
the file and the line, and nothing reserved in the budget ledger."""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from coordinator.budget_ledger import BudgetLedger
from coordinator.job_errors import JobFailedError
from loyalfed.cli import main
from loyalfed.federated_run import experiment_policies, run_federated_job
from protocol import parse_job_spec


def _federation(cj_federation: Path, tmp_path: Path) -> Path:
    federation = tmp_path / "fed"
    for partner in ("freshmart-north", "freshmart-south"):
        shutil.copytree(cj_federation / partner, federation / partner)
    (federation / "federation.toml").write_text(
        "".join(
            f'[[partners]]\nid = "{p}"\nkind = "store_group"\nregion = "CN"\n\n'
            for p in ("freshmart-north", "freshmart-south")
        )
    )
    broken = federation / "freshmart-south"
    for name in ("transactions.parquet", "transactions.csv"):
        (broken / name).unlink(missing_ok=True)
    (broken / "transactions.csv").write_bytes(b"member_id,timestamp,amount\nm1,2017-01-02,\xff1.0\n")
    return federation


def test_unreadable_partner_fails_the_job_before_any_reservation(cj_federation: Path, tmp_path: Path) -> None:
    federation = _federation(cj_federation, tmp_path)
    ledger = BudgetLedger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    job = parse_job_spec({"task": "churn", "epsilon": 1.0, "rounds": 1})
    partners = ["freshmart-north", "freshmart-south"]
    policies = experiment_policies(
        federation, [job], registry=tmp_path / "registry.sqlite", partner_ids=partners
    )
    with pytest.raises(JobFailedError) as failed:
        run_federated_job(federation, job, policies=policies, partner_ids=partners, ledger=ledger)
    message = str(failed.value)
    assert message.startswith("partner freshmart-south: its data cannot be read: transactions.csv, line 2")
    assert "not valid UTF-8" in message and "\n" not in message
    year = datetime.now(UTC).year
    assert (
        ledger.charges("freshmart-south", year=year) == []
        and ledger.charges("freshmart-north", year=year) == []
    )
    ledger.close()


def test_train_command_exits_non_zero_with_one_line(
    cj_federation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    federation = _federation(cj_federation, tmp_path)
    monkeypatch.setenv("COLUMNS", "400")
    args = ["train", "--task", "churn", "--federation", str(federation), "--epsilon", "1", "--rounds", "1"]
    args += ["--partners", "freshmart-north,freshmart-south", "--out", str(tmp_path / "model")]
    monkeypatch.setattr(sys, "argv", ["loyalfed", *args, "--ledger", str(tmp_path / "ledger.sqlite")])
    with pytest.raises(SystemExit) as exited:
        main()
    _, err = capsys.readouterr()
    assert exited.value.code != 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]  # besides the progress bar
    assert len(lines) == 1 and err.count("\n") <= 2, err
    # Before its data is read the job may be refused for want of an approved policy; either way
    # the command fails with one line and the broken partner's ε is never reserved.
    assert "freshmart-south" in lines[0] or "polic" in lines[0]
    assert not (tmp_path / "model").exists()
