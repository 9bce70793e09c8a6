"""`loyalfed policy records`: records of processing from a local SQLite registry and audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from coordinator.approvals import PolicyRegistry
from loyalfed.cli.app import app
from policies.policy import load_policy
from policies.roles import Actor, Role

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


def _draft(registry: Path, tmp_path: Path) -> str:
    """Register the policy in a local registry file (as the simulation path keeps one)."""
    store = PolicyRegistry.at_path(registry)
    try:
        return store.draft(load_policy(_policy(tmp_path)), actor=Actor(Role.ANALYST)).content_hash
    finally:
        store.close()


def test_records_of_processing_cli(tmp_path: Path) -> None:
    registry = tmp_path / "registry.sqlite"
    _draft(registry, tmp_path)
    result = _run(registry, "records")
    assert result.exit_code == 0
    (record,) = json.loads(result.stdout)
    assert record["policy"] == "churn-2024@1" and record["lawful_basis"] == "consent"


def test_records_of_processing_cli_reads_the_audit_log(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from audit import AuditLog, LineageEvent

    registry = tmp_path / "registry.sqlite"
    digest = _draft(registry, tmp_path)
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
