"""Settlement statements: each node's net position with a partner per netting period, from its own ledger.

A statement totals, per direction, the interchange transfers the source *posted* in the period (the
source's decision time, which it sends with each post, so both nodes bucket a transfer into the
same period): how many, source points, destination points credited, and the money the source owes
at the agreement's settlement price; the net of both directions says who pays whom. A digest of the
transfer ids lets both sides detect a difference in *which* transfers they count without sending
any id. The nodes exchange statements signed with their node keys (ECDSA P-256 / SHA-256, FIPS
186-5, verified against the partner's certificate from the federation CA) and reconcile: equal
statements settle; any difference is a mismatch, recorded in the audit log. The coordinator gets
the totals only (``coordinator_totals``), never transfers or tokens.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, select

from participant_node.points.errors import PointsError
from participant_node.points.interchange_rows import ROWS, State
from policies.interchange_agreement import InterchangeAgreement

__all__ = [
    "DirectionTotals",
    "Statement",
    "compute_statement",
    "coordinator_totals",
    "sign_statement",
    "verify_statement",
]

STATEMENT_VERSION = 1
_FROZEN = ConfigDict(frozen=True, extra="forbid")


class DirectionTotals(BaseModel):
    model_config = _FROZEN
    source: str
    destination: str
    transfers: int
    points: int
    credited: int
    amount: str  # money, decimal string in the agreement's currency
    transfers_digest: str


class Statement(BaseModel):
    model_config = _FROZEN
    version: int = STATEMENT_VERSION
    agreement_id: str
    agreement_hash: str
    issuer: str
    period_start: datetime
    period_end: datetime
    currency: str
    directions: tuple[DirectionTotals, ...]
    payer: str | None
    payee: str | None
    net_amount: str

    def canonical_json(self) -> str:
        return self.model_dump_json()

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def differences(self, other: Statement) -> list[str]:
        """Fields on which two partners' statements of the same period disagree (issuer aside)."""
        mine, theirs = self.model_dump(exclude={"issuer"}), other.model_dump(exclude={"issuer"})
        return sorted(k for k in mine if mine[k] != theirs[k])


def compute_statement(
    conn: Connection, agreement: InterchangeAgreement, *, issuer: str, start: datetime, end: datetime
) -> Statement:
    """The statement of ``issuer``'s ledger for ``agreement`` over [start, end)."""
    lo, hi = int(start.timestamp() * 1_000_000), int(end.timestamp() * 1_000_000)
    query = select(ROWS.c.transfer_id, ROWS.c.role, ROWS.c.peer, ROWS.c.points, ROWS.c.credited).where(
        ROWS.c.agreement_id == agreement.agreement_id,
        ROWS.c.state == State.POSTED,
        ROWS.c.decided_at_us >= lo,
        ROWS.c.decided_at_us < hi,
    )
    groups: dict[tuple[str, str], list[Any]] = {}
    for row in conn.execute(query):
        direction = (issuer, row.peer) if row.role == "source" else (row.peer, issuer)
        groups.setdefault(direction, []).append(row)
    directions = tuple(_totals(agreement, d, groups.get(d, [])) for d in _directions(agreement))
    return _with_net(agreement, issuer, start, end, directions)


def _directions(agreement: InterchangeAgreement) -> list[tuple[str, str]]:
    return sorted((t.source, t.destination) for t in agreement.terms)


def _totals(agreement: InterchangeAgreement, direction: tuple[str, str], rows: list[Any]) -> DirectionTotals:
    terms = agreement.terms_for(*direction)
    credited = sum(r.credited for r in rows)
    ids = "\n".join(sorted(r.transfer_id for r in rows)).encode()
    return DirectionTotals(
        source=direction[0],
        destination=direction[1],
        transfers=len(rows),
        points=sum(r.points for r in rows),
        credited=credited,
        amount=str(terms.settlement_price * credited),
        transfers_digest=hashlib.sha256(ids).hexdigest(),
    )


def _with_net(
    agreement: InterchangeAgreement,
    issuer: str,
    start: datetime,
    end: datetime,
    directions: tuple[DirectionTotals, ...],
) -> Statement:
    a, b = sorted(agreement.partners)
    owed = {(d.source, d.destination): Decimal(d.amount) for d in directions}
    net = owed.get((a, b), Decimal(0)) - owed.get((b, a), Decimal(0))  # > 0: a pays b
    payer, payee = ((a, b) if net > 0 else (b, a)) if net else (None, None)
    return Statement(
        agreement_id=agreement.agreement_id,
        agreement_hash=agreement.content_hash(),
        issuer=issuer,
        period_start=start.astimezone(UTC),
        period_end=end.astimezone(UTC),
        currency=agreement.currency,
        directions=directions,
        payer=payer,
        payee=payee,
        net_amount=str(abs(net)),
    )


def sign_statement(statement: Statement, key: ec.EllipticCurvePrivateKey) -> str:
    return key.sign(statement.canonical_json().encode(), ec.ECDSA(hashes.SHA256())).hex()


def verify_statement(canonical: str, signature_hex: str, certificate_der: bytes | None) -> Statement:
    """Parse a peer's statement and check its signature against the peer's verified certificate."""
    if certificate_der is None:
        raise PointsError("a statement can only be accepted over mutual TLS (no peer certificate)")
    public = x509.load_der_x509_certificate(certificate_der).public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise PointsError("the peer's certificate does not hold an ECDSA key")
    try:
        public.verify(bytes.fromhex(signature_hex), canonical.encode(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError) as err:
        raise PointsError("the peer's statement signature does not verify") from err
    return Statement.model_validate_json(canonical)


def coordinator_totals(statement: Statement, *, reconciled: bool) -> dict[str, Any]:
    """What the coordinator may see: totals per direction and the net, never transfers or tokens."""
    return {
        "agreement_id": statement.agreement_id,
        "period_start": statement.period_start.isoformat(),
        "period_end": statement.period_end.isoformat(),
        "currency": statement.currency,
        "reconciled": reconciled,
        "directions": [
            {
                "source": d.source,
                "destination": d.destination,
                "points": d.points,
                "credited": d.credited,
                "amount": d.amount,
            }
            for d in statement.directions
        ],
        "payer": statement.payer,
        "payee": statement.payee,
        "net_amount": statement.net_amount,
    }
