"""`loyalfed consent import|withdraw|export|erase|erasures|check` on a real partner folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from loyalfed.cli.app import app
from participant_node.data import load_partner
from policies.roles import AuthorizationError

runner = CliRunner()


@pytest.fixture(autouse=True)
def _audit_log_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALFED_DATA_DIR", str(tmp_path / "state"))  # erasures append audit events


def _run(*args: str) -> Any:
    return runner.invoke(app, ["consent", *args])


def _partner(cj_federation: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "freshmart-north"
    shutil.copytree(cj_federation / "freshmart-north", folder)
    return folder


def _some_members(folder: Path, n: int) -> list[str]:
    consents = load_partner(folder).consents
    churn = consents[consents["purpose"] == "analytics.churn_model"]
    return sorted(set(churn["member_id"]))[:n]


def _check(folder: Path) -> dict[str, Any]:
    result = _run("check", str(folder), "--purpose", "analytics.churn_model", "--at", "2018-01-01", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_withdraw_then_check_counts_members_excluded_by_consent(cj_federation: Path, tmp_path: Path) -> None:
    folder = _partner(cj_federation, tmp_path)
    before = _check(folder)
    members = _some_members(folder, 3)
    listed = tmp_path / "withdrawn.txt"
    listed.write_text("\n".join(members[1:]) + "\n", encoding="utf-8")
    result = _run(
        "withdraw",
        str(folder),
        "--member",
        members[0],
        "--members-file",
        str(listed),
        "--at",
        "2017-12-01",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records_added"] == 3 * 4  # every purpose by default
    after = _check(folder)
    consented_before = before["consented"]
    assert after["consented"] < consented_before
    assert after["members_excluded_by_consent"] - before["members_excluded_by_consent"] == (
        consented_before - after["consented"]
    )
    assert after["consent_snapshot_hash"] != before["consent_snapshot_hash"]


def test_export_and_erase_via_cli(cj_federation: Path, tmp_path: Path) -> None:
    folder = _partner(cj_federation, tmp_path)
    (member,) = _some_members(folder, 1)
    total = len(load_partner(folder).members)
    out = tmp_path / "export.json"
    assert _run("export", str(folder), "--member", member, "--out", str(out)).exit_code == 0
    assert json.loads(out.read_text())["members"][0]["member_id"] == member
    erased = _run("erase", str(folder), "--member", member, "--json")
    assert erased.exit_code == 0, erased.output
    receipt = json.loads(erased.stdout)
    assert receipt["rows_deleted"]["members"] == 1 and receipt["on_time"] is True
    listed = json.loads(_run("erasures", str(folder), "--json").stdout)
    assert [r["overdue"] for r in listed["requests"]] == [False]
    assert member not in json.dumps(listed)
    assert _check(folder)["members"] == total - 1


def test_import_via_cli(tmp_path: Path, cj_federation: Path) -> None:
    folder = _partner(cj_federation, tmp_path)
    records = tmp_path / "guardian.csv"
    (member,) = _some_members(folder, 1)
    records.write_text(
        f"member_id,purpose,granted_at,lawful_basis\n{member},analytics.churn_model,2017-06-01,guardian_consent\n"
    )
    result = _run("import", str(folder), str(records), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["records_added"] == 1


def test_other_partners_officer_cannot_withdraw(cj_federation: Path, tmp_path: Path) -> None:
    folder = _partner(cj_federation, tmp_path)
    result = _run("withdraw", str(folder), "--member", "anyone", "--as", "data_officer:fuelgo")
    assert isinstance(result.exception, AuthorizationError)


def test_check_with_policy_reports_retention_and_minimisation(cj_federation: Path, tmp_path: Path) -> None:
    folder = _partner(cj_federation, tmp_path)
    policy = tmp_path / "churn.json"
    policy.write_text(
        json.dumps(
            {
                "policy_id": "churn-north",
                "title": "churn",
                "purpose": "analytics.churn_model",
                "partners": ["freshmart-north"],
                "columns": {
                    "members": ["member_id", "joined_at"],
                    "transactions": ["member_id", "timestamp", "amount"],
                },
                "privacy": {"epsilon": 4.0, "delta": 1e-5},
                "data_retention_days": 180,
            }
        )
    )
    args = ["check", str(folder), "--policy", str(policy), "--at", "2018-01-01", "--json"]
    result = _run(*args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["retention_purged"]["transactions"] > 0  # 2017 lines older than 180 days
    assert report["columns_dropped"]["members"] > 0 and report["cross_border"] is False
    assert report["consented"] == _check(folder)["consented"]
