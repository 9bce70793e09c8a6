"""``loyalfed node serve``: the partner's agent, from first start to shutdown.

1. key material in the state folder (``node_keys``), the signed TLS certificate checked;
2. registration with the coordinator (certificate, SuperNode public key) and the dataset summary;
3. the loopback job endpoint for the node's own ClientApp (``local_api``) and the mTLS node API
   (``node_api``), each a uvicorn server in a thread;
4. the supervised SuperNode (``supernode_supervisor``);
5. heartbeats exchanging audit tree heads, each side checking the other's (``audit_heartbeat``),
   until SIGTERM/SIGINT — or until the coordinator shows an inconsistent log; then everything stops.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter

from audit import AuditClient, EventType
from participant_node.data import PartnerData, fingerprint_partner, load_partner
from participant_node.errors import NodeError
from participant_node.matching.tls_scope import NodeTls, node_server_config
from participant_node.service.audit_heartbeat import AuditHeartbeat
from participant_node.service.coordinator_client import CoordinatorClient, Registration
from participant_node.service.coordinator_reports import CoordinatorReports
from participant_node.service.dataset_summary import dataset_summary
from participant_node.service.errors import CoordinatorUnavailableError, NodeSetupError
from participant_node.service.job_gate import JobGate
from participant_node.service.job_service import JobHandler, JobService
from participant_node.service.local_api import create_local_app
from participant_node.service.node_api import create_node_api
from participant_node.service.node_audit import NodeAudit
from participant_node.service.node_keys import NodeKeys, check_certificate, ensure_node_keys, private_folder
from participant_node.service.settings import NodeSettings
from participant_node.supernode_supervisor import SuperNodeLaunch, SuperNodeSupervisor
from policies.jurisdiction import Jurisdiction, jurisdiction_of_region
from policies.signed_approval import load_public_key

__all__ = ["NODE_VERSION", "NodeRuntime", "free_loopback_port", "serve"]

NODE_VERSION = "0.1.0"
_LOG = logging.getLogger(__name__)


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _DataCache:
    """The partner's validated frames, re-read only when the files' fingerprint changes."""

    def __init__(self, partner_dir: Path) -> None:
        self._dir, self._lock = partner_dir, threading.Lock()
        self._cached: tuple[str, PartnerData] | None = None

    def __call__(self) -> PartnerData:
        fingerprint = fingerprint_partner(self._dir)
        with self._lock:
            if self._cached is None or self._cached[0] != fingerprint:
                self._cached = (fingerprint, load_partner(self._dir))
            return self._cached[1]


class NodeRuntime:
    """One node service process; ``run`` blocks until ``stop`` (or a signal) and cleans up."""

    def __init__(
        self, settings: NodeSettings, *, on_ready: Callable[[NodeRuntime], None] | None = None
    ) -> None:
        self.settings = settings
        self.partner_id = settings.partner
        # The officers' keys are read first: a node that cannot check approvals does not start.
        self.officer_keys = [load_public_key(path) for path in settings.officer_public_keys]
        self.keys = self._prepare_keys()
        self.data = _DataCache(settings.partner_dir)
        self._stop = threading.Event()
        self._servers: list[tuple[uvicorn.Server, threading.Thread]] = []
        self._on_ready = on_ready
        self.supervisor: SuperNodeSupervisor | None = None
        self._closers: list[Callable[[], None]] = []
        self.local_port = 0

    def _prepare_keys(self) -> NodeKeys:
        state = private_folder(self.settings.state)
        keys = ensure_node_keys(
            state,
            partner=self.partner_id,
            hosts=[self.settings.advertised_host],
            tls_key=self.settings.tls_key,
        )
        if self.settings.tls_certificate is not None:
            shutil.copyfile(self.settings.tls_certificate, keys.tls_certificate)
        if self.settings.federation_ca is not None:
            shutil.copyfile(self.settings.federation_ca, keys.federation_ca)
        check_certificate(keys)
        return keys

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        client = CoordinatorClient(
            self.settings.coordinator_url,
            token=self.settings.token_value,
            ca_file=self.settings.coordinator_ca,
        )
        audit = self._audit()
        jurisdiction = jurisdiction_of_region(self.settings.region) or Jurisdiction.CN
        reports = CoordinatorReports(
            client,
            partner_id=self.partner_id,
            data=self.data,
            state=self.settings.state,
            jurisdictions=frozenset({jurisdiction}),
        )
        try:
            registration = self._register(client, audit)
            self._serve_local(audit, client)
            self._serve_node_api(audit, client, reports)
            self.supervisor = self._supervise(registration)
            if self._on_ready is not None:
                self._on_ready(self)
            self._heartbeat(client, audit, reports)
        finally:
            self._shutdown()
            reports.close()
            audit.close()
            client.close()

    def _audit(self) -> NodeAudit:
        remote = None
        if self.settings.audit_url is not None:
            if self.settings.audit_public_key is None or self.settings.token_value is None:
                raise NodeSetupError("--audit-url needs --audit-public-key and the node's token")
            key = serialization.load_pem_public_key(self.settings.audit_public_key.read_bytes())
            remote = AuditClient(self.settings.audit_url, self.settings.token_value, key)  # type: ignore[arg-type]
        return NodeAudit(self.settings.state, self.partner_id, remote=remote)

    def _register(self, client: CoordinatorClient, audit: NodeAudit) -> Registration:
        """Register (retrying while the coordinator is unreachable; a refusal ends the node)."""
        delay = 1.0
        while True:
            try:
                registration = self._register_once(client)
                break
            except CoordinatorUnavailableError as err:
                # A refusal (4xx) is final; an unreachable or failing (5xx) coordinator is retried.
                if (err.status is not None and err.status < 500) or self._stop.is_set():
                    raise
                _LOG.warning("%s; retrying in %.0f s", err, delay)
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, 30.0)
        client.register_dataset(self.partner_id, self.partner_id, dataset_summary(self.data()))
        audit.safe_record(EventType.NODE_REGISTERED, details={"tables": len(dataset_summary(self.data()))})
        return registration

    def _register_once(self, client: CoordinatorClient) -> Registration:
        registration = client.register(
            partner_id=self.partner_id,
            version=NODE_VERSION,
            api_url=f"https://{self.settings.advertised_host}:{self.settings.port}",
            tls_certificate_pem=self.keys.tls_certificate.read_text(encoding="ascii"),
            supernode_public_key_pem=self.keys.supernode_public_key_pem(),
        )
        self.keys.superlink_ca.write_text(registration.superlink_root_certificate_pem, encoding="ascii")
        (self.settings.state / "superlink.address").write_text(
            registration.superlink_address, encoding="ascii"
        )
        return registration

    def _job_service(self, audit: NodeAudit, client: CoordinatorClient) -> JobService:
        gate = JobGate(
            partner_id=self.partner_id,
            partner_dir=self.settings.partner_dir,
            state=self.settings.state,
            officer_keys=self.officer_keys,
            policy_source=client.policy_version,
            yearly_cap=self.settings.yearly_epsilon_cap,
            region=self.settings.region,
        )
        return JobService(gate, audit, self._job_handler())

    def _job_handler(self) -> JobHandler:
        # The job engine's node side, imported here: it brings torch and Opacus into this warm
        # process, never into the SuperNode's per-message ClientApp processes.
        from participant_node.training.job_handler import NodeContext, handle

        node = NodeContext(
            partner_dir=self.settings.partner_dir, partner_id=self.partner_id, state_dir=self.settings.state
        )
        return lambda message: handle(message, node)

    def _serve_local(self, audit: NodeAudit, client: CoordinatorClient) -> None:
        # The training stage of a SecAgg+ round arrives as a legacy FitIns (the SuperNode's ClientApp
        # runs secaggplus_mod); imported here, with the job engine, in this warm process only.
        from participant_node.training.secure_client_app import legacy_fit_serving

        service = self._job_service(audit, client)
        self.local_port = free_loopback_port()
        app = create_local_app(legacy_fit_serving(service.serve), self.keys.local_secret_value())
        self._start_server(uvicorn.Config(app, host="127.0.0.1", port=self.local_port, log_level="warning"))

    def _points_routers(self, client: CoordinatorClient) -> list[APIRouter]:
        """The points interchange router, when the node takes part in it (its service starts here);
        settlement totals go to the coordinator with the node's own credential."""
        if self.settings.points_settings is None:
            return []
        from participant_node.points.api import create_points_router
        from participant_node.points.node_settings import load_settings
        from participant_node.points.service import PointsService

        points = PointsService(
            load_settings(self.settings.points_settings), report_totals=client.report_settlement
        )
        points.start()
        self._closers.append(points.close)
        return [create_points_router(points)]

    def _serve_node_api(
        self, audit: NodeAudit, client: CoordinatorClient, reports: CoordinatorReports
    ) -> None:
        app = create_node_api(
            partner_id=self.partner_id,
            data=self.data,
            matching_secret=self.keys.matching_secret.read_bytes(),
            state=self.settings.state,
            audit=audit,
            region=self.settings.region,
            version=NODE_VERSION,
            routers=self._points_routers(client),
            report_run=reports.psi_run,
        )
        tls = NodeTls(
            certfile=self.keys.tls_certificate, keyfile=self.keys.tls_key, ca=self.keys.federation_ca
        )
        config = node_server_config(
            app, tls=tls, host=self.settings.host, port=self.settings.port, log_level="warning"
        )
        self._start_server(config)

    def _start_server(self, config: uvicorn.Config) -> None:
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{config.port}", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise NodeSetupError(f"cannot listen on {config.host}:{config.port}")
            time.sleep(0.05)
        self._servers.append((server, thread))

    def _supervise(self, registration: Registration) -> SuperNodeSupervisor:
        launch = SuperNodeLaunch(
            superlink_address=registration.superlink_address,
            root_certificate=self.keys.superlink_ca,
            auth_private_key=self.keys.supernode_key,
            node_config={
                "partner-id": self.partner_id,
                "local-url": f"http://127.0.0.1:{self.local_port}",
                "local-secret-file": str(self.keys.local_secret),
            },
            runtime_port=free_loopback_port(),
            log_file=self.settings.state / "logs" / "supernode.log",
            approved_apps=frozenset(self.settings.approved_apps),
        )
        supervisor = SuperNodeSupervisor(launch)
        supervisor.start()
        return supervisor

    def _heartbeat(self, client: CoordinatorClient, audit: NodeAudit, reports: CoordinatorReports) -> None:
        """Heartbeat, then send the reports that changed, until stopped; a coordinator whose audit
        log is inconsistent stops the node."""
        beats = AuditHeartbeat(
            client,
            audit,
            state=self.settings.state,
            partner_id=self.partner_id,
            version=NODE_VERSION,
            spent=self._spent_report,
        )
        while True:
            try:
                beats.beat()
            except CoordinatorUnavailableError as err:
                _LOG.warning("heartbeat failed: %s", err)
            try:
                reports.send()
            except (CoordinatorUnavailableError, NodeError) as err:
                # A report that cannot be made now (coordinator away, data being replaced) is
                # made on a later heartbeat; it never stops the node.
                _LOG.warning("reports to the coordinator not sent: %s", err)
            if self._stop.wait(self.settings.heartbeat_interval_s):
                return

    def _spent_report(self, job_id: str, purpose: str) -> dict[str, Any]:
        """This node's accountant's figure for an ended job (what the coordinator settles from)."""
        # The accountant (Opacus' RDP analysis) is imported here, in this warm process only.
        from participant_node.training.job_spend import job_spend
        from participant_node.training.privacy_accountant import NodePrivacyAccountant

        accountant = NodePrivacyAccountant(self.settings.state / "privacy_accountant.json")
        spent = job_spend(
            accountant, partner_id=self.partner_id, job_id=job_id, purpose=purpose, default_delta=0.0
        )
        return {"job_id": job_id, "epsilon": spent.epsilon, "delta": spent.delta, "steps": spent.steps}

    def _shutdown(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        for server, _thread in self._servers:
            server.should_exit = True
        for _server, thread in self._servers:
            thread.join(timeout=10)
        for close in self._closers:
            close()


def serve(settings: NodeSettings) -> None:
    """Run a node until SIGTERM or SIGINT (main thread only); setup problems raise ``ServiceError``."""
    runtime = NodeRuntime(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runtime.stop())
    runtime.run()
