"""A job that died with its coordinator is settled from the nodes' own accountants, never guessed.

The coordinator's store is left as a killed service leaves it: the job running, its ε reserved on
both partners, no settlement. The nodes' accountants (the real ``NodePrivacyAccountant`` files)
charged fewer steps than the reservation allowed — one round of two. The service restarts (real
HTTPS on loopback, its real job runner): start-up recovery fails the job and holds both
reservations in full. Each node's real heartbeat client then reports its accountant's figure when
asked; the ledger settles to exactly that figure. The node that stays away keeps its share held,
through later ticks of the runner, until it comes back. SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select

from audit import AuditLog
from coordinator.job_runner import JobRunner
from coordinator.platform.job_runs import begin_run
from coordinator.service import CoordinatorSettings, create_app
from coordinator.service.dependencies import ServiceState
from coordinator.store.tables import BudgetChargeRow, JobRow, NodeRow
from coordinator.superlink_supervisor import free_port
from participant_node.service.audit_heartbeat import AuditHeartbeat
from participant_node.service.coordinator_client import CoordinatorClient
from participant_node.service.node_audit import NodeAudit
from participant_node.training.job_spend import job_spend
from participant_node.training.privacy_accountant import NodePrivacyAccountant
from pki.certificate_authority import create_federation_ca, sign_request
from pki.certificate_request import CertificateRole, build_request
from pki.key_files import write_private_key
from policies.approval import ApprovalDecision
from tests.coordinator.service.coordinator_federation import (
    PARTNERS,
    Federation,
    job_body,
    policy_document,
    populate,
)

PURPOSE = "analytics.churn_model"
RESERVED = 1.0
# One round of the job's two, as each node's accountant recorded it before the service died.
STEPS = {"freshmart-north": 40, "freshmart-south": 25}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> CoordinatorSettings:
    state = tmp_path / "coordinator-state"
    if request.param == "sqlite":
        return CoordinatorSettings(state_dir=state, superlink=False)
    from tests.postgres_server import fresh_database

    url = fresh_database(request.getfixturevalue("postgres_url"))
    return CoordinatorSettings(state_dir=state, superlink=False, database_url=url)


def _tls(folder: Path) -> tuple[Path, Path, Path]:
    ca = create_federation_ca(folder / "ca")
    key, request = build_request(CertificateRole.COORDINATOR, hosts=["127.0.0.1", "localhost"])
    pem = sign_request(ca, request.public_bytes(serialization.Encoding.PEM), role=CertificateRole.COORDINATOR)
    (folder / "api.pem").write_bytes(pem)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_key(folder / "api.key", private)
    return folder / "ca" / "ca.crt", folder / "api.pem", folder / "api.key"


def _running_job_left_by_a_killed_service(settings: CoordinatorSettings) -> tuple[Federation, str]:
    """Everything the first life of the service committed: principals, an approved policy, a job
    queued with ε reserved on both partners, both nodes registered, the job running."""
    with TestClient(create_app(settings)) as client:
        federation = populate(client, (settings.state_dir / "admin.token").read_text().strip())
        version = federation.call("analyst", "POST", "/policies", json={"document": policy_document()}).json()
        for partner in PARTNERS:
            assert federation.decide(partner, version, ApprovalDecision.APPROVED).status_code == 201
        job_id = federation.call("analyst", "POST", "/jobs", json=job_body(epsilon=RESERVED)).json()["job_id"]
        state: ServiceState = client.app.state.coordinator  # type: ignore[attr-defined]
        with state.sessions() as session:
            for partner in PARTNERS:  # as registration leaves them (it needs a SuperLink: not here)
                session.add(
                    NodeRow(
                        partner_id=partner,
                        version="1",
                        api_url=f"https://{partner}.invalid:8443",
                        tls_certificate_pem="-",
                        supernode_public_key_pem="-",
                        registered_at=datetime.now(UTC),
                    )
                )
            session.commit()
            begin_run(session, state.trail, job_id=job_id)
    return federation, job_id


@contextmanager
def _restarted(
    settings: CoordinatorSettings, tls: tuple[Path, Path, Path]
) -> Iterator[tuple[str, ServiceState]]:
    """The service's second life: HTTPS on a free loopback port, its job runner ticking fast."""
    states: list[ServiceState] = []

    def runner(state: ServiceState) -> list[JobRunner]:
        states.append(state)
        return [
            JobRunner(
                state.sessions, state.trail, None, coordinator_url="", coordinator_ca=None, interval_s=0.2
            )
        ]

    port = free_port()
    config = uvicorn.Config(
        create_app(settings, background=runner),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ssl_certfile=str(tls[1]),
        ssl_keyfile=str(tls[2]),
    )
    server = uvicorn.Server(config)
    import threading

    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the restarted coordinator did not start"
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{port}", states[0]
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _charges(state: ServiceState, job_id: str) -> dict[str, tuple[float, str | None]]:
    with state.sessions() as session:
        rows = session.scalars(select(BudgetChargeRow).where(BudgetChargeRow.job_id == job_id))
        return {row.partner_id: (row.epsilon, row.settlement) for row in rows}


def _node(
    partner: str, job_id: str, tmp_path: Path, url: str, ca: Path, token: str, clients: ExitStack
) -> tuple[AuditHeartbeat, float]:
    """A node's heartbeat client and what its own accountant charged to the job (one round).

    Its HTTPS client is closed with ``clients``, before the service stops: the server's TLS shutdown
    of a connection the client kept open would wait for the client's close_notify (asyncio's
    ssl_shutdown_timeout, 30 s) and the service with it."""
    state = tmp_path / f"node-{partner}"
    accountant = NodePrivacyAccountant(state / "privacy_accountant.json")
    accountant.charge(
        dataset=partner,
        purpose=PURPOSE,
        job_id=job_id,
        noise_multiplier=1.3,
        sample_rate=0.02,
        steps=STEPS[partner],
        delta=1e-5,
        epsilon_cap=RESERVED,
    )

    def spent(job: str, purpose: str) -> dict[str, object]:
        figure = job_spend(
            NodePrivacyAccountant(state / "privacy_accountant.json"),
            partner_id=partner,
            job_id=job,
            purpose=purpose,
            default_delta=0.0,
        )
        return {"job_id": job, "epsilon": figure.epsilon, "delta": figure.delta, "steps": figure.steps}

    client = CoordinatorClient(url, token=token, ca_file=ca)
    clients.callback(client.close)
    audit = NodeAudit(state, partner)
    beats = AuditHeartbeat(client, audit, state=state, partner_id=partner, version="1", spent=spent)
    expected = NodePrivacyAccountant(state / "privacy_accountant.json").epsilon(
        dataset=partner, purpose=PURPOSE, delta=1e-5, job_id=job_id
    )
    return beats, expected


def _wait_failed(state: ServiceState, job_id: str) -> JobRow:
    deadline = time.monotonic() + 30
    while True:
        with state.sessions() as session:
            job = session.get(JobRow, job_id)
            assert job is not None
            if job.state == "failed" or time.monotonic() > deadline:
                return job
        time.sleep(0.05)


def test_restart_settles_a_dead_job_from_each_nodes_accountant_and_holds_an_absent_nodes_share(
    settings: CoordinatorSettings, tmp_path: Path
) -> None:
    federation, job_id = _running_job_left_by_a_killed_service(settings)
    tls = _tls(tmp_path / "tls")
    north, south = PARTNERS
    with _restarted(settings, tls) as (url, state), ExitStack() as clients:
        job = _wait_failed(state, job_id)
        assert job.state == "failed" and "died with the coordinator" in (job.reason or "")
        # Start-up recovery guessed nothing: both reservations count in full, held for the nodes.
        assert _charges(state, job_id) == {north: (RESERVED, "held"), south: (RESERVED, "held")}

        north_beats, north_spent = _node(
            north, job_id, tmp_path, url, tls[0], federation.tokens[f"node-{north}"], clients
        )
        south_beats, south_spent = _node(
            south, job_id, tmp_path, url, tls[0], federation.tokens[f"node-{south}"], clients
        )
        assert 0 < south_spent < north_spent < RESERVED  # one round of two: less than reserved
        north_beats.beat()
        assert _charges(state, job_id) == {north: (north_spent, "node_accountant"), south: (RESERVED, "held")}

        # South stays unreachable: later ticks of the runner leave its share held, in full.
        time.sleep(0.5)
        assert _charges(state, job_id)[south] == (RESERVED, "held")
        budgets = _get(url, tls[0], federation.tokens["analyst"], "/budgets")
        assert {(b["partner_id"], b["epsilon_reserved"], b["epsilon_held"]) for b in budgets} == {
            (north, north_spent, 0.0),
            (south, RESERVED, RESERVED),
        }
        south_beats.beat()
        settled = {north: (north_spent, "node_accountant"), south: (south_spent, "node_accountant")}
        assert _charges(state, job_id) == settled
        north_beats.beat()  # nothing is asked any more, and nothing changes
        assert _charges(state, job_id) == settled
        logs = [
            str(line["message"])
            for line in _get(url, tls[0], federation.tokens["analyst"], f"/jobs/{job_id}/logs")
        ]
        assert any("held on freshmart-north, freshmart-south" in line for line in logs)
    with AuditLog.open(settings.state_dir / "audit.sqlite") as log:
        charged = [e for _, e in log.iter_events() if e.event_type.value == "budget.charged"]
    assert {(e.partner, e.epsilon, e.details["settlement"]) for e in charged} == {
        (north, north_spent, "held_reservation"),
        (south, south_spent, "held_reservation"),
    }


def _get(url: str, ca: Path, token: str, path: str) -> list[dict[str, object]]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url + "/api/v1", verify=str(ca), headers=headers) as http:
        reply = http.get(path)
        assert reply.status_code == 200, reply.text
        return list(reply.json())
