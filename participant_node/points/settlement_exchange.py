"""Exchanging and reconciling signed settlement statements between two nodes.

The initiator computes its statement for the period, signs it and sends it; the partner verifies
the signature against the initiator's client certificate, computes its own statement from its own
ledger, compares, signs and answers with it; the initiator verifies and compares too. Both keep
both statements with the outcome, and each records a ``points.settled`` lineage event (reconciled
or mismatch, with the statement's hash); the coordinator is sent the totals only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from audit.lineage_event import EventType
from participant_node.points.agreement_book import AgreementBook
from participant_node.points.audit_trail import record_event
from participant_node.points.errors import PeerError, PointsError
from participant_node.points.ledger import Ledger
from participant_node.points.peer_client import PeerClient
from participant_node.points.settlement import (
    Statement,
    compute_statement,
    coordinator_totals,
    sign_statement,
    verify_statement,
)
from participant_node.points.store_schema import TABLES
from participant_node.points.wire import SignedStatement

__all__ = ["SettlementExchange"]

_STATEMENTS = TABLES["points_statements"]


class SettlementExchange:
    def __init__(
        self, partner: str, ledger: Ledger, book: AgreementBook, key: Callable[[], ec.EllipticCurvePrivateKey]
    ) -> None:
        self.partner, self.ledger, self.book, self._key = partner, ledger, book, key

    def _statement(
        self, peer: str, start: datetime, end: datetime, agreement_id: str | None = None
    ) -> Statement:
        agreement = self.book.by_id(agreement_id) if agreement_id else self.book.latest_with(peer)
        if peer not in agreement.partners:
            raise PointsError(f"agreement {agreement.agreement_id} is not with {peer}")
        with self.ledger.reading() as conn:
            return compute_statement(conn, agreement, issuer=self.partner, start=start, end=end)

    def _signed(self, statement: Statement) -> SignedStatement:
        return SignedStatement(
            statement=statement.canonical_json(), signature=sign_statement(statement, self._key())
        )

    def settle(
        self,
        peer: str,
        client: PeerClient,
        start: datetime,
        end: datetime,
        *,
        coordinator: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Initiator: send our statement, check theirs, record the outcome; returns the summary."""
        ours = self._statement(peer, start, end)
        answer, certificate = client.settle_with_certificate(self._signed(ours))
        theirs = verify_statement(answer.statement, answer.signature, certificate)
        if theirs.issuer != peer:
            raise PointsError(f"the statement that came back was issued by {theirs.issuer}, not {peer}")
        if (theirs.agreement_id, theirs.period_start, theirs.period_end) != (
            ours.agreement_id,
            ours.period_start,
            ours.period_end,
        ):  # an answer to another settlement (late or repeated): not a disagreement, ask again
            raise PeerError(f"{peer} answered another message (a statement for another period)")
        differences = ours.differences(theirs)
        self._record(peer, ours, theirs, differences)
        totals = coordinator_totals(ours, reconciled=not differences)
        coordinator(totals)
        return {
            "statement": ours.model_dump(mode="json"),
            "reconciled": not differences,
            "differences": differences,
            "coordinator_totals": totals,
        }

    def answer(self, peer: str, signed: SignedStatement, certificate: bytes | None) -> SignedStatement:
        """Responder: verify the peer's statement, compute ours for the same period, compare, answer."""
        theirs = verify_statement(signed.statement, signed.signature, certificate)
        if theirs.issuer != peer:
            raise PointsError("a statement must be issued by the partner that sends it")
        ours = self._statement(peer, theirs.period_start, theirs.period_end, theirs.agreement_id)
        self._record(peer, ours, theirs, ours.differences(theirs))
        return self._signed(ours)

    def _record(self, peer: str, ours: Statement, theirs: Statement, differences: list[str]) -> None:
        status = "reconciled" if not differences else "mismatch"
        statement_id = f"{ours.agreement_id}:{ours.period_start.isoformat()}:{ours.period_end.isoformat()}"
        with self.ledger.transaction() as tx:
            tx.conn.execute(_STATEMENTS.delete().where(_STATEMENTS.c.statement_id == statement_id))
            tx.conn.execute(
                _STATEMENTS.insert(),
                [
                    {
                        "statement_id": statement_id,
                        "body": ours.canonical_json(),
                        "peer_body": theirs.canonical_json(),
                        "status": status,
                        "created_at_us": tx.now_us,
                    }
                ],
            )
            moved = sum(d.transfers for d in ours.directions)
            record_event(
                tx,
                EventType.POINTS_SETTLED,
                partner=self.partner,
                peer=peer,
                at_us=tx.now_us,
                details={
                    "reconciled": status,
                    "transfers": moved,
                    "net_amount": float(ours.net_amount),
                    "differences": len(differences),
                },
                artefacts=[("settlement statement", ours.digest()), ("partner statement", theirs.digest())],
            )

    def statements(self) -> list[dict[str, Any]]:
        with self.ledger.reading() as conn:
            rows = conn.execute(_STATEMENTS.select().order_by(_STATEMENTS.c.created_at_us)).all()
        return [{"statement_id": r.statement_id, "status": r.status} for r in rows]
