"""The deployment ServerApp reports to the coordinator service over HTTP: progress each round, the
outcome, and the model with its typed card — or a node's refusal and the failure.

The coordinator side is a real HTTP server on loopback that records what it receives; the nodes
are the real node-side handlers behind the in-process ``LocalGrid``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from flwr.app import Context, RecordDict
from local_grid import LocalGrid

from coordinator.deployment_app import run_deployment_job
from coordinator.job_errors import JobConfigError, JobRefusedError
from participant_node.training.job_handler import NodeContext
from protocol import JobSpec, ModelCard

pytestmark = pytest.mark.usefixtures("in_a_flower_run")

PARTNERS = ("freshmart-east", "freshmart-north", "freshmart-south")
TOKEN = "run-token-for-this-job-only"


class _Coordinator(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, dict]]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(201 if self.path.endswith("/models") else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def coordinator() -> Iterator[tuple[str, list[tuple[str, str, dict]]]]:
    received: list[tuple[str, str, dict]] = []
    handler = type("Handler", (_Coordinator,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def nodes(cj_federation: Path, tmp_path: Path) -> dict[int, NodeContext]:
    out = {}
    for node_id, partner in enumerate(PARTNERS, start=21):
        shutil.copytree(cj_federation / partner, tmp_path / partner)
        out[node_id] = NodeContext(
            tmp_path / partner, partner_id=partner, state_dir=tmp_path / f"{partner}.state"
        )
    return out


def _context(url: str, job: JobSpec) -> Context:
    run_config = {"job-spec": job.to_wire(), "expected-nodes": 3, "coordinator-url": url, "job-token": TOKEN}
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=run_config)


def test_a_finished_run_reports_rounds_outcome_and_the_model(
    coordinator: tuple[str, list], nodes: dict[int, NodeContext]
) -> None:
    url, received = coordinator
    job = JobSpec(job_id="job-reported", rounds=3, local_steps=2, min_nodes=3, standardise=False)
    run_deployment_job(LocalGrid(nodes), _context(url, job))
    assert all(auth == f"Bearer {TOKEN}" for _, auth, _ in received)
    paths = [path for path, _, _ in received]
    assert paths[:3] == ["/api/v1/jobs/job-reported/progress"] * 3
    assert [body["round"] for path, _, body in received if path.endswith("/progress")] == [1, 2, 3]
    assert {body["nodes_answered"] for path, _, body in received if path.endswith("/progress")} == {3}
    (model,) = [body for path, _, body in received if path == "/api/v1/models"]
    card = ModelCard.model_validate(model["card"])
    weights = base64.b64decode(model["weights_b64"])
    assert model["sha256"] == hashlib.sha256(weights).hexdigest() == card.weights_sha256
    assert card.job_id == "job-reported" and {n.partner_id for n in card.nodes} == set(PARTNERS)
    assert received[-1] == (
        "/api/v1/jobs/job-reported/events",
        f"Bearer {TOKEN}",
        {"kind": "outcome", "state": "finished"},
    )


def test_a_refused_run_reports_the_refusal_and_fails(
    coordinator: tuple[str, list], nodes: dict[int, NodeContext]
) -> None:
    url, received = coordinator
    job = JobSpec(job_id="job-refused-remotely", rounds=3, local_steps=2, min_nodes=3, standardise=False)
    south = nodes[23]
    south.accountant.charge(
        dataset=south.partner_id, purpose=job.purpose, job_id=job.job_id, noise_multiplier=0.5,
        sample_rate=1.0, steps=10, delta=1e-5, epsilon_cap=1000.0,
    )  # fmt: skip
    with pytest.raises(JobRefusedError, match="refused by node freshmart-south"):
        run_deployment_job(LocalGrid(nodes), _context(url, job))
    events = [body for path, _, body in received if path.endswith("/events")]
    assert events[0]["kind"] == "refusal" and events[0]["partner_id"] == "freshmart-south"
    assert events[-1]["state"] == "failed" and "refused by node freshmart-south" in events[-1]["reason"]
    assert not [path for path, _, _ in received if path.endswith("/models")]


def test_a_run_with_nowhere_to_publish_is_refused() -> None:
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={"rounds": 1})
    with pytest.raises(JobConfigError, match="out-dir or coordinator-url"):
        run_deployment_job(LocalGrid({}), context)
