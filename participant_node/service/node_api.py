"""The node's mTLS API for other nodes: the PSI responder (``/psi/v1``), points (``/points/v1``), health.

Served with ``matching.tls_scope.node_server_config`` (client certificates required and handed to
the app), so every route knows which partner is calling from its verified certificate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, FastAPI

from audit import EventType
from participant_node.data import PartnerData
from participant_node.matching.config import MatchingConfig
from participant_node.matching.member_set import MatchingSet, gated_matching_set
from participant_node.matching.probing_guard import ProbingGuard
from participant_node.matching.run_record import MatchingRunRecord
from participant_node.matching.service import MatchingService, create_matching_app
from participant_node.matching.session_ledger import SessionLedger
from participant_node.service.node_audit import NodeAudit
from policies.purpose import Purpose

__all__ = ["create_node_api"]


def _matching_service(
    partner_id: str,
    data: Callable[[], PartnerData],
    secret: bytes,
    state: Path,
    audit: NodeAudit,
    region: str,
    report_run: Callable[[MatchingRunRecord], None] | None,
) -> MatchingService:
    config = MatchingConfig(partner_id=partner_id, default_region=region)

    def consented_set(purpose: Purpose, peer: str) -> MatchingSet:
        return gated_matching_set(
            data(),
            purpose=purpose,
            recipient=peer,
            at=datetime.now(UTC).replace(tzinfo=None),
            id_column=config.id_column,
            secret=secret,
            default_region=region,
        )

    def on_run(record: MatchingRunRecord) -> None:
        fields = record.lineage_fields()
        audit.safe_record(
            EventType.PSI_RUN,
            purpose=fields["purpose"],
            consent_snapshot_hash=fields["consent_snapshot_hash"],
            details=fields["details"],
        )
        if report_run is not None:  # counts and status for the coordinator (``coordinator_reports``)
            report_run(record)

    guard = ProbingGuard(state / "psi_guard.sqlite", config)
    ledger = SessionLedger(state / "psi_sessions.sqlite")  # used session ids survive a restart
    return MatchingService(
        config, set_provider=consented_set, guard=guard, on_run=on_run, session_ledger=ledger
    )


def create_node_api(
    *,
    partner_id: str,
    data: Callable[[], PartnerData],
    matching_secret: bytes,
    state: Path,
    audit: NodeAudit,
    region: str,
    version: str,
    routers: Sequence[APIRouter] = (),
    report_run: Callable[[MatchingRunRecord], None] | None = None,
) -> FastAPI:
    """The node's API: PSI sessions, health, and ``routers`` (the points interchange's, when on);
    ``report_run`` is handed each PSI run's record once the run has ended."""
    service = _matching_service(partner_id, data, matching_secret, state, audit, region, report_run)
    app = create_matching_app(service)
    app.title = f"loyalfed node {partner_id}"

    @app.get("/node/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "partner_id": partner_id, "version": version}

    for router in routers:
        app.include_router(router)
    return app
