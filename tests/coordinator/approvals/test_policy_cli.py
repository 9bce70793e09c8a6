"""`loyalfed policy draft|show|approve|reject|status|records` against a real SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from coordinator.approvals import PolicyRegistry, require_approved
from loyalfed.cli.app import app
from policies.roles import AuthorizationError

STORES = ("freshmart-north", "freshmart-south", "freshmart-east", "freshmart-west")
runner = CliRunner()


def _policy(tmp_path: Path, **overrides: Any) -> Path:
    data: dict[str, Any] = {
        "policy_id": "churn-2024",
        "title": "Churn model across FreshMart store groups",
        "purpose": "analytics.churn_model",
        "partners": list(STORES),
        "columns": {"transactions": ["member_id", "timestamp", "amount"]},
        "privacy": {"epsilon": 8.0, "delta": 1e-5},
        "impact_assessment": {"reference": "PIA-2024-07", "completed_on": "2024-07-01"},
        "joint_handling_agreement": "JHA-FreshMart-2024",
        **overrides,
    }
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(registry: Path, *args: str) -> Any:
    return runner.invoke(app, ["policy", *args, "--registry", str(registry)])


def test_draft_approve_status_flow(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    drafted = _run(registry, "draft", str(_policy(tmp_path)), "--json")
    assert drafted.exit_code == 0, drafted.output
    info = json.loads(drafted.stdout)
    assert info["policy"] == "churn-2024@1" and len(info["content_hash"]) == 64
    for partner in STORES[:3]:
        assert _run(registry, "approve", "churn-2024", "--as", f"data_officer:{partner}").exit_code == 0
    pending = _run(registry, "status", "churn-2024", "--json")
    assert pending.exit_code == 1
    assert json.loads(pending.stdout)["partners"]["freshmart-west"]["state"] == "pending"
    rejected = _run(
        registry, "reject", "churn-2024", "--as", "data_officer:freshmart-west", "--reason", "too broad"
    )
    assert rejected.exit_code == 0
    assert json.loads(_run(registry, "status", "churn-2024", "--json").stdout)["partners"][
        "freshmart-west"
    ] == {
        "state": "rejected",
        "reason": "too broad",
    }
    assert _run(registry, "approve", "churn-2024", "--as", "data_officer:freshmart-west").exit_code == 0
    done = _run(registry, "status", str(tmp_path / "churn.yaml"), "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["approved"] is True
    shown = json.loads(_run(registry, "show", "churn-2024", "--json").stdout)
    assert shown["body"]["purpose"] == "analytics.churn_model"
    reg = PolicyRegistry.at_path(registry)
    assert require_approved(reg, "churn-2024", partners=STORES).version == 1
    reg.close()


def test_redraft_of_changed_file_voids_approvals(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    _run(registry, "draft", str(_policy(tmp_path)))
    for partner in STORES:
        _run(registry, "approve", "churn-2024", "--as", f"data_officer:{partner}")
    changed = _run(registry, "draft", str(_policy(tmp_path, title="wider")), "--json")
    assert json.loads(changed.stdout)["policy"] == "churn-2024@2"
    status = json.loads(_run(registry, "status", "churn-2024", "--json").stdout)
    assert status["approved"] is False
    assert {v["state"] for v in status["partners"].values()} == {"pending"}


def test_data_officer_cannot_approve_for_other_partner_via_cli(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    _run(registry, "draft", str(_policy(tmp_path)))
    result = _run(
        registry,
        "approve",
        "churn-2024",
        "--as",
        "data_officer:freshmart-north",
        "--partner",
        "freshmart-south",
    )
    assert isinstance(result.exception, AuthorizationError)


def test_analyst_cannot_approve_via_cli(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    _run(registry, "draft", str(_policy(tmp_path)))
    result = _run(registry, "approve", "churn-2024", "--as", "analyst", "--partner", "freshmart-north")
    assert isinstance(result.exception, AuthorizationError)


def test_records_of_processing_cli(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    _run(registry, "draft", str(_policy(tmp_path)))
    result = _run(registry, "records")
    assert result.exit_code == 0
    (record,) = json.loads(result.stdout)
    assert record["policy"] == "churn-2024@1" and record["lawful_basis"] == "consent"


@pytest.mark.parametrize("field", ["epsilon_cap", "retention"])
def test_draft_refuses_unknown_field(tmp_path: Path, field: str) -> None:
    result = _run(tmp_path / "r.sqlite", "draft", str(_policy(tmp_path, **{field: 1})))
    assert result.exit_code != 0 and field in str(result.exception)


def test_records_of_processing_cli_reads_the_audit_log(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from audit import AuditLog, LineageEvent

    registry = tmp_path / "registry.sqlite"
    digest = json.loads(_run(registry, "draft", str(_policy(tmp_path)), "--json").stdout)["content_hash"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with AuditLog.open(tmp_path / "audit.sqlite") as log:
        for record in (
            {"event_type": "job.finished", "policy_hash": digest, "role": "coordinator"},
            {
                "event_type": "budget.charged",
                "policy_hash": digest,
                "partner": STORES[0],
                "epsilon": 1.25,
                "role": "node",
            },
        ):
            log.append(LineageEvent.from_record(record, now=now, actor="test"))
    result = _run(registry, "records", "--audit-log", str(tmp_path / "audit.sqlite"))
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["jobs_finished"] == 1
    assert record["epsilon_spent_per_partner"] == {STORES[0]: 1.25}
