"""A whole federation on one machine's loopback: a coordinator and one node per partner, each its own
process, with TLS everywhere and SuperNode authentication on — the demo and the end-to-end test.

Every party acts from its own seat, as in a real federation: the federation CA signs requests made
where the keys live (``pki``); the administrator creates organisations and issues tokens; each data
officer makes an Ed25519 key pair and registers only the public half; each node makes its own
SuperNode and TLS keys on first start and is configured with its own officer's public key. The
analyst drafts policies and submits jobs through the coordinator's API; officers sign decisions.
``stop`` ends every process group it started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from participant_node.service.node_keys import ensure_node_keys
from pki import CertificateRole, create_federation_ca, create_key_and_request, sign_request
from policies.approval import ApprovalDecision
from policies.signed_approval import generate_signing_key, public_key_b64, sign_decision, write_key_pair

__all__ = ["FederationError", "LoopbackFederation", "PartnerSeat"]

BIN = Path(sys.executable).parent
_STOP_GRACE_S = 10.0


class FederationError(RuntimeError):
    """A process did not come up, or the coordinator refused a step; names which and why."""


@dataclass(frozen=True)
class PartnerSeat:
    """One partner organisation: its data folder, kind and region."""

    partner_id: str
    data_dir: Path
    kind: str = "store_group"
    region: str = "CN"


def _terminate_with_parent() -> None:
    """In the child before exec: Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (PR_SET_PDEATHSIG = 1)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _descendants(root: int) -> list[int]:
    """Every living descendant of process ``root`` (Linux ``/proc``), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
        except (OSError, IndexError, ValueError):
            continue  # it ended while we looked
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackFederation:
    """Start, drive and stop a loopback federation under ``root``."""

    def __init__(
        self,
        root: Path,
        partners: Sequence[PartnerSeat],
        *,
        flower_app: Path | None = None,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.root, self.partners, self.flower_app, self._say = root, list(partners), flower_app, progress
        self.port, self.superlink_port = free_port(), free_port()
        self.url = f"https://{self.host_of('coordinator')}:{self.port}"
        self.ca_file = root / "ca" / "ca.crt"
        self.tokens: dict[str, str] = {}
        self.officer_keys: dict[str, Path] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}

    # where each party runs: loopback here; a subclass may give each party a host of its own ------
    def host_of(self, party: str) -> str:
        """The address ``party`` (``coordinator`` or a partner id) listens on and is reached at."""
        return "127.0.0.1"

    def placed(self, party: str, command: list[str]) -> list[str]:
        """``command`` as run on ``party``'s host (unchanged: every party shares this machine)."""
        return command

    # processes ---------------------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> None:
        log = (self.root / "logs" / f"{name}.log").open("ab")
        # A session of its own per process: stop() ends the SuperLink/SuperNode children with it.
        # And a SIGTERM when this harness dies without stopping it (killed by a timeout, say): the
        # coordinator and nodes then stop their own SuperLink and SuperNodes as on any SIGTERM.
        self.processes[name] = subprocess.Popen(
            self.placed(name.removeprefix("node-"), command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, **(extra_env or {})},
            start_new_session=True,
            preexec_fn=_terminate_with_parent,
        )

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM every process group (nodes first), SIGKILL what is left after a grace period.

        The SuperLink and each SuperNode run in sessions of their own (their supervisors' choice), so
        a process group does not reach them: every descendant is listed before the first signal
        (an orphan is re-parented and could no longer be found) and killed if it outlived the stop.
        """
        descendants = [pid for process in self.processes.values() for pid in _descendants(process.pid)]
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=_STOP_GRACE_S)
        for process in self.processes.values():
            # The group may hold ClientApp/SuperExec children that outlived their parent.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> LoopbackFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # start-up ----------------------------------------------------------------------------------
    def start(self, *, timeout_s: float = 120.0) -> None:
        """Everything up: CA, coordinator, organisations, tokens, officer keys, nodes online."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        ca = create_federation_ca(self.root / "ca")
        self._start_coordinator(ca, timeout_s)
        self._enrol_parties()
        for seat in self.partners:
            self._start_node(seat, ca)
        self.wait_online([seat.partner_id for seat in self.partners], timeout_s=timeout_s)

    def _start_coordinator(self, ca: Any, timeout_s: float) -> None:
        tls = self.root / "coordinator-tls"
        hosts = list(dict.fromkeys([self.host_of("coordinator"), "127.0.0.1", "localhost"]))
        files = create_key_and_request(tls, CertificateRole.COORDINATOR, hosts=hosts)
        certificate = sign_request(ca, files.request.read_bytes(), role=CertificateRole.COORDINATOR)
        (tls / "coordinator.pem").write_bytes(certificate)
        # The SuperLink serves the same coordinator identity under the same federation CA.
        superlink = tls / "superlink"
        superlink.mkdir(mode=0o700)
        (superlink / "ca.crt").write_bytes(self.ca_file.read_bytes())
        (superlink / "server.pem").write_bytes(certificate)
        key = superlink / "server.key"
        key.touch(mode=0o600)
        key.write_bytes(files.private_key.read_bytes())
        command = [
            str(BIN / "loyalfed"), "coordinator", "serve",
            "--state", str(self.root / "coordinator"), "--port", str(self.port),
            "--host", self.host_of("coordinator"),
            # A fixed SuperLink port: nodes keep the address they registered with across restarts.
            "--superlink-port", str(self.superlink_port),
            "--tls-cert", str(tls / "coordinator.pem"), "--tls-key", str(files.private_key),
            "--tls-ca", str(self.ca_file), "--superlink-certs", str(superlink),
        ]  # fmt: skip
        if self.flower_app is not None:
            command += ["--flower-app", str(self.flower_app)]
        self._say("starting the coordinator (control plane API + supervised SuperLink)")
        self._spawn("coordinator", command)
        self._wait_health(timeout_s)
        self.tokens["admin"] = (self.root / "coordinator" / "admin.token").read_text(encoding="ascii").strip()

    def _wait_health(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.processes["coordinator"].poll() is not None:
                raise FederationError(f"the coordinator exited:\n{self.log_tail('coordinator')}")
            try:
                reply = httpx.get(f"{self.url}/api/v1/health", verify=str(self.ca_file), timeout=2)
                if reply.status_code == 200 and reply.json().get("superlink") == "running":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise FederationError(f"the coordinator did not become healthy:\n{self.log_tail('coordinator')}")

    def api(self, seat: str, method: str, path: str, **kwargs: Any) -> Any:
        """Call ``/api/v1{path}`` as ``seat`` (admin, analyst, officer:P, node:P)."""
        response = httpx.request(
            method,
            f"{self.url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.tokens[seat]}"},
            verify=str(self.ca_file),
            timeout=30,
            **kwargs,
        )
        if response.status_code >= 400:
            raise FederationError(
                f"{seat} {method} {path}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json() if response.content else None

    def _issue(self, seat: str, name: str, role: str, organisation: str) -> None:
        body = {"name": name, "role": role, "organisation": organisation}
        self.tokens[seat] = self.api("admin", "POST", "/tokens", json=body)["token"]

    def _enrol_parties(self) -> None:
        self._say("the administrator creates organisations and issues tokens; officers register keys")
        for seat in self.partners:
            body = {"id": seat.partner_id, "name": seat.partner_id, "kind": seat.kind, "region": seat.region}
            self.api("admin", "POST", "/organisations", json=body)
            self._issue(
                f"officer:{seat.partner_id}", f"officer-{seat.partner_id}", "data_officer", seat.partner_id
            )
            self._issue(f"node:{seat.partner_id}", f"node-{seat.partner_id}", "node", seat.partner_id)
            # The officer's key pair is made on the officer's own machine; only the public half leaves.
            key = generate_signing_key()
            _private, public = write_key_pair(key, self.root / "officers" / seat.partner_id)
            self.officer_keys[seat.partner_id] = self.root / "officers" / seat.partner_id / "officer.key"
            self.api(
                f"officer:{seat.partner_id}",
                "POST",
                "/officers/keys",
                json={"public_key_b64": public_key_b64(key)},
            )
            assert public.exists()
        self._issue("analyst", "analyst", "analyst", self.partners[0].partner_id)

    def _start_node(self, seat: PartnerSeat, ca: Any) -> None:
        state = self.root / "nodes" / seat.partner_id
        host = self.host_of(seat.partner_id)
        keys = ensure_node_keys(state, partner=seat.partner_id, hosts=[host])  # what serve does first
        # The federation CA signs the node's request (it checked out of band who sent it).
        signed = sign_request(
            ca, keys.tls_request.read_bytes(), role=CertificateRole.NODE, partner=seat.partner_id
        )
        keys.tls_certificate.write_bytes(signed)
        keys.federation_ca.write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))
        command = [
            str(BIN / "loyalfed"), "node", "serve",
            "--partner-dir", str(seat.data_dir), "--partner-id", seat.partner_id,
            "--coordinator", self.url, "--coordinator-ca", str(self.ca_file),
            "--officer-public-key", str(self.root / "officers" / seat.partner_id / "officer.pub"),
            "--state", str(state), "--port", str(free_port()), "--region", seat.region, "--host", host,
            "--heartbeat-interval", "2",
        ]  # fmt: skip
        self._say(f"starting node {seat.partner_id} (its own SuperNode, keys and gate)")
        self._spawn(
            f"node-{seat.partner_id}",
            command,
            {"LOYALFED_NODE_TOKEN": self.tokens[f"node:{seat.partner_id}"]},
        )

    def wait_online(self, partners: Sequence[str], *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for partner in partners:
                if self.processes[f"node-{partner}"].poll() is not None:
                    raise FederationError(f"node {partner} exited:\n{self.log_tail(f'node-{partner}')}")
            online = {n["partner_id"] for n in self.api("admin", "GET", "/nodes") if n["online"]}
            if set(partners) <= online:
                return
            time.sleep(0.5)
        missing = sorted(set(partners) - online)
        raise FederationError(
            f"nodes not online after {timeout_s:.0f} s: {missing}\n{self.log_tail(f'node-{missing[0]}')}"
        )

    # the analyst's and the officers' steps -----------------------------------------------------
    def draft_policy(self, document: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = self.api("analyst", "POST", "/policies", json={"document": document})
        return reply

    def decide(
        self, partner: str, policy: dict[str, Any], decision: ApprovalDecision = ApprovalDecision.APPROVED
    ) -> None:
        """``partner``'s officer signs a decision on the policy version with their own key."""
        from policies.signed_approval import load_private_key

        signed = sign_decision(
            load_private_key(self.officer_keys[partner]),
            policy_id=policy["policy_id"],
            policy_version=policy["version"],
            policy_hash=policy["hash"],
            partner_id=partner,
            decision=decision,
        )
        path = f"/policies/{policy['policy_id']}/versions/{policy['version']}/decisions"
        self.api(f"officer:{partner}", "POST", path, json=signed.to_dict())

    def submit(self, spec: dict[str, Any]) -> str:
        return str(self.api("analyst", "POST", "/jobs", json=spec)["job_id"])

    def wait_job(self, job_id: str, *, states: set[str], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.api("analyst", "GET", f"/jobs/{job_id}")
            if job["state"] in states:
                return job
            time.sleep(1.0)
        raise FederationError(f"job {job_id} still {job.get('state')} after {timeout_s:.0f} s")
