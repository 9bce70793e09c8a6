"""A CLI session leaves its whole trail in the audit log, and an auditor can hold the log to it.

train, consent erase and psi run, as an operator types them, under a policy drafted and approved
in the local registry `loyalfed train --registry` reads (the `policy draft|approve` commands now go
through the coordinator service, which appends those events itself — coordinator.platform's audit
trail); then `audit verify` (pinned key, saved head) passes and `audit lineage --model DIR` names
the policy, the datasets and the ε; truncating the log to an earlier head or restoring an older
copy fails `audit verify --since-head`. No member identifier reaches the log.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from audit.audit_log import AuditLog
from audit.lineage_event import EventType
from coordinator.approvals import PolicyRegistry, resolve_policy
from loyalfed.cli.app import app

PARTNERS = ("freshmart-north", "freshmart-south")
runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def _policy(tmp_path: Path) -> Path:
    """The experiment policy `loyalfed train` documents for the bundled data, over two store groups."""
    from loyalfed.local_officers import experiment_policy
    from policies.purpose import Purpose

    policy = experiment_policy(Purpose.CHURN_MODEL, list(PARTNERS), regions=["CN"], epsilon=8.0, delta=1e-5)
    path = tmp_path / "churn-policy.json"
    path.write_text(json.dumps(policy.model_dump(mode="json")), encoding="utf-8")
    return path


def _events(path: Path) -> list[Any]:
    with AuditLog.open(path) as log:
        return [event for _, event in log.iter_events()]


@pytest.mark.slow
def test_a_cli_session_is_in_the_audit_log_and_verifies(
    cj_federation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    federation = tmp_path / "federation"
    shutil.copytree(cj_federation, federation)
    state = tmp_path / "state"
    monkeypatch.setenv("LOYALFED_DATA_DIR", str(state))
    monkeypatch.setenv("LOYALFED_PSI_SECRET", "federation-secret-for-this-test")
    log = state / "audit.sqlite"
    registry = str(tmp_path / "registry.sqlite")

    policy_file = _policy(tmp_path)
    cli("policy", "draft-local", str(policy_file), "--approve-as-local-officers", "--registry", registry)
    book = PolicyRegistry.at_path(Path(registry))
    drafted = resolve_policy(book, str(policy_file))
    book.close()
    cli(
        "budget", "set-cap", "--partner", PARTNERS[0], "--epsilon", "9", "--federation", str(federation),
        "--officer", f"data_officer:{PARTNERS[0]}",
    )  # fmt: skip
    key = json.loads(cli("audit", "head", "--json"))["public_key"]
    shutil.copy(log, tmp_path / "older-copy.sqlite")  # a backup taken before the job
    approved_size = json.loads(cli("audit", "head", "--json"))["tree_head"]["tree_size"]
    model = tmp_path / "model"
    cli(
        "train", "--task", "churn", "--federation", str(federation), "--partners", ",".join(PARTNERS),
        "--epsilon", "2", "--rounds", "1", "--local-steps", "1", "--out", str(model),
        "--policy", str(policy_file), "--registry", registry, "--json",
    )  # fmt: skip
    member = str(pd.read_parquet(federation / PARTNERS[0] / "members.parquet")["member_id"].iloc[0])
    cli("consent", "erase", str(federation / PARTNERS[0]), "--member", member, "--json")
    cli(
        "psi", "run", "--a", str(federation / PARTNERS[0]), "--b", str(federation / PARTNERS[1]),
        "--mode", "cardinality", "--json",
    )  # fmt: skip
    head = tmp_path / "head.json"
    head.write_text(cli("audit", "head", "--json"))

    types = [event.event_type for event in _events(log)]
    for expected in (
        EventType.POLICY_DRAFTED,
        EventType.POLICY_APPROVED,
        EventType.BUDGET_SET,
        EventType.JOB_STARTED,
        EventType.JOB_ROUND,
        EventType.BUDGET_CHARGED,
        EventType.JOB_FINISHED,
        EventType.MODEL_PUBLISHED,
        EventType.CONSENT_ERASED,
        EventType.PSI_RUN,
    ):
        assert expected in types, (expected, types)
    assert types.count(EventType.BUDGET_CHARGED) == len(PARTNERS)
    # The job's events were appended as it ran: reservation, start, rounds, charges, end, model.
    job_steps = [EventType.BUDGET_RESERVED, EventType.JOB_STARTED, EventType.JOB_ROUND]
    job_steps += [EventType.BUDGET_CHARGED, EventType.JOB_FINISHED, EventType.MODEL_PUBLISHED]
    positions = [types.index(kind) for kind in job_steps]
    assert positions == sorted(positions), types
    assert member.encode() not in log.read_bytes()

    report = json.loads(cli("audit", "verify", "--public-key", key, "--since-head", str(head), "--json"))
    assert report["ok"] and report["tree_size"] == len(types)

    lineage = json.loads(cli("audit", "lineage", "--model", str(model), "--json"))
    nodes = {node["id"]: node for node in lineage["nodes"]}
    assert nodes[f"policy:{drafted.content_hash}"]["policy_hash"] == drafted.content_hash
    approvals = {n["label"] for n in nodes.values() if n["kind"] == "approval"}
    assert approvals == {f"{p} approved" for p in PARTNERS}
    assert ("job:" + json.loads((model / "model_card.json").read_text())["job_id"]) in nodes
    datasets = [n for n in nodes.values() if n["kind"] == "dataset"]
    assert sorted(n["label"].split("/")[0] for n in datasets) == sorted(PARTNERS)
    budgets = {n["label"]: n["epsilon"] for n in nodes.values() if n["kind"] == "budget"}
    assert set(budgets) == set(PARTNERS) and all(0 < eps <= 2.05 for eps in budgets.values())

    # An attacker with write access truncates the log back to the approvals' head...
    conn = sqlite3.connect(log)
    with conn:
        conn.execute(f"DELETE FROM entries WHERE seq >= {approved_size}")
        conn.execute(f"DELETE FROM nodes WHERE ((idx + 1) << level) > {approved_size}")
        conn.execute(f"DELETE FROM tree_heads WHERE tree_size > {approved_size}")
    conn.close()
    truncated = runner.invoke(app, ["audit", "verify", "--since-head", str(head), "--json"])
    assert truncated.exit_code == 1 and json.loads(truncated.stdout)["bad_entries"][0] == approved_size
    # ...or restores the older copy: both fail against the saved head.
    shutil.copy(tmp_path / "older-copy.sqlite", log)
    restored = runner.invoke(app, ["audit", "verify", "--since-head", str(head), "--json"])
    assert restored.exit_code == 1 and "older copy" in json.loads(restored.stdout)["first_problem"]


def test_commands_append_to_the_audit_service_over_https(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an audit service configured, a command appends with the caller's token over HTTPS and
    checks the service's signed tree head against the newest one it has seen."""
    from datetime import UTC, datetime

    from test_audit_service import LoopbackServer

    from audit.audit_service import ClientGrant, ClientRole, ServiceConfig, create_app, token_digest
    from audit.tree_head import SignedTreeHead
    from participant_node.matching.federation_pki import issue_federation_ca, issue_server_certificate

    now = datetime.now(UTC)
    ca = issue_federation_ca(now=now, days=1)
    ca.write(tmp_path / "pki", "ca", suffix=".crt")
    issue_server_certificate(ca, ["127.0.0.1"], now=now, days=1).write(tmp_path / "pki", "audit")
    grant = ClientGrant(
        client_id="north", token_sha256=token_digest("tok-north"), actor="data_officer:north",
        role=ClientRole.PARTNER, partner="north", may_append=True,
    )  # fmt: skip
    federation = tmp_path / "federation"
    (federation / "north").mkdir(parents=True)
    service_log = AuditLog.open(tmp_path / "service.sqlite")
    tls = {
        "ssl_certfile": str(tmp_path / "pki" / "audit.pem"),
        "ssl_keyfile": str(tmp_path / "pki" / "audit.key"),
    }
    with LoopbackServer(create_app(service_log, ServiceConfig(clients=(grant,))), **tls) as server:
        monkeypatch.setenv("LOYALFED_AUDIT_URL", server.url)
        monkeypatch.setenv("LOYALFED_AUDIT_TOKEN", "tok-north")
        monkeypatch.setenv("LOYALFED_AUDIT_CA", str(tmp_path / "pki" / "ca.crt"))
        monkeypatch.setenv("LOYALFED_AUDIT_PUBLIC_KEY", service_log.public_key_hex)
        set_cap = ["budget", "set-cap", "--partner", "north", "--federation", str(federation)]
        cli(*set_cap, "--epsilon", "4", "--officer", "data_officer:north")
        [(_, event)] = service_log.events()
        assert (event.event_type, event.actor, event.partner, event.epsilon) == (
            EventType.BUDGET_SET,
            "data_officer:north",
            "north",
            4.0,
        )
        state = tmp_path / "loyalfed-state" / "audit_tree_head.json"
        assert SignedTreeHead.model_validate_json(state.read_bytes()).tree_size == 1
        monkeypatch.setenv("LOYALFED_AUDIT_TOKEN", "tok-someone-else")
        refused = runner.invoke(app, [*set_cap, "--epsilon", "1", "--officer", "data_officer:north"])
        assert refused.exit_code != 0 and service_log.size == 1  # no credentials, no change
        shown = json.loads(cli("budget", "show", "--federation", str(federation), "--json"))
        assert shown["budgets"][0]["cap"] == 4.0
    service_log.close()
