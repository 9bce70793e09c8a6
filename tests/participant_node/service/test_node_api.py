"""The node's API: health, the PSI routes, and the routers it mounts (the points interchange's)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.testclient import TestClient
from node_service_fixtures import PARTNER, write_consenting_partner

from participant_node.data import load_partner
from participant_node.service.node_api import create_node_api
from participant_node.service.node_audit import NodeAudit


def test_the_node_api_serves_health_psi_and_mounted_routers(tmp_path: Path) -> None:
    data = load_partner(write_consenting_partner(tmp_path / PARTNER))
    points = APIRouter(prefix="/points/v1")

    @points.get("/health")
    def points_health() -> dict[str, str]:
        return {"status": "ok"}

    audit = NodeAudit(tmp_path, PARTNER)
    app = create_node_api(
        partner_id=PARTNER,
        data=lambda: data,
        matching_secret=b"1" * 32,
        state=tmp_path,
        audit=audit,
        region="CN",
        version="0.1.0",
        routers=[points],
    )
    with TestClient(app) as client:
        assert client.get("/node/v1/health").json() == {
            "status": "ok",
            "partner_id": PARTNER,
            "version": "0.1.0",
        }
        assert client.get("/points/v1/health").json() == {"status": "ok"}
        # Without a verified client certificate the PSI responder answers nobody.
        opening = {
            "session_id": "0" * 32,
            "initiator_partner": "careplus",
            "purpose": "marketing.cross_brand_matching",
            "mode": "cardinality",
            "initiator_size": 200,
            "chunk_size": 1024,
        }
        assert client.post("/psi/v1/sessions", json=opening).status_code == 403
    audit.close()
