"""The platform on four separate hosts (one network namespace each), and the faults a real network has.

A coordinator host (the API and its SuperLink) and three partner hosts (each node with its own
SuperNode) talk only across a bridge, over TLS, with SuperNode authentication on. One federation
serves every test of this module (start-up is the expensive part); each fault leaves it whole.

- a churn job runs to ``finished``; a capture on the coordinator's interface holds no member
  identifier (a plaintext probe proves the capture would have seen one);
- a corrupted TLS record and a replayed TLS session are refused by the SuperLink;
- a SuperNode whose clock runs minutes ahead is refused, minutes behind is admitted (Flower's
  signed-timestamp window), which the deployment guide documents.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit import AuditLog
from loyalfed.demo.job_policies import training_policy_document
from loyalfed.demo.loopback_federation import PartnerSeat
from participant_node.data import load_partner
from policies.purpose import Purpose
from tests.platform.namespace_federation import COORDINATOR, NamespaceFederation
from tests.platform.network_namespaces import NamespaceNetwork, unavailable_reason
from tests.platform.packet_capture import PacketCapture, TcpSegment
from tests.platform.tls_wire import TlsExchange, replay

pytestmark = pytest.mark.slow

NODES = ("freshmart-east", "freshmart-north", "freshmart-south")
JOB_DONE = {"finished", "failed", "stopped"}


@pytest.fixture(scope="module")
def network() -> Iterator[NamespaceNetwork]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"the separate-hosts harness needs network namespaces: {reason}")
    with NamespaceNetwork([COORDINATOR, *NODES]) as network:
        yield network


@pytest.fixture(scope="module")
def federation(
    network: NamespaceNetwork, tmp_path_factory: pytest.TempPathFactory, cj_federation: Path
) -> Iterator[NamespaceFederation]:
    root = tmp_path_factory.mktemp("hosts")
    seats = []
    for partner in NODES:
        shutil.copytree(cj_federation / partner, root / "data" / partner)
        seats.append(PartnerSeat(partner, root / "data" / partner))
    federation = NamespaceFederation(root, seats, network)
    try:
        federation.start(timeout_s=300)
        yield federation
    finally:
        federation.stop()


@pytest.fixture(scope="module")
def policy(federation: NamespaceFederation) -> dict[str, Any]:
    drafted = federation.draft_policy(training_policy_document(Purpose.CHURN_MODEL, NODES))
    for partner in NODES:
        federation.decide(partner, drafted)
    return drafted


def _spec(policy: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "task": "churn",
        "epsilon": 3.0,
        "delta": 1e-5,
        "rounds": 1,
        "local_steps": 5,
        "min_nodes": 3,
        "round_timeout_s": 120.0,
        "policy_id": policy["policy_id"],
        "policy_version": policy["version"],
        "policy_hash": policy["hash"],
        **overrides,
    }


def _logs(federation: NamespaceFederation) -> str:
    return "\n".join(f"== {name}\n{federation.log_tail(name)}" for name in federation.processes)


def _node_events(federation: NamespaceFederation, partner: str, job_id: str) -> list[dict[str, Any]]:
    with AuditLog.open(federation.root / "nodes" / partner / "audit.sqlite") as log:
        return [
            {"type": e.event_type.value, **dict(e.details)}
            for _seq, e in log.iter_events()
            if e.job_id == job_id
        ]


def _member_identifiers(data_dir: Path) -> set[str]:
    members = load_partner(data_dir).members
    columns = [c for c in ("member_id", "phone", "email") if c in members.columns]
    return {str(v) for c in columns for v in members[c].dropna()}


def _printable_runs(segments: list[TcpSegment], shortest: int) -> bytes:
    """Every run of printable ASCII at least ``shortest`` long: where an identifier in clear would sit."""
    pattern = re.compile(rb"[\x20-\x7e]{%d,}" % shortest)
    return b"\n".join(m.group() for s in segments for m in pattern.finditer(s.payload))


def test_a_churn_job_finishes_across_four_hosts_and_no_member_identifier_crosses_the_wire(
    federation: NamespaceFederation, network: NamespaceNetwork, policy: dict[str, Any], tmp_path: Path
) -> None:
    coordinator = network.hosts[COORDINATOR]
    capture = PacketCapture(coordinator.outer_link).start()
    identifiers = set().union(*(_member_identifiers(seat.data_dir) for seat in federation.partners))
    probe = sorted(identifiers)[0]
    try:
        job_id = federation.submit(_spec(policy))
        job = federation.wait_job(job_id, states=JOB_DONE, timeout_s=420)
        # The probe: an identifier sent in clear to the coordinator's API port from the workstation.
        with socket.create_connection((coordinator.address, federation.port), timeout=5) as sock:
            sock.sendall(f"GET /?member={probe} HTTP/1.1\r\n\r\n".encode())
    finally:
        capture.stop()
        capture.write_pcap(tmp_path / "coordinator.pcap")
    assert job["state"] == "finished", f"{job}\n{_logs(federation)}"
    assert job["model_id"]
    segments = capture.segments()
    # Every partner host reached the coordinator host over its own link, and said something.
    talkers = {s.source[0] for s in segments if s.destination[0] == coordinator.address and s.payload}
    assert {network.hosts[p].address for p in NODES} <= talkers
    shortest = min(len(i) for i in identifiers)
    hosts = {h.address for h in network.hosts.values()}
    federation_traffic = [s for s in segments if s.source[0] in hosts and s.destination[0] in hosts]
    probe_traffic = [s for s in segments if s.source[0] == network.gateway]
    assert sum(len(s.payload) for s in federation_traffic) > 10_000  # a real job's worth of bytes
    assert probe.encode() in _printable_runs(probe_traffic, shortest)  # the capture sees clear text
    runs = _printable_runs(federation_traffic, shortest)
    leaked = sorted(i for i in identifiers if i.encode() in runs)
    assert leaked == [], f"member identifiers on the coordinator's wire: {leaked[:5]}"


def test_a_corrupted_record_and_a_replayed_session_are_refused_by_the_superlink(
    federation: NamespaceFederation, network: NamespaceNetwork
) -> None:
    address, port = network.hosts[COORDINATOR].address, federation.superlink_port
    probe = secrets.token_hex(8)

    def request(name: str) -> bytes:
        return (
            f"GET /v1/fleet/{name}-{probe} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
        )

    intact = TlsExchange(address, port, federation.ca_file).request(request("intact"))
    assert intact.reply.startswith(b"HTTP/1.1 "), intact  # the control: an intact request is answered
    corrupted = TlsExchange(address, port, federation.ca_file).request(request("corrupt"), flip_byte=True)
    assert corrupted.reply == b"" and corrupted.ended_by, corrupted
    # The whole client side of the intact session, byte for byte, on a new connection.
    answer = replay(address, port, bytes(intact.sent))
    assert b"HTTP/1.1" not in answer
    superlink_log = federation.root / "coordinator" / "superlink" / "superlink.log"

    def served(name: str) -> int:
        return superlink_log.read_text(errors="replace").count(f"{name}-{probe}")

    federation.wait_until(
        "the intact request in the SuperLink's log", lambda: served("intact") == 1, timeout_s=10
    )
    time.sleep(1.0)
    assert served("intact") == 1  # served once: the replay was not
    assert served("corrupt") == 0  # the tampered record never reached the application
    online = {n["partner_id"] for n in federation.api("admin", "GET", "/nodes") if n["online"]}
    assert online == set(NODES)  # and the federation carried on


def test_clock_skew_on_a_node_host_minutes_ahead_is_refused_minutes_behind_is_admitted(
    federation: NamespaceFederation, network: NamespaceNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flower's SuperNode authentication signs a timestamp; the SuperLink admits it from 5 s ahead of
    its own clock to 305 s behind (``SYSTEM_TIME_TOLERANCE``, ``TIMESTAMP_TOLERANCE``). A node host
    whose clock runs minutes fast cannot connect; one minutes slow can. docs/deployment.md says so."""
    from cryptography.hazmat.primitives import serialization
    from flwr.proto.fleet_pb2 import ActivateNodeRequest
    from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor
    from flwr.supercore.primitives.asymmetric import public_key_to_bytes
    from flwr.supernode import node_auth_http_interceptor
    from flwr.supernode.fleet_http_client import FleetHttpClient

    state = federation.root / "nodes" / NODES[2]
    key = serialization.load_ssh_private_key((state / "keys" / "supernode").read_bytes(), password=None)
    address = (state / "superlink.address").read_text(encoding="ascii").strip()
    ca = (state / "tls" / "superlink-ca.crt").read_bytes()
    real_now = node_auth_http_interceptor.now

    def activate(skew_s: float) -> int:
        """The node's own SuperNode client, on a host whose clock is ``skew_s`` off: the HTTP status
        (401: authentication refused; past it, an already active node gets 412 "failed to activate")."""
        monkeypatch.setattr(node_auth_http_interceptor, "now", lambda: real_now() + timedelta(seconds=skew_s))
        interceptors = [
            RuntimeVersionHttpInterceptor(component_name="SuperNode"),
            node_auth_http_interceptor.NodeAuthHttpInterceptor(key, key.public_key()),  # type: ignore[arg-type]
        ]
        request = ActivateNodeRequest(public_key=public_key_to_bytes(key.public_key()), heartbeat_interval=30)
        with FleetHttpClient.from_server_address(address, False, ca, interceptors) as client:
            try:
                client.ActivateNode(request)
            except httpx.HTTPStatusError as err:
                return err.response.status_code
        return 200

    on_time = activate(0)
    assert on_time != 401
    assert activate(-180) == on_time  # three minutes slow: inside the window, authenticated
    assert activate(+180) == 401  # three minutes fast: refused
    assert activate(-420) == 401  # seven minutes slow: too old
