"""A node's reports beside its heartbeat, sent over real HTTPS to a real coordinator (uvicorn, TLS
from the federation CA, SQLite store) with the node's own credential.

The node serves an erasure and an access request on its own data; its next report carries both
(random ids, dates, status) and its coarsened consent counts, and a PSI run's summary from the
outbox; the coordinator stores them and shows them to the partner's officer. Nothing it stores
holds a member id or phone number. A repeated report adds nothing; an erasure changes the counts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from node_service_fixtures import write_consenting_partner

from coordinator.service import CoordinatorSettings, create_app
from coordinator.superlink_supervisor import free_port
from participant_node.consent.subject_rights import erase_member, export_member
from participant_node.data import load_partner
from participant_node.matching.run_record import MatchingRunRecord
from participant_node.service import coordinator_reports
from participant_node.service.coordinator_client import CoordinatorClient
from participant_node.service.coordinator_reports import OUTBOX_FILE, CoordinatorReports
from pki.certificate_authority import create_federation_ca, sign_request
from pki.certificate_request import CertificateRole, build_request
from pki.key_files import write_private_key
from policies.jurisdiction import Jurisdiction
from tests.coordinator.service.coordinator_federation import Federation, populate

NORTH = "freshmart-north"  # the federation's first partner (coordinator_federation.PARTNERS)


@dataclass
class Coordinator:
    url: str
    ca: Path
    state: Path
    federation: Federation


def _tls(folder: Path) -> tuple[Path, Path, Path]:
    ca = create_federation_ca(folder / "ca")
    key, request = build_request(CertificateRole.COORDINATOR, hosts=["127.0.0.1"])
    pem = sign_request(ca, request.public_bytes(serialization.Encoding.PEM), role=CertificateRole.COORDINATOR)
    (folder / "api.pem").write_bytes(pem)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_key(folder / "api.key", private)
    return folder / "ca" / "ca.crt", folder / "api.pem", folder / "api.key"


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[Coordinator]:
    ca, cert, key = _tls(tmp_path / "tls")
    state, port = tmp_path / "coordinator", free_port()
    app = create_app(CoordinatorSettings(state_dir=state, superlink=False))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ssl_certfile=str(cert), ssl_keyfile=str(key)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the coordinator did not start"
        time.sleep(0.05)
    url = f"https://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, verify=str(ca), timeout=30)
    try:
        yield Coordinator(url, ca, state, populate(client, (state / "admin.token").read_text().strip()))
    finally:
        client.close()
        server.should_exit = True
        thread.join(timeout=15)


def _psi_record(at: datetime) -> MatchingRunRecord:
    return MatchingRunRecord(
        session_id="s-0001",
        role="responder",
        partner=NORTH,
        peer="freshmart-south",
        purpose="marketing.cross_brand_matching",
        mode="cardinality",
        own_set_size=30,
        peer_set_size=25,
        result_cardinality=12,
        consent_snapshot_hash="ab" * 32,
        at=at,
        peer_authentication="certificate",
    )


def test_reports_reach_the_coordinator_without_a_member(
    coordinator: Coordinator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coordinator_reports, "REQUESTS_PER_REPORT", 1)  # the requests go in parts
    partner = write_consenting_partner(tmp_path / NORTH, members=40, consenting=30)
    received = datetime(2026, 3, 1, 9, 0)
    erase_member(partner, "M-0003", received_at=received, jurisdictions=frozenset({Jurisdiction.EU}))
    export_member(partner, "M-0005", jurisdictions=frozenset({Jurisdiction.EU}))
    client = CoordinatorClient(
        coordinator.url, token=coordinator.federation.tokens[f"node-{NORTH}"], ca_file=coordinator.ca
    )
    (tmp_path / "node-state").mkdir()
    reports = CoordinatorReports(
        client,
        partner_id=NORTH,
        data=lambda: load_partner(partner),
        state=tmp_path / "node-state",
        jurisdictions=frozenset({Jurisdiction.EU}),
    )
    reports.psi_run(_psi_record(datetime.now(UTC).replace(tzinfo=None)))  # the service's clock
    try:
        reports.send()
        federation = coordinator.federation
        seen = federation.call(f"officer-{NORTH}", "GET", "/subject-requests").json()
        by_kind = {r["kind"]: r for r in seen}
        erasure, access = by_kind["erasure"], by_kind["access"]
        assert erasure["status"] == "completed" and erasure["request_id"].startswith("erasure-")
        assert erasure["received_at"].startswith("2026-03-01T09:00:00")
        assert erasure["deadline"].startswith("2026-04-01T09:00:00")  # GDPR Art. 12(3): one month
        assert access["status"] == "completed" and not access["overdue"]
        counts = {
            c["purpose"]: c["members"] for c in federation.call("analyst", "GET", "/consent-counts").json()
        }
        assert counts == {  # 29 consenting after the erasure, rounded down to 20; the rest withheld
            "analytics.churn_model": 20,
            "analytics.propensity_model": None,
            "marketing.cross_brand_matching": None,
            "loyalty.points_interchange": None,
        }
        runs = federation.call(f"operator-{NORTH}", "GET", "/psi/runs").json()
        assert [(r["session_id"], r["result_cardinality"]) for r in runs] == [("s-0001", 12)]
        # Sent once: the outbox is empty and a second report adds no audit event.
        reports.send()
        events = federation.call("auditor", "GET", "/audit/events?event_type=dsr.reported").json()
        assert len(events) == 2
        assert federation.call("auditor", "GET", "/audit/events?event_type=psi.run_reported").json()
        stored = b"".join(p.read_bytes() for p in coordinator.state.glob("coordinator.sqlite*"))
        assert b"M-000" not in stored and b"+86138" not in stored
    finally:
        reports.close()
        client.close()
    assert (tmp_path / "node-state" / OUTBOX_FILE).stat().st_mode & 0o077 == 0


def test_a_changed_count_is_sent_and_an_unchanged_one_is_not(
    coordinator: Coordinator, tmp_path: Path
) -> None:
    partner = write_consenting_partner(tmp_path / NORTH, members=60, consenting=55)
    clock = [datetime(2026, 3, 2, 10, tzinfo=UTC)]
    client = CoordinatorClient(
        coordinator.url, token=coordinator.federation.tokens[f"node-{NORTH}"], ca_file=coordinator.ca
    )
    (tmp_path / "state").mkdir()
    reports = CoordinatorReports(
        client,
        partner_id=NORTH,
        data=lambda: load_partner(partner),
        state=tmp_path / "state",
        jurisdictions=frozenset({Jurisdiction.CN}),
        now=lambda: clock[0],
    )
    try:
        reports.send()

        def churn() -> tuple[int, str]:
            (row,) = coordinator.federation.call(
                "analyst", "GET", "/consent-counts?purpose=analytics.churn_model"
            ).json()
            return row["members"], row["reported_at"]

        first = churn()
        assert first[0] == 50
        clock[0] += timedelta(minutes=1)
        reports.send()
        assert churn() == first  # nothing new: not sent again
        erase_member(partner, "M-0001", received_at=clock[0].replace(tzinfo=None))
        for member in ("M-0002", "M-0004", "M-0006", "M-0007", "M-0008"):
            erase_member(partner, member, received_at=clock[0].replace(tzinfo=None))
        clock[0] += timedelta(minutes=1)
        reports.send()
        assert churn()[0] == 40  # 49 consenting now
    finally:
        reports.close()
        client.close()
