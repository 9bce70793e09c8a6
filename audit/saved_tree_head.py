"""An auditor's saved tree head, and the check that a log still extends it.

``loyalfed audit head --json > head.json`` keeps what the log committed to at one moment: the signed
tree head, the public key that signed it, and the *frontier* — the roots of the complete subtrees on
the tree's right edge (one per set bit of the size), bound to the signed root because they must fold
to it. Later, ``loyalfed audit verify --since-head head.json`` proves that the log now extends that
head (RFC 9162 §2.1.4 consistency proof from the saved head to the current one) and fails on a log
truncated back to an earlier head, an older copy restored in its place, a rewritten history (even one
re-signed with the same key) or a swapped key. RFC 9162 §8.3: the auditor trusts what it saw, not
what the log says about itself.

On a mismatch the frontier localises the damage to the first saved subtree that differs, so the
report names the entries that changed (one entry when the subtree is a single leaf).
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from audit.audit_log import connect
from audit.errors import AuditError
from audit.merkle_tree import TreeLevels, consistency_proof, frontier_positions, root_from_frontier
from audit.merkle_tree import verify_consistency as verify_consistency_proof
from audit.tree_head import SignedTreeHead, public_key_from_hex, verify_tree_head
from audit.verification_report import HEAD_LEVEL, Problem, VerificationReport

__all__ = ["SavedTreeHead", "check_since_head", "load_saved_head", "read_saved_head", "write_saved_head"]

Hash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class SavedTreeHead(BaseModel):
    """What ``loyalfed audit head --json`` prints and ``--since-head`` reads back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tree_head: SignedTreeHead
    public_key: Hash
    frontier: tuple[Hash, ...] = ()

    @model_validator(mode="after")
    def _frontier_folds_to_the_root(self) -> SavedTreeHead:
        if not self.frontier:
            return self
        expected = len(frontier_positions(self.tree_head.tree_size))
        hashes = [bytes.fromhex(h) for h in self.frontier]
        if len(hashes) != expected or root_from_frontier(hashes) != self.tree_head.root:
            raise ValueError("frontier does not fold to the signed root hash")
        return self

    @property
    def key(self) -> Ed25519PublicKey:
        return public_key_from_hex(self.public_key)


def read_saved_head(log_path: Path) -> SavedTreeHead:
    """The latest signed tree head of the log file at ``log_path``, with its key and frontier.

    Read-only; what it returns is what the log shows *now* — the point of saving it is that a later
    verification can hold the log to it.
    """
    conn = connect(log_path, read_only=True)
    try:
        row = conn.execute(
            "SELECT tree_size, previous_size, timestamp_ms, root_hash, log_id, signature FROM tree_heads"
            " ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        key = conn.execute("SELECT value FROM meta WHERE key = 'public_key'").fetchone()
        if row is None or key is None:
            raise AuditError(f"{log_path}: the audit log has no signed tree head yet")
        names = ("tree_size", "previous_size", "timestamp_ms", "root_hash", "log_id", "signature")
        head = SignedTreeHead.model_validate(dict(zip(names, row, strict=True)))
        frontier = [
            _stored_subtree(conn, level, index) for level, index in frontier_positions(head.tree_size)
        ]
    except (sqlite3.DatabaseError, ValidationError) as err:
        raise AuditError(f"{log_path}: cannot read a tree head from the log ({type(err).__name__})") from err
    finally:
        conn.close()
    try:
        return SavedTreeHead(tree_head=head, public_key=key[0], frontier=tuple(frontier))
    except ValidationError as err:
        raise AuditError(
            f"{log_path}: the latest tree head does not match the stored tree; run verify"
        ) from err


def _stored_subtree(conn: sqlite3.Connection, level: int, index: int) -> str:
    if level == 0:
        row = conn.execute("SELECT leaf_hash FROM entries WHERE seq = ?", (index,)).fetchone()
    else:
        row = conn.execute("SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
    if row is None or not isinstance(row[0], bytes):
        raise AuditError(f"subtree ({level}, {index}) is missing from the log; run verify")
    return row[0].hex()


def load_saved_head(path: Path) -> SavedTreeHead:
    """Read a saved head; a clear :class:`AuditError` naming the file when it is not one."""
    try:
        return SavedTreeHead.model_validate_json(path.read_bytes())
    except OSError as err:
        raise AuditError(f"{path}: cannot read the saved tree head ({err.strerror})") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise AuditError(f"{path}: not a saved tree head ({where}: {first['msg']})") from None


def write_saved_head(saved: SavedTreeHead, path: Path) -> None:
    """Write ``saved`` as JSON atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(saved.model_dump(mode="json")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def check_since_head(
    saved: SavedTreeHead,
    tree: TreeLevels,
    current: SignedTreeHead | None,
    key: Ed25519PublicKey,
    report: VerificationReport,
) -> None:
    """Add to ``report`` every way the verified ``tree`` fails to extend ``saved``.

    ``tree`` holds the subtrees recomputed from the entries as stored; ``current`` is the log's
    latest head (already checked against ``key``); ``key`` is the trusted key.
    """
    report.since_size = saved.tree_head.tree_size
    old = saved.tree_head
    if not verify_tree_head(old, key):
        report.add(Problem("since-head", "the saved tree head is not signed by the trusted key", level=-1))
        return
    if old.tree_size > tree.size:
        message = (
            f"the saved head covers {old.tree_size} entries but the log has {tree.size}: truncated to an "
            "earlier head or replaced by an older copy"
        )
        report.add(Problem("since-head", message, tree.size, 0, old.tree_size - 1))
        return
    if hmac.compare_digest(tree.root(old.tree_size), old.root):
        _prove_consistency(old, tree, current, report)
        return
    report.add(_rewritten(saved, tree))


def _prove_consistency(
    old: SignedTreeHead, tree: TreeLevels, current: SignedTreeHead | None, report: VerificationReport
) -> None:
    """RFC 9162 §2.1.4: prove the saved head is a prefix of the log's current signed head."""
    if current is None or current.tree_size != tree.size:
        return  # the log's own head problems are already reported
    proof = consistency_proof(tree, old.tree_size, current.tree_size)
    if not verify_consistency_proof(old.tree_size, current.tree_size, proof, old.root, current.root):
        message = f"no consistency proof from the saved head at size {old.tree_size} to the current head"
        report.add(Problem("since-head", message, old.tree_size, HEAD_LEVEL, max(tree.size - 1, 0)))


def _rewritten(saved: SavedTreeHead, tree: TreeLevels) -> Problem:
    """The first saved subtree that differs names the changed entries (all of them without a frontier)."""
    size = saved.tree_head.tree_size
    message = f"entries differ from the ones the saved head at size {size} committed to: history rewritten"
    start = 0
    for (level, index), saved_hash in zip(frontier_positions(size), saved.frontier, strict=False):
        width = 1 << level
        if tree.subtree(level, index).hex() != saved_hash:
            return Problem("since-head", message, start, HEAD_LEVEL, start + width - 1)
        start += width
    return Problem("since-head", message, 0, HEAD_LEVEL, size - 1)
