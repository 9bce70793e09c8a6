"""The audit service over real HTTP on loopback, and a node's monitor catching a history rewrite."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from audit.audit_log import AuditLog
from audit.audit_service import ClientGrant, ClientRole, ServiceConfig, create_app, token_digest
from audit.errors import AuditError
from audit.lineage_event import LineageEvent
from audit.merkle_tree import verify_inclusion
from audit.tree_head import SignedTreeHead, TreeHeadSigner, verify_tree_head
from audit.tree_head_monitor import HistoryRewrittenError, TreeHeadMonitor

TOKENS = {"coordinator": "tok-coordinator", "careplus": "tok-careplus", "auditor": "tok-auditor"}
CONFIG = ServiceConfig(
    clients=(
        ClientGrant(
            client_id="coordinator",
            token_sha256=token_digest(TOKENS["coordinator"]),
            actor="coordinator",
            role=ClientRole.COORDINATOR,
            may_append=True,
        ),
        ClientGrant(
            client_id="careplus",
            token_sha256=token_digest(TOKENS["careplus"]),
            actor="node-careplus",
            role=ClientRole.PARTNER,
            partner="careplus",
            may_append=True,
        ),
        ClientGrant(
            client_id="auditor",
            token_sha256=token_digest(TOKENS["auditor"]),
            actor="auditor",
            role=ClientRole.AUDITOR,
        ),
    )
)


class LoopbackServer:
    """uvicorn serving an app on a free loopback port, in a thread."""

    def __init__(self, app, **config) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        scheme = "https" if "ssl_certfile" in config else "http"
        self.url = f"{scheme}://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def service(
    tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> Iterator[tuple[LoopbackServer, AuditLog]]:
    log = AuditLog.open(tmp_path / "audit.sqlite", signer=signer)
    log.append_batch(flow())
    with LoopbackServer(create_app(log, CONFIG)) as server:
        yield server, log
    log.close()


def client(url: str, who: str, **kwargs) -> httpx.Client:
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {TOKENS[who]}"}, timeout=10, **kwargs
    )


def monitored(url: str, signer: TreeHeadSigner) -> tuple[httpx.Client, TreeHeadMonitor]:
    monitor = TreeHeadMonitor(signer.public_key, client(url, "careplus"))
    return client(url, "careplus", event_hooks={"response": [monitor]}), monitor


def test_authenticated_append_and_queries(service, signer: TreeHeadSigner, flow: Callable) -> None:
    server, _ = service
    event = flow()[4].model_copy(update={"actor": "node-careplus"})
    body = {"events": [event.model_dump(mode="json")]}
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.post("/v1/events", json=body).status_code == 401
    with client(server.url, "auditor") as auditor:
        assert auditor.post("/v1/events", json=body).status_code == 403  # read-only grant
    with client(server.url, "coordinator") as coordinator:
        assert coordinator.post("/v1/events", json=body).status_code == 403  # not its actor
    with client(server.url, "careplus") as node:
        bad = {"events": [{**body["events"][0], "details": {"who": "shopper1@example.com"}}]}
        assert node.post("/v1/events", json=bad).status_code == 422
        response = node.post("/v1/events", json=body)
        assert response.status_code == 200 and response.json()["seqs"] == [13]
        head = SignedTreeHead.model_validate(response.json()["tree_head"])
        assert head.tree_size == 14 and verify_tree_head(head, signer.public_key)
    with client(server.url, "auditor") as auditor:
        assert len(auditor.get("/v1/events", params={"job_id": "job-1"}).json()) == 8
        assert len(auditor.get("/v1/events", params={"partner": "careplus"}).json()) == 6
        assert len(auditor.get("/v1/events", params={"since": "2026-03-01T09:10:00Z"}).json()) == 3
        lineage = auditor.get("/v1/lineage/model-1").json()
        assert {n["id"] for n in lineage["nodes"]} >= {"model:model-1", "job:job-1", "budget:careplus"}
        proof = auditor.get("/v1/proofs/inclusion", params={"seq": 5}).json()
        leaf, path = bytes.fromhex(proof["leaf_hash"]), [bytes.fromhex(p) for p in proof["proof"]]
        assert verify_inclusion(leaf, 5, proof["tree_size"], path, head.root)
        assert auditor.get("/v1/proofs/inclusion", params={"seq": 99}).status_code == 400


def test_monitor_accepts_an_honest_log(service, signer: TreeHeadSigner, flow: Callable) -> None:
    server, log = service
    node, monitor = monitored(server.url, signer)
    with node:
        node.get("/v1/tree-head")
        log.append_batch(flow(job="job-2"))
        node.get("/v1/events", params={"job_id": "job-2"})
        log.append_batch(flow(job="job-3"))
        node.get("/v1/tree-head")
    assert monitor.checks == 3 and monitor.latest is not None and monitor.latest.tree_size == 39


def test_monitor_catches_a_rewritten_history(
    service, tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> None:
    """The server (holding the signing key) swaps in a log whose entry 4 says something else."""
    server, _ = service
    node, monitor = monitored(server.url, signer)
    with node:
        node.get("/v1/tree-head")
        assert monitor.latest is not None and monitor.latest.tree_size == 13
        forged_events = flow()
        forged_events[4] = forged_events[4].model_copy(update={"details": {"records": 1, "granted": 1}})
        forged = AuditLog.open(tmp_path / "forged.sqlite", signer=signer)
        forged.append_batch(forged_events + flow(job="job-2"))
        server.server.config.app.state.log = forged
        with pytest.raises(HistoryRewrittenError, match="not consistent"):
            node.get("/v1/tree-head")
        forged.close()


def test_monitor_catches_a_truncated_history(
    service, tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> None:
    server, log = service
    node, _ = monitored(server.url, signer)
    with node:
        log.append_batch(flow(job="job-2"))
        node.get("/v1/tree-head")
        shorter = AuditLog.open(tmp_path / "short.sqlite", signer=signer)
        shorter.append_batch(flow())
        shorter.append(flow(job="job-x")[0])
        server.server.config.app.state.log = shorter
        with pytest.raises(HistoryRewrittenError):
            node.get("/v1/tree-head")
        shorter.close()


def test_monitor_rejects_a_head_signed_by_another_key(service, tmp_path: Path, flow: Callable) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    server, _ = service
    other = TreeHeadSigner(Ed25519PrivateKey.generate())
    node, _ = monitored(server.url, other)
    with node, pytest.raises(HistoryRewrittenError, match="invalid signature"):
        node.get("/v1/tree-head")
    assert LineageEvent  # the model is the wire format of the append endpoint


def test_audit_client_appends_proves_and_monitors(service, signer: TreeHeadSigner, flow: Callable) -> None:
    from audit.audit_client import AuditClient

    server, _ = service
    mine = [e.model_copy(update={"actor": "node-careplus"}) for e in flow(job="job-9")[5:8]]
    with AuditClient(server.url, TOKENS["careplus"], signer.public_key) as node:
        seqs = node.append(mine)
        assert seqs == [13, 14, 15]
        assert all(node.prove_included(seq, event) for seq, event in zip(seqs, mine, strict=True))
        assert not node.prove_included(seqs[0], mine[1])
        assert [e for _, e in node.events(job_id="job-9")] == mine
        with pytest.raises(AuditError, match="HTTP 400"):  # scoped: the model's publication names no partner
            node.lineage("model-1")
        assert node.monitor.latest is not None and node.monitor.latest.tree_size == 16
        with pytest.raises(AuditError, match="HTTP 403"):
            node.append([flow()[0]])  # the analyst's event, not this node's


def test_monitor_state_survives_a_restart_and_catches_a_restored_backup(
    service, tmp_path: Path, signer: TreeHeadSigner, flow: Callable
) -> None:
    """A node keeps its newest head in a file: a log rolled back while it was down is caught."""
    from audit.audit_client import AuditClient

    server, log = service
    state = tmp_path / "node" / "audit_tree_head.json"
    backup = AuditLog.open(tmp_path / "backup.sqlite", signer=signer)
    backup.append_batch(flow())  # the same 13 entries the service holds now
    log.append_batch(flow(job="job-2"))
    with AuditClient(server.url, TOKENS["careplus"], signer.public_key, state_file=state) as node:
        node.tree_head()
    assert state.stat().st_mode & 0o777 == 0o600
    assert SignedTreeHead.model_validate_json(state.read_bytes()).tree_size == 26
    server.server.config.app.state.log = backup  # restored from the backup while the node was down
    with AuditClient(server.url, TOKENS["careplus"], signer.public_key, state_file=state) as node:
        assert node.monitor.latest is not None and node.monitor.latest.tree_size == 26
        with pytest.raises(HistoryRewrittenError, match="cannot prove size 13 -> 26"):
            node.tree_head()
    backup.close()


def test_monitor_over_a_local_log(tmp_path: Path, signer: TreeHeadSigner, flow: Callable) -> None:
    """Without a service the log itself is the ConsistencyProver."""
    with AuditLog.open(tmp_path / "local.sqlite", signer=signer) as local:
        monitor = TreeHeadMonitor(signer.public_key, local, state_file=tmp_path / "head.json")
        local.append_batch(flow())
        monitor.observe(local.tree_head())
        local.append_batch(flow(job="job-2"))
        monitor.observe(local.tree_head())
        monitor.observe(local.tree_head(13))  # an older head that is a prefix: fine
        assert monitor.checks == 3 and monitor.latest is not None and monitor.latest.tree_size == 26
    with AuditLog.open(tmp_path / "other.sqlite", signer=signer) as other:
        other.append_batch(flow(job="job-x"))
        restarted = TreeHeadMonitor(signer.public_key, other, state_file=tmp_path / "head.json")
        with pytest.raises(HistoryRewrittenError):
            restarted.observe(other.tree_head())
