"""The platform on four separate hosts (one network namespace each), and the faults a real network has.

A coordinator host (the API and its SuperLink) and three partner hosts (each node with its own
SuperNode) talk only across a bridge, over TLS, with SuperNode authentication on. One federation
serves every test of this module (start-up is the expensive part), and one secure churn job carries
every fault in turn, so the module pays for one job:

- the job runs to ``finished`` under SecAgg+, on a policy whose signed document names the Flower App
  (each node checks the app that brings every step against it), while, in turn, a node host is
  killed mid-round (round 1 closes with the other two), the coordinator host is killed after that
  round and restarted (the job resumes from its checkpoint as a new Flower run, the killed node back
  in it), another node's cable is pulled mid-round and plugged back (round 2 closes with the other
  two), and the coordinator host is killed once more (the resumed run waits for every node, so
  round 3 has all three); no node is charged twice for a round, and the audit log shows both gaps;
- a capture on the coordinator's interface holds no member identifier and no unmasked update: not in
  the ciphertext, and not inside TLS either (the node hosts log their TLS secrets, as an operator
  with Wireshark would, and the capture is decrypted); a plaintext probe and each node's clear
  accounting figures prove the capture and the decryption would have shown them;
- a corrupted TLS record and a replayed TLS session are refused by the SuperLink;
- a SuperNode whose clock runs minutes ahead is refused, minutes behind is admitted (Flower's
  signed-timestamp window), which the deployment guide documents.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from audit import AuditLog
from loyalfed.demo.job_policies import training_policy_document
from loyalfed.demo.loopback_federation import PartnerSeat
from loyalfed.flower_app import flower_app_hash
from participant_node.data import load_partner
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from participant_node.training.round_replies import RoundReplies
from policies.purpose import Purpose
from tests.platform.namespace_federation import COORDINATOR, NamespaceFederation
from tests.platform.network_namespaces import NamespaceNetwork, unavailable_reason
from tests.platform.packet_capture import PacketCapture
from tests.platform.tls_keylog import client_plaintexts, keylog_environment
from tests.platform.tls_wire import TlsExchange, replay
from tests.platform.wire_contents import printable_runs, released_update_windows, update_windows

# The bound catches a hang, not slowness: start-up and one job of a whole federation, on a shared
# machine whose load stretches every round timeout (NamespaceFederation.round_timeout_s).
pytestmark = [pytest.mark.slow(seconds=480), pytest.mark.timeout(2400)]

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
    # Every process logs its TLS secrets (tests.platform.tls_keylog): the capture can be read inside TLS.
    federation.env = keylog_environment(root / "keylog", federation.env)
    try:
        federation.start(timeout_s=300)
        yield federation
    finally:
        federation.stop()


@pytest.fixture(scope="module")
def policy(federation: NamespaceFederation) -> dict[str, Any]:
    # The officers sign the policy with the shipped app's hash in it: each node then admits a job's
    # steps only from that app (the job finishing proves each node was told, and agreed).
    document = training_policy_document(Purpose.CHURN_MODEL, NODES, flower_apps=[flower_app_hash()])
    drafted = federation.draft_policy(document)
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


def _rounds_served(federation: NamespaceFederation, partner: str, job_id: str) -> list[int]:
    """The rounds ``partner``'s node admitted a training step for, once per admission."""
    return [int(e["round"]) for e in _node_events(federation, partner, job_id) if e.get("step") == "train"]


def _answered(federation: NamespaceFederation, job_id: str) -> dict[int, int]:
    return {r["round"]: r["nodes_answered"] for r in federation.job(job_id)["rounds"]}


def _released(federation: NamespaceFederation, partner: str, job_id: str) -> list[tuple[int, Any, Any]]:
    return RoundReplies(federation.root / "nodes" / partner / "round_replies").released(job_id)


def _steps_charged(federation: NamespaceFederation, partner: str, job_id: str) -> int:
    accountant = NodePrivacyAccountant(federation.root / "nodes" / partner / "privacy_accountant.json")
    return sum(
        e.steps for e in accountant.entries(dataset=partner, purpose=Purpose.CHURN_MODEL, job_id=job_id)
    )


def _resumptions(federation: NamespaceFederation, job_id: str) -> list[dict[str, Any]]:
    with AuditLog.open(federation.root / "coordinator" / "audit.sqlite") as log:
        return [
            dict(e.details)
            for _seq, e in log.iter_events()
            if e.job_id == job_id
            and e.event_type.value == "job.started"
            and e.details.get("state") == "resumed"
        ]


def test_a_secure_churn_job_on_four_hosts_survives_a_node_crash_a_coordinator_crash_and_a_pulled_cable(
    federation: NamespaceFederation, network: NamespaceNetwork, policy: dict[str, Any], tmp_path: Path
) -> None:
    crashed, cut = NODES[0], NODES[1]
    # A round waits this long for a live node; the faults close their rounds in seconds (Flower
    # answers for a node that stopped heartbeating), so it only bounds a hang. Each wait below is
    # a number of such rounds (describe, feature moments, the SecAgg+ stages, evaluation).
    timeout = federation.round_timeout_s()
    spec = _spec(policy, rounds=3, min_nodes=2, secure_agg=True, round_timeout_s=timeout)
    coordinator = network.hosts[COORDINATOR]
    capture = PacketCapture(coordinator.outer_link).start()
    identifiers = set().union(*(_member_identifiers(seat.data_dir) for seat in federation.partners))
    probe = sorted(identifiers)[0]
    try:
        job_id = federation.submit(spec)
        # Round 1: one node's host dies after it admitted its training step, past SecAgg+'s key and
        # share exchange (the server rebuilds its masks from the others' shares).
        federation.wait_until(
            f"{crashed} training round 1",
            lambda: 1 in _rounds_served(federation, crashed, job_id),
            timeout_s=6 * timeout,
            every_s=0.2,
        )
        federation.crash(crashed)
        federation.wait_until(
            "round 1 closing", lambda: 1 in _answered(federation, job_id), timeout_s=2 * timeout
        )
        # Then the coordinator host dies with its SuperLink and ServerApp; both hosts come back.
        crash_times = [_crash_and_restart_coordinator(federation, timeout)]
        federation.restart(crashed, timeout_s=timeout)
        # Round 2, in the resumed run (it waits for every node): the other node's cable is pulled
        # while it trains, and plugged back once the round closed without it.
        before = _rounds_served(federation, cut, job_id).count(2)
        federation.wait_until(
            f"{cut} training round 2 in the resumed run",
            lambda: _rounds_served(federation, cut, job_id).count(2) > before,
            timeout_s=6 * timeout,
            every_s=0.1,
        )
        network.cut(cut)
        try:
            federation.wait_until(
                "round 2 closing", lambda: 2 in _answered(federation, job_id), timeout_s=3 * timeout
            )
        finally:
            network.restore(cut)
        # The coordinator dies once more: its second resumption waits until the cut node's SuperNode
        # is back on its own (Flower retries its connection, up to 20 s apart), so round 3 has all three.
        crash_times.append(_crash_and_restart_coordinator(federation, timeout))
        job = federation.wait_job(job_id, states=JOB_DONE, timeout_s=6 * timeout)
        # The probe: an identifier sent in clear to the coordinator's API port from the workstation.
        with socket.create_connection((coordinator.address, federation.port), timeout=5) as sock:
            sock.sendall(f"GET /?member={probe} HTTP/1.1\r\n\r\n".encode())
            # The server's answer (a TLS alert or a close) shows the probe crossed the wire.
            with contextlib.suppress(OSError):
                sock.recv(64)
    finally:
        capture.stop()
        capture.write_pcap(tmp_path / "coordinator.pcap")
    assert job["state"] == "finished", f"{job}\n{_logs(federation)}"
    assert job["model_id"]
    # Each fault's round closed with the other two; both faulty nodes were back by the last round.
    assert _answered(federation, job_id) == {1: 2, 2: 2, 3: 3}, _answered(federation, job_id)
    assert max(_rounds_served(federation, crashed, job_id)) > 1
    assert max(_rounds_served(federation, cut, job_id)) > 2
    _assert_resumed_without_charging_twice(federation, job_id, spec, crashed, crash_times)
    _assert_the_wire_holds_no_identifier_and_no_unmasked_update(
        federation, network, capture, job_id, identifiers, probe
    )


def _crash_and_restart_coordinator(federation: NamespaceFederation, timeout: float) -> float:
    """The coordinator host dies (API, SuperLink and ServerApp together) and comes back: when it died."""
    federation.crash(COORDINATOR)
    crashed_at = time.time()
    federation.restart(COORDINATOR, timeout_s=timeout)
    return crashed_at


def _assert_resumed_without_charging_twice(
    federation: NamespaceFederation,
    job_id: str,
    spec: dict[str, Any],
    crashed: str,
    crash_times: list[float],
) -> None:
    logs = [line["message"] for line in federation.api("analyst", "GET", f"/jobs/{job_id}/logs")]
    for server_round in (1, 2):
        assert any(f"resuming after round {server_round}" in line for line in logs), logs
    # Each node released one reply per round it trained (a round asked again after a crash got the
    # kept reply, not a second noisy update), and its accountant charged exactly those.
    for partner in NODES:
        released = [r for r, _model, _reply in _released(federation, partner, job_id)]
        assert len(released) == len(set(released)), (partner, released)
        charged = _steps_charged(federation, partner, job_id)
        extra = charged - len(released) * spec["local_steps"]
        # The killed node may have been charged for the steps it took before its host died.
        allowed = {0, spec["local_steps"]} if partner == crashed else {0}
        assert extra in allowed, (partner, charged, released)
    # The coordinator's audit log shows each gap: the run that was lost, and when the job resumed.
    resumed = _resumptions(federation, job_id)
    assert [gap["resumed_after_round"] for gap in resumed] == [1, 2], resumed
    for gap, crashed_at in zip(resumed, crash_times, strict=True):
        assert gap["ended_status"].startswith("finished")
        assert gap["resumed_at_unix"] > crashed_at and gap["gap_seconds"] > 0


def _assert_the_wire_holds_no_identifier_and_no_unmasked_update(
    federation: NamespaceFederation,
    network: NamespaceNetwork,
    capture: PacketCapture,
    job_id: str,
    identifiers: set[str],
    probe: str,
) -> None:
    coordinator = network.hosts[COORDINATOR]
    segments = capture.segments()
    # Every partner host reached the coordinator host over its own link, and said something.
    talkers = {s.source[0] for s in segments if s.destination[0] == coordinator.address and s.payload}
    assert {network.hosts[p].address for p in NODES} <= talkers
    shortest = min(len(i) for i in identifiers)
    hosts = {h.address for h in network.hosts.values()}
    federation_traffic = [s.payload for s in segments if s.source[0] in hosts and s.destination[0] in hosts]
    probe_traffic = [s.payload for s in segments if s.source[0] == network.gateway]
    assert sum(len(p) for p in federation_traffic) > 10_000  # a real job's worth of bytes
    assert probe.encode() in printable_runs(probe_traffic, shortest)  # the capture sees clear text
    # Inside TLS: what each node host sent the coordinator host, decrypted with the hosts' key log.
    uploads = client_plaintexts(capture.connections(), Path(federation.env["SSLKEYLOGFILE"]))
    sent: dict[str, bytes] = {}
    for partner in NODES:
        address = network.hosts[partner].address
        to_superlink = [
            plain for (client, server), plain in uploads.items()
            if client[0] == address and server == (coordinator.address, federation.superlink_port)
        ]  # fmt: skip
        sent[partner] = b"".join(plain for (client, _s), plain in uploads.items() if client[0] == address)
        # The decryption reaches the node's replies: its SuperNode's pushes, with its clear figures.
        assert any(b"/v1/fleet/push-messages" in plain for plain in to_superlink), partner
        assert any(partner.encode() in plain for plain in to_superlink), partner
    # The printable runs of every segment and every decrypted upload, searched once per identifier
    # (runs are joined by a non-printable byte, so no identifier spans two); searching each of the
    # ~10^4 segments for each of the ~5,500 identifiers took a minute of CPU.
    runs = printable_runs([*federation_traffic, *sent.values()], shortest)
    leaked = sorted(i for i in identifiers if i.encode() in runs)
    assert leaked == [], f"member identifiers on the coordinator's wire: {leaked[:5]}"
    # No node's trained model, nor its update, left its host unmasked, in any round it answered.
    for partner in NODES:
        released = _released(federation, partner, job_id)
        assert released, partner
        for server_round, model, reply in released:
            windows = released_update_windows(model, reply)
            assert windows, (partner, server_round)
            seen = [w for w in windows for wire in sent.values() if w in wire]
            assert seen == [], f"{partner}'s round {server_round} update in clear inside TLS"


def test_a_plain_update_would_show_in_the_bytes_a_supernode_pushes() -> None:
    """The control for the check above: a reply carrying a model in clear holds its windows, as the
    SuperNode pushes them (Flower 1.41 pushes a message's records as their nested objects' deflated
    bytes: the ArrayRecord, its Arrays, their chunks)."""
    rng = np.random.default_rng(7)
    model = ArrayRecord({"linear.weight": Array(rng.normal(size=(1, 24)).astype(np.float32))})
    pushed = b"".join(o.deflate() for o in get_all_nested_objects(RecordDict({"arrays": model})).values())
    windows = update_windows(model.to_numpy_ndarrays())
    assert windows and all(w in pushed for w in windows)


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
