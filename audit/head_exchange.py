"""Tree heads shown on contact between two parties, each with a proof the other can check.

RFC 9162 §8.3: a party that keeps the newest signed tree head it has seen of a log, and demands a
consistency proof to every newer head, detects a log that forks, truncates or is rolled back. The
node and the coordinator do this for each other's logs on every heartbeat: each shows its log's
newest head (``HeadReport``) with a consistency proof from the size the other last accepted, and
the receiver checks it (``check_head_report``) against the head it keeps, with the same rules as
``TreeHeadMonitor``:

- the head must be signed by the log's key, and the key must be the one pinned for that party
  (a changed key is a swapped log);
- same size: same root; larger: a valid consistency proof from the kept size (without one the kept
  head stays — a party that has just restarted does not know the other's size yet — and the
  receiver says which size to prove from); smaller: a rollback, refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit.errors import AuditError, HistoryRewrittenError
from audit.tree_head import SignedTreeHead, public_key_from_hex
from audit.tree_head_monitor import ConsistencyProver, TreeHeadMonitor

__all__ = ["HeadReport", "check_head_report", "head_report", "public_key_hex"]


class HeadReport(BaseModel):
    """A log's newest signed head, its public key, and a proof from ``proof_from_size`` to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    head: SignedTreeHead
    public_key: str = Field(pattern=r"^[0-9a-f]{64}$")
    proof_from_size: int | None = Field(default=None, ge=0, lt=2**63)
    proof: tuple[str, ...] = Field(default=(), max_length=128)

    @field_validator("head")
    @classmethod
    def _fits_the_signed_layout(cls, head: SignedTreeHead) -> SignedTreeHead:
        # The signed bytes hold each number as an unsigned 64-bit integer (``audit.tree_head``).
        if max(head.tree_size, head.timestamp_ms, head.previous_size) >= 2**63:
            raise ValueError("tree head numbers must be below 2**63")
        return head


def public_key_hex(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def head_report(
    head: SignedTreeHead, key: Ed25519PublicKey, prover: ConsistencyProver, *, since: int | None
) -> HeadReport:
    """The report of ``head``, with a proof from ``since`` (the size the receiver last accepted)."""
    proof: Sequence[bytes] = ()
    if since is not None and 0 < since < head.tree_size:
        proof = prover.consistency_proof(since, head.tree_size)
    from_size = since if since is not None and since <= head.tree_size else None
    return HeadReport(
        head=head,
        public_key=public_key_hex(key),
        proof_from_size=from_size,
        proof=tuple(p.hex() for p in proof),
    )


class _SuppliedProof:
    """The proof the report carries, for the one size it was made from."""

    def __init__(self, report: HeadReport) -> None:
        self._report = report

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        report = self._report
        if report.proof_from_size != old_size or new_size != report.head.tree_size:
            raise HistoryRewrittenError(f"no consistency proof from size {old_size} to {new_size} was shown")
        try:
            return [bytes.fromhex(p) for p in report.proof]
        except ValueError:
            raise HistoryRewrittenError("the consistency proof is not hex") from None


def check_head_report(
    report: HeadReport, *, kept: SignedTreeHead | None, pinned_key: str | None
) -> SignedTreeHead:
    """The head to keep after ``report``; raises ``HistoryRewrittenError`` when it is inconsistent.

    Returns ``kept`` unchanged when the report shows a larger head without a proof from ``kept``'s
    size (the sender proves it on its next contact).
    """
    if pinned_key is not None and report.public_key != pinned_key:
        raise HistoryRewrittenError("the log's public key changed (a swapped log)")
    try:
        key = public_key_from_hex(report.public_key)
    except AuditError as err:
        raise HistoryRewrittenError("the report's public key is not an Ed25519 key") from err
    if kept is not None and report.head.tree_size < kept.tree_size:
        raise HistoryRewrittenError(
            f"the log shows size {report.head.tree_size}, smaller than size {kept.tree_size} seen before "
            "(rolled back or truncated)"
        )
    monitor = TreeHeadMonitor(key, _SuppliedProof(report))
    if (
        kept is not None
        and report.head.tree_size > kept.tree_size
        and report.proof_from_size != kept.tree_size
    ):
        monitor.observe(report.head)  # no proof from the kept size yet: the signature is checked
        return kept
    monitor.latest = kept
    monitor.observe(report.head)
    assert monitor.latest is not None
    return monitor.latest
