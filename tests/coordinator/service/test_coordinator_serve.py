"""`loyalfed coordinator serve` as a real process: HTTPS on loopback, a real supervised SuperLink.

The API answers health without credentials and refuses reads without them; a node's SuperNode key
is admitted to the SuperLink by Flower's own CLI; a killed SuperLink is restarted; stopping the
service stops the SuperLink with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coordinator.platform.supernode_keys import supernode_public_key
from coordinator.superlink_control import control_client
from coordinator.superlink_supervisor import free_port
from pki.certificate_authority import create_federation_ca, sign_request
from pki.certificate_request import CertificateRole, build_request
from pki.key_files import write_private_key
from pki.supernode_key import create_supernode_key
from policies.approval import ApprovalDecision
from policies.signed_approval import public_key_b64, sign_decision
from tests.coordinator.service.coordinator_federation import job_body, policy_document

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@dataclass
class Served:
    url: str
    ca: Path
    state: Path
    process: subprocess.Popen[bytes]

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", verify=str(self.ca), headers=headers, timeout=30)


def _api_certificate(folder: Path) -> tuple[Path, Path, Path]:
    ca = create_federation_ca(folder / "ca")
    key, request = build_request(CertificateRole.COORDINATOR, hosts=["127.0.0.1", "localhost"])
    (folder / "api.pem").write_bytes(
        sign_request(ca, request.public_bytes(serialization.Encoding.PEM), role=CertificateRole.COORDINATOR)
    )
    write_private_key(
        folder / "api.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return folder / "ca" / "ca.crt", folder / "api.pem", folder / "api.key"


WAITING_APP = {
    "pyproject.toml": """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "waiting-app"
version = "0.1.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "loyalfed-tests"

[tool.flwr.app.components]
serverapp = "waiting_app.server:app"
clientapp = "waiting_app.client:app"

[tool.flwr.app.config]
job-spec = ""
expected-nodes = 1
coordinator-url = ""
job-token = ""
coordinator-ca = ""
members-may-overlap = false
checkpoint-dir = ""
""",
    "waiting_app/__init__.py": "",
    # A ServerApp that only waits: the run stays alive until the coordinator stops it.
    "waiting_app/server.py": (
        "import time\nfrom flwr.serverapp import ServerApp\napp = ServerApp()\n\n\n@app.main()\n"
        "def main(grid, context):\n    time.sleep(300)\n"
    ),
    "waiting_app/client.py": "from flwr.clientapp import ClientApp\napp = ClientApp()\n",
}


def _write_app(folder: Path) -> Path:
    for name, text in WAITING_APP.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _superlink_pids(state: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "flower-superlink" in command and str(state) in command:
                pids.append(int(entry.name))
    return pids


def _numbers(pem: str) -> object:
    return supernode_public_key(pem).public_numbers()


def _admitted_keys(address: str, root: Path) -> list[object]:
    """The public keys of the SuperNodes the SuperLink admits (what ``flwr supernode ls`` lists)."""
    from flwr.proto.control_pb2 import ListNodesRequest

    client = control_client(address, root)
    try:
        listed = client.ListNodes(ListNodesRequest())
    finally:
        client.close()
    return [
        _numbers(bytes(info.public_key).decode())
        for info in listed.nodes_info
        if info.status != "unregistered"
    ]


def _job_runs_on_the_superlink_and_is_stopped(
    served: Served, admin: httpx.Client, node: httpx.Client, tmp_path: Path
) -> None:
    """Signed approval, job gate, node online: the runner mints the run token and starts a real Flower
    run on the supervised SuperLink; a stop ends it through Flower and the job is ``stopped``."""

    def issue(role: str, organisation: str) -> httpx.Client:
        body = {"name": f"test {role}", "role": role, "organisation": organisation}
        return served.client(admin.post("/tokens", json=body).json()["token"])

    officer, analyst = issue("data_officer", "careplus"), issue("analyst", "federation")
    key = Ed25519PrivateKey.generate()
    assert officer.post("/officers/keys", json={"public_key_b64": public_key_b64(key)}).status_code == 201
    document = policy_document("careplus-churn") | {"partners": ["careplus"]}
    document.pop("joint_handling_agreement")
    version = analyst.post("/policies", json={"document": document}).json()
    signed = sign_decision(
        key,
        policy_id=version["policy_id"],
        policy_version=version["version"],
        policy_hash=version["hash"],
        partner_id="careplus",
        decision=ApprovalDecision.APPROVED,
    )
    path = f"/policies/careplus-churn/versions/{version['version']}/decisions"
    assert officer.post(path, json=signed.to_dict()).status_code == 201
    job_id = analyst.post("/jobs", json=job_body("careplus-churn")).json()["job_id"]
    assert analyst.get(f"/jobs/{job_id}").json()["state"] == "queued"
    assert node.post("/nodes/careplus/heartbeat", json={"version": "0.1.0"}).status_code == 200

    def state() -> str:
        return str(analyst.get(f"/jobs/{job_id}").json()["state"])

    _wait(
        lambda: state() == "running" and "Flower run" in str(analyst.get(f"/jobs/{job_id}/logs").json()),
        90,
        "the Flower run to start",
    )
    config = (served.state / "runs" / job_id / "run-config.toml").read_text()
    assert (
        "job-token = " in config
        and oct((served.state / "runs" / job_id / "run-config.toml").stat().st_mode)[-3:] == "600"
    )
    assert analyst.post(f"/jobs/{job_id}/stop").json()["state"] == "running"  # flagged; the runner stops it
    _wait(lambda: state() == "stopped", 60, "the runner to stop the Flower run")


def _wait(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    ca, cert, key = _api_certificate(tmp_path / "api-tls")
    state, port = tmp_path / "state", free_port()
    command = [
        str(BIN / "loyalfed"),
        "coordinator",
        "serve",
        "--state",
        str(state),
        "--port",
        str(port),
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--tls-ca",
        str(ca),
        "--flower-app",
        str(_write_app(tmp_path / "waiting-app")),
    ]
    log = (tmp_path / "coordinator.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    served = Served(f"https://127.0.0.1:{port}", ca, state, process)
    try:
        _wait(lambda: served.client().get("/health").status_code == 200, 90, "the API")
        yield served
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for pid in _superlink_pids(state):
            os.kill(pid, signal.SIGKILL)


def test_serve_https_health_openapi_auth_supernode_registration_restart_and_stop(
    served: Served, tmp_path: Path
) -> None:
    anonymous = served.client()
    assert anonymous.get("/health").json()["status"] == "ok"
    assert (
        "/api/v1/nodes/register"
        in httpx.get(served.url + "/openapi.json", verify=str(served.ca)).json()["paths"]
    )
    assert anonymous.get("/jobs").status_code == 401
    with pytest.raises(httpx.ConnectError):  # HTTPS only, and only with the CA that signed it
        httpx.get(served.url + "/api/v1/health", verify=True, timeout=10)

    _wait(lambda: anonymous.get("/health").json()["superlink"] == "running", 90, "the SuperLink")
    admin = served.client((served.state / "admin.token").read_text().strip())
    organisation = {"id": "careplus", "name": "CarePlus", "kind": "brand", "region": "CN"}
    assert admin.post("/organisations", json=organisation).status_code == 201
    node_token = admin.post(
        "/tokens", json={"name": "careplus node", "role": "node", "organisation": "careplus"}
    )
    node = served.client(node_token.json()["token"])
    supernode = create_supernode_key(tmp_path / "careplus-keys")
    node_ca = create_federation_ca(tmp_path / "node-ca")
    _key, request = build_request(CertificateRole.NODE, partner="careplus")
    certificate = sign_request(
        node_ca,
        request.public_bytes(serialization.Encoding.PEM),
        role=CertificateRole.NODE,
        partner="careplus",
    ).decode()
    body = {
        "partner_id": "careplus",
        "version": "0.1.0",
        "api_url": "https://127.0.0.1:8800",
        "tls_certificate_pem": certificate,
        "supernode_public_key_pem": supernode.public_key.read_text(),
    }
    registered = node.post("/nodes/register", json=body)
    assert registered.status_code == 200, registered.text
    assert registered.json()["superlink_address"].startswith("127.0.0.1:")
    assert "BEGIN CERTIFICATE" in registered.json()["superlink_root_certificate_pem"]
    # Registering the same key again is idempotent (the node restarts and registers anew).
    assert node.post("/nodes/register", json=body).status_code == 200

    _job_runs_on_the_superlink_and_is_stopped(served, admin, node, tmp_path)

    # The node's disk was lost: it registers a new SuperNode key, and the SuperLink no longer
    # admits the old one (whoever holds the lost private key must not join as careplus).
    rebuilt = create_supernode_key(tmp_path / "careplus-keys-rebuilt")
    body_rebuilt = body | {"supernode_public_key_pem": rebuilt.public_key.read_text()}
    assert node.post("/nodes/register", json=body_rebuilt).status_code == 200
    root = tmp_path / "superlink-root.pem"
    root.write_text(registered.json()["superlink_root_certificate_pem"])
    admitted = _admitted_keys(registered.json()["superlink_address"], root)
    assert _numbers(rebuilt.public_key.read_text()) in admitted
    assert _numbers(supernode.public_key.read_text()) not in admitted

    (first,) = _superlink_pids(served.state)
    os.kill(first, signal.SIGKILL)
    _wait(lambda: _superlink_pids(served.state) not in ([], [first]), 30, "a new SuperLink process")
    _wait(lambda: anonymous.get("/health").json()["superlink"] == "running", 90, "the restarted SuperLink")

    served.process.send_signal(signal.SIGTERM)
    served.process.wait(timeout=30)
    _wait(lambda: not _superlink_pids(served.state), 15, "the SuperLink to stop with the service")
