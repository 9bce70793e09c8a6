"""`loyalfed points …` end to end: officers sign an agreement, a node links, converts and settles
against its partner's node running as a separate process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from loyalfed.cli.app import app
from loyalfed.cli.error_handling import exit_code_for, public_message
from loyalfed.points_cluster import PointsCluster
from loyalfed.points_federation import NodePair, prepare_synthetic_pair
from tests.policies.test_interchange_agreement import agreement_data

RUNNER = CliRunner()


def run(*args: str) -> Any:
    result = RUNNER.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_officers_keygen_draft_approve_show(tmp_path: Path) -> None:
    source = tmp_path / "agreement.yaml"
    source.write_text(yaml.safe_dump(agreement_data()), encoding="utf-8")
    out = tmp_path / "fm-cp.agreement.json"
    drafted = run("points", "agreement", "draft", str(source), "--out", str(out))
    keys = {
        p: run("points", "agreement", "keygen", str(tmp_path / f"{p}.key")) for p in ("freshmart", "careplus")
    }
    assert (tmp_path / "freshmart.key").stat().st_mode & 0o077 == 0
    for partner in ("freshmart", "careplus"):
        signed = run(
            "points",
            "agreement",
            "approve",
            str(out),
            "--partner",
            partner,
            "--officer",
            f"dpo@{partner}",
            "--key",
            str(tmp_path / f"{partner}.key"),
        )
    assert signed["signed_by"] == ["careplus", "freshmart"]
    from audit.audit_log import AuditLog

    with AuditLog.open(tmp_path / "loyalfed-state" / "audit.sqlite") as log:  # tests/conftest.py's
        events = [event for _, event in log.iter_events()]
    assert [(e.event_type, e.partner, e.policy_hash) for e in events] == [
        ("policy.drafted", None, drafted["content_hash"]),
        ("policy.approved", "freshmart", drafted["content_hash"]),
        ("policy.approved", "careplus", drafted["content_hash"]),
    ]
    node = tmp_path / "node.json"
    node.write_text(
        json.dumps(
            {
                "partner_id": "freshmart",
                "database_url": f"sqlite:///{tmp_path / 'p.sqlite'}",
                "agreements_dir": str(tmp_path),
                "pki_dir": str(tmp_path),
                "officer_keys": {p: k["public_key"] for p, k in keys.items()},
                "matching_secret": "ab" * 16,
            }
        )
    )
    shown = run("points", "agreement", "show", str(out), "--node", str(node))
    assert (shown["content_hash"], shown["verified"]) == (drafted["content_hash"], True)
    bad = RUNNER.invoke(
        app, ["points", "agreement", "draft", str(tmp_path / "fm-cp.agreement.json"), "--out", "x"]
    )
    assert exit_code_for(bad.exception) == 2 and "field agreement_id" in public_message(bad.exception)


@pytest.fixture(scope="module")
def partner_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodePair]:
    root = tmp_path_factory.mktemp("points-cli")
    pair = prepare_synthetic_pair(root, members=150, shared=120, min_link_set_size=20, audit=False)
    with PointsCluster(pair, log_dir=root / "logs") as cluster:
        cluster.start("careplus")
        yield pair


def test_link_transfer_balance_history_settle_recover(partner_running: NodePair) -> None:
    node = str(partner_running.settings_paths["freshmart"])
    assert run("points", "link", "--peer", "careplus", "--node", node)["linked"] == 120
    before = run("points", "balance", "--member", "FM-0000100", "--node", node)["available"]
    args = (
        "points",
        "transfer",
        "--member",
        "FM-0000100",
        "--to",
        "careplus",
        "--points",
        "500",
        "--transfer-id",
        "cli-0001abcd",
        "--node",
        node,
    )
    first = run(*args)
    assert (first["state"], first["credited"]) == ("posted", 400)
    assert run(*args) == first  # the same id again: the first outcome
    assert run("points", "balance", "--member", "FM-0000100", "--node", node)["available"] == before - 505
    history = run("points", "history", "--member", "FM-0000100", "--node", node)
    assert {h["code"] for h in history} >= {"interchange_out", "interchange_fee", "opening"}
    settled = run(
        "points", "settle", "--peer", "careplus", "--period", "2020-01-01/2040-01-01", "--node", node
    )
    assert settled["reconciled"] and settled["statement"]["payer"] == "freshmart"
    recovered = run("points", "recover", "--node", node)
    assert recovered["outbox_left"] == 0 and recovered["in_doubt_left"] == 0
    refused = RUNNER.invoke(
        app,
        [
            "points",
            "transfer",
            "--member",
            "FM-0000001",
            "--to",
            "careplus",
            "--points",
            "500",
            "--node",
            node,
        ],
    )
    assert refused.exit_code == 2 and "not_linked" in refused.output
