"""SecAgg+ on the deployment engine: a real TLS SuperLink, three SuperNodes run by the node's supervisor
(approving launcher, authentication keys), the loyalfed Flower App the package ships, and each
node's warm service behind the loopback endpoint the SuperNode's ClientApp forwards to.

One secure churn job of one round: one node crashes while training, after it took part in the key
and share exchange; the server reconstructs the masks it shared from the others' shares and the
round completes with the other two; the model is published with a card naming SecAgg+. (That only
masked vectors cross the wire is checked by the simulation test, which sees what the server
receives, and by the packet capture of the network-namespace harness.)
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType

from loyalfed.flower_app import flower_app_dir, flower_app_hash
from participant_node.service.local_api import create_local_app
from participant_node.training.errors import TrainingError
from participant_node.training.job_handler import NodeContext, handle
from participant_node.training.secure_client_app import legacy_fit_serving
from protocol import JobSpec
from tests.deploy.loopback_superlink import LoopbackSuperLink, free_port

pytestmark = pytest.mark.slow(seconds=130)

NODES = ("freshmart-north", "freshmart-south", "freshmart-east")
DROPS = "freshmart-east"


@dataclass
class WarmNode:
    """A node's warm side in this process: the job engine's handler behind the loopback endpoint."""

    partner: str
    folder: Path
    train_steps: list[str] = field(default_factory=list)
    server: uvicorn.Server | None = None

    def serve(self, message: Message) -> RecordDict:
        if message.metadata.message_type == MessageType.TRAIN:
            self.train_steps.append("train")
            if self.partner == DROPS:
                # Past setup and share keys (secaggplus_mod only forwards the training stage).
                raise TrainingError("node crashed while training")
        node = NodeContext(partner_dir=self.folder, partner_id=self.partner, state_dir=self.folder / ".node")
        return handle(message, node).content

    def start(self, secret: str) -> int:
        port = free_port()
        app = create_local_app(legacy_fit_serving(self.serve), secret)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        _wait(lambda: bool(self.server and self.server.started), 30)
        return port


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


@pytest.fixture
def federation(
    tmp_path: Path, cj_federation: Path
) -> Iterator[tuple[LoopbackSuperLink, dict[str, WarmNode]]]:
    link = LoopbackSuperLink(tmp_path / "deploy")
    nodes: dict[str, WarmNode] = {}
    try:
        for partner in NODES:
            folder = tmp_path / "data" / partner
            shutil.copytree(cj_federation / partner, folder)
            nodes[partner] = WarmNode(partner, folder)
            secret = secrets.token_hex(16)
            (folder.parent / f"{partner}.secret").write_text(secret, encoding="ascii")
            port = nodes[partner].start(secret)
            link.add_supernode(
                partner,
                node_config={
                    "partner-id": partner,
                    "local-url": f"http://127.0.0.1:{port}",
                    "local-secret-file": str(folder.parent / f"{partner}.secret"),
                },
                approved_apps=frozenset({flower_app_hash()}),
            )
        yield link, nodes
    finally:
        link.close()
        for node in nodes.values():
            if node.server is not None:
                node.server.should_exit = True


def test_a_secure_job_completes_on_the_deployment_engine_when_a_node_drops_after_the_share_exchange(
    federation: tuple[LoopbackSuperLink, dict[str, WarmNode]], tmp_path: Path
) -> None:
    link, nodes = federation
    model = tmp_path / "model"
    job = JobSpec(
        job_id="secagg-deploy",
        rounds=1,
        local_steps=5,
        min_nodes=2,
        secure_agg=True,
        standardise=False,
        round_timeout_s=900.0,  # a busy CI machine: a stage waits this long for a node
    )
    link.run(
        flower_app_dir(),
        f"out-dir='{model}' expected-nodes=3 job-spec='{job.to_wire()}'",
    )
    assert _wait(lambda: (model / "model_card.json").exists(), 600), link.logs()
    card = json.loads((model / "model_card.json").read_text())
    assert card["job_id"] == "secagg-deploy" and card["rounds"] == 1
    assert card["secure_aggregation"] is True
    assert card["secure_aggregation_protocol"]["nodes"] == 3
    assert card["secure_aggregation_protocol"]["reconstruction_threshold"] == 2
    # Every node reached the training stage (so it had shared its keys); one crashed there. The
    # held-out evaluation is a second SecAgg+ sum, riding on train messages too: the card's figures
    # are the exact totals of the two surviving nodes' histograms.
    assert all(node.train_steps == ["train", "train"] for node in nodes.values())
    assert "summed under SecAgg+" in card["metrics"]["evaluation"]
    assert card["metrics"]["heldout_noise_sigma"] == 0.0
    trained = {n["partner_id"]: n["steps"] for n in card["nodes"]}
    assert all(trained.get(p) == 5 for p in NODES if p != DROPS)
    assert trained.get(DROPS, 0) == 0
    assert (model / "model.pt").stat().st_size > 0
