"""The platform end to end: a coordinator and three nodes as separate processes on loopback, TLS on
every hop, SuperNode authentication on, each data officer signing with their own key.

- a churn job submitted through the API finishes and its model card is in the registry;
- a fourth SuperNode whose key no coordinator registered is refused by the SuperLink;
- a job whose policy one officer did not sign is refused *by that partner's node*, even after the
  coordinator's database is edited to say the job is approved.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from audit import AuditLog
from loyalfed.demo.job_policies import training_policy_document
from loyalfed.demo.loopback_federation import BIN, LoopbackFederation, PartnerSeat, free_port
from pki import create_supernode_key
from policies.approval import ApprovalDecision
from policies.purpose import Purpose
from policies.signed_approval import generate_signing_key, sign_decision

pytestmark = pytest.mark.slow(seconds=120)

NODES = ("freshmart-east", "freshmart-north", "freshmart-south")
JOB_DONE = {"finished", "failed", "stopped"}


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, cj_federation: Path) -> Iterator[LoopbackFederation]:
    root = tmp_path_factory.mktemp("platform")
    seats = []
    for partner in NODES:
        shutil.copytree(cj_federation / partner, root / "data" / partner)
        seats.append(PartnerSeat(partner, root / "data" / partner))
    federation = LoopbackFederation(root, seats)
    try:
        federation.start(timeout_s=150)
        yield federation
    finally:
        federation.stop()


def _spec(policy: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    # One round keeps the test within its time budget; every node trains and evaluates once.
    return {
        "task": "churn",
        "epsilon": 3.0,
        "delta": 1e-5,
        "rounds": 1,
        "local_steps": 5,
        "min_nodes": 3,
        "round_timeout_s": 150.0,
        "policy_id": policy["policy_id"],
        "policy_version": policy["version"],
        "policy_hash": policy["hash"],
        **overrides,
    }


def _node_events(
    federation: LoopbackFederation, partner: str, job_id: str
) -> list[tuple[str, dict[str, Any]]]:
    with AuditLog.open(federation.root / "nodes" / partner / "audit.sqlite") as log:
        return [(e.event_type.value, dict(e.details)) for _seq, e in log.iter_events() if e.job_id == job_id]


def _logs(federation: LoopbackFederation) -> str:
    return "\n".join(f"== {name}\n{federation.log_tail(name)}" for name in federation.processes)


def test_a_churn_job_through_the_api_finishes_and_its_card_is_in_the_registry(
    federation: LoopbackFederation,
) -> None:
    policy = federation.draft_policy(training_policy_document(Purpose.CHURN_MODEL, NODES))
    for partner in NODES:
        federation.decide(partner, policy)
    job_id = federation.submit(_spec(policy))
    job = federation.wait_job(job_id, states=JOB_DONE, timeout_s=300)
    assert job["state"] == "finished", f"{job}\n{_logs(federation)}"
    assert job["refusals"] == [] and job["model_id"]
    model = federation.api("analyst", "GET", f"/models/{job['model_id']}")
    card = model["card"]
    assert card["job_id"] == job_id and card["policy_hash"] == policy["hash"]
    assert sorted(node["partner_id"] for node in card["nodes"]) == sorted(NODES)
    assert all(0 < node["epsilon"] <= 3.03 for node in card["nodes"])
    # Each node recorded every step it served in its own audit trail, after its own checks.
    for partner in NODES:
        steps = [
            details["step"]
            for kind, details in _node_events(federation, partner, job_id)
            if kind == "job.round"
        ]
        assert "train" in steps and "evaluate" in steps


def test_a_supernode_with_an_unregistered_key_is_refused(
    federation: LoopbackFederation, tmp_path: Path
) -> None:
    rogue = create_supernode_key(tmp_path / "rogue")
    state = federation.root / "nodes" / NODES[0]
    address = (state / "superlink.address").read_text(encoding="ascii").strip()
    # The rogue has everything a SuperNode needs but a registered key: the CA certificate, the address.
    command = [
        str(BIN / "flower-supernode"),
        "--superlink",
        address,
        "--root-certificates",
        str(state / "tls" / "superlink-ca.crt"),
        "--auth-supernode-private-key",
        str(rogue.private_key),
        "--port",
        str(free_port()),
    ]
    log = tmp_path / "rogue.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=federation.env)
        try:
            code: int | None = process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            code = None  # still retrying: it never got in either
            process.kill()
            process.wait(timeout=30)
    if code is not None:  # Flower's SUPERNODE_CONNECTION_ERROR: the SuperLink did not admit it
        assert code != 0 and "Exit Code: 305" in log.read_text(errors="replace")
    # The SuperLink refused to activate that key (its key is not among those the coordinator registered).
    public = serialization.load_ssh_public_key(rogue.public_key.read_bytes())
    pem_line = (
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
        .splitlines()[1]
    )
    superlink_log = (federation.root / "coordinator" / "superlink" / "superlink.log").read_text(
        errors="replace"
    )
    refused = [line for line in superlink_log.splitlines() if "No SuperNode found" in line]
    assert any(pem_line[:40] in line for line in refused), refused[-3:]
    assert sorted(n["partner_id"] for n in federation.api("admin", "GET", "/nodes")) == sorted(NODES)


def test_a_policy_one_officer_did_not_sign_is_refused_by_that_partners_node(
    federation: LoopbackFederation,
) -> None:
    document = training_policy_document(Purpose.CHURN_MODEL, NODES, policy_id="freshmart-churn-unsigned")
    policy = federation.draft_policy(document)
    unsigned = "freshmart-east"
    for partner in NODES:
        if partner != unsigned:
            federation.decide(partner, policy)
    job_id = federation.submit(_spec(policy))
    job = federation.wait_job(job_id, states={"awaiting_approval", *JOB_DONE}, timeout_s=30)
    assert job["state"] == "awaiting_approval"  # the coordinator's own early refusal
    # Someone with the coordinator's database makes it say "approved": a decision row for the east
    # partner signed by a key that is not its officer's, and the job moved on to the queue.
    forged = sign_decision(
        generate_signing_key(),
        policy_id=policy["policy_id"],
        policy_version=policy["version"],
        policy_hash=policy["hash"],
        partner_id=unsigned,
        decision=ApprovalDecision.APPROVED,
    )
    database = sqlite3.connect(federation.root / "coordinator" / "coordinator.sqlite", timeout=30)
    with database:
        database.execute(
            "INSERT INTO decisions (policy_id, policy_version, policy_hash, partner_id, decision, statement,"
            " signature, nonce, signed_at, recorded_by, recorded_at)"
            " VALUES (?, ?, ?, ?, 'approved', ?, ?, ?, datetime('now'), 'admin', datetime('now'))",
            (
                policy["policy_id"], policy["version"], policy["hash"], unsigned,
                forged.statement, forged.signature, forged.statement.split('"nonce":"')[1][:32],
            ),
        )  # fmt: skip
        database.execute("UPDATE jobs SET state = 'queued' WHERE id = ?", (job_id,))
    database.close()
    job = federation.wait_job(job_id, states=JOB_DONE, timeout_s=240)
    assert job["state"] == "failed", f"{job}\n{_logs(federation)}"
    refusals = {r["partner_id"]: r["reason"] for r in job["refusals"]}
    assert unsigned in refusals, job
    assert refusals[unsigned].startswith("no decision signed by this partner's data officer")
    assert f"refused by node {unsigned}" in (job["reason"] or "")
    assert ("job.refused", {"rule": "officer_signature"}) in _node_events(federation, unsigned, job_id)
    # The partners whose officers did sign admitted the job's first step.
    assert any(kind == "job.round" for kind, _ in _node_events(federation, "freshmart-north", job_id))
