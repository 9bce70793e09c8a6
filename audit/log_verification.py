"""Whole-log verification: recompute every leaf, every stored subtree and every signed tree head.

Trust comes from outside the log (RFC 9162 §8.3): a pinned Ed25519 public key, or the key an
auditor saved with an earlier tree head. Never from a key file beside the log, nor from the key the
log records for itself — whoever can rewrite the log can rewrite those too; without a trusted key
the report carries the problem "no trusted public key".

Checks, in order (each problem names the entries it implicates, see :mod:`audit.verification_report`):

1. ``meta`` holds the format and a public key equal to the trusted key.
2. ``entries`` are numbered 0..n-1 without gaps; each stored leaf hash equals
   ``H(0x00 || seq || body)`` (RFC 9162 §2.1.1), so altering or reordering a row shows at that row.
3. every stored interior node equals the hash of its stored children, and no extra node exists.
4. every tree head is signed by the trusted key, chains to the previous one, and its root equals
   the root recomputed *from the entries' content* (not from stored hashes); the latest covers every
   entry. A head that matches authenticates every entry below it, so damage confined to stored
   hashes under it is reported as index damage, not as a bad entry, and the first head that does
   not match narrows down where the first bad entry is.
5. with a saved head (``since``), the log must extend it: :func:`audit.saved_tree_head.check_since_head`.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from audit.audit_log import FORMAT_VERSION, connect
from audit.errors import AuditError
from audit.merkle_tree import TreeLevels
from audit.saved_tree_head import SavedTreeHead, check_since_head
from audit.tree_head import SignedTreeHead, public_key_from_hex, verify_tree_head
from audit.verification_report import HEAD_LEVEL, Problem, VerificationReport

__all__ = ["Problem", "VerificationReport", "verify_log"]

_CHUNK = 100_000
_SEQ = struct.Struct(">Q")
_HEAD_COLUMNS = ("tree_size", "previous_size", "timestamp_ms", "root_hash", "log_id", "signature")


def verify_log(
    path: Path, *, public_key: Ed25519PublicKey | None = None, since: SavedTreeHead | None = None
) -> VerificationReport:
    """Verify the whole log at ``path`` against ``public_key`` and, if given, a saved head.

    Without ``public_key`` the key saved with ``since`` is the trust anchor; with neither, the
    report has the problem "no trusted public key" (the checks still run, for diagnosis).
    """
    report = VerificationReport(path=path)
    conn = connect(path, read_only=True)
    try:
        key = _trust_anchor(conn, public_key, since, report)
        scan = _check_leaves(conn, report)
        report.tree_size = len(scan.stored)
        stored_levels = _check_nodes(conn, scan.stored, report)
        tree = scan.content_tree(stored_levels, report)
        current = _check_tree_heads(conn, tree, key, report) if key is not None else None
        if since is not None and key is not None:
            check_since_head(since, tree, current, key, report)
        report.root_hash = tree.root(tree.size).hex()
    except sqlite3.DatabaseError as err:
        # A dropped table or a file that is not a database: a finding about the log, not a crash.
        report.add(Problem("database", f"cannot read the log ({err})", level=-2))
    finally:
        conn.close()
    return report


def _raw_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _trust_anchor(
    conn: sqlite3.Connection,
    pinned: Ed25519PublicKey | None,
    since: SavedTreeHead | None,
    report: VerificationReport,
) -> Ed25519PublicKey | None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT_VERSION:
        found = meta.get("format")
        report.add(Problem("meta", f"log format {found!r} is not {FORMAT_VERSION!r}", level=-1))
    stored = meta.get("public_key")
    if pinned is not None:
        anchor, report.trust_anchor, report.pinned = pinned, "pinned public key", True
        if since is not None and since.public_key != _raw_hex(pinned):
            report.add(
                Problem("since-head", "the saved tree head names another key than the pinned one", level=-1)
            )
    elif since is not None:
        anchor, report.pinned = since.key, True
        report.trust_anchor = f"public key saved with the tree head at size {since.tree_head.tree_size}"
    else:
        return _unpinned(stored, report)
    if stored != _raw_hex(anchor):
        report.add(Problem("meta", "the recorded public key is not the trusted key", level=-1))
    return anchor


def _unpinned(stored: object, report: VerificationReport) -> Ed25519PublicKey | None:
    """No trusted key: check against the log's own key for diagnosis, and say it proves nothing."""
    hint = f" (the log names {stored}; confirm it out of band)" if isinstance(stored, str) else ""
    report.add(
        Problem(
            "meta",
            "no trusted public key: pin the log's key (--public-key, or [audit] public_key in "
            f"federation.toml) or verify --since-head a saved head{hint}",
            level=HEAD_LEVEL + 1,
        )
    )
    report.trust_anchor = "none (the key the log names for itself)"
    try:
        return public_key_from_hex(stored) if isinstance(stored, str) else None
    except AuditError:
        report.add(Problem("meta", "the recorded public key is malformed", level=-1))
        return None


@dataclass
class _LeafScan:
    """Stored leaf hashes (what the tree above was built from) and, where they differ, the hashes of
    the entries' content as stored now."""

    stored: list[bytes] = field(default_factory=list)
    content: dict[int, bytes] = field(default_factory=dict)

    def content_tree(self, stored_levels: list[list[bytes]], report: VerificationReport) -> TreeLevels:
        """The tree of the entries' content: the stored one when every stored hash checked out."""
        if not self.content and not any(p.table == "nodes" for p in report.problems):
            return TreeLevels(stored_levels)
        leaves = [self.content.get(i, leaf) for i, leaf in enumerate(self.stored)]
        return TreeLevels.from_leaves(leaves)


def _check_leaves(conn: sqlite3.Connection, report: VerificationReport) -> _LeafScan:
    """Stored leaf hashes of the contiguous prefix 0..k-1, each checked against its body."""
    scan = _LeafScan()
    # CAST: hash the stored UTF-8 bytes as they are, without a str round trip.
    cursor = conn.execute("SELECT seq, CAST(body AS BLOB), leaf_hash FROM entries ORDER BY seq")
    while rows := cursor.fetchmany(_CHUNK):
        first = len(scan.stored)
        seqs = [row[0] for row in rows]
        if seqs != list(range(first, first + len(rows))):
            # A gap (deleted row) or a foreign number (inserted row): positions no longer line up.
            bad = next(i for i, seq in enumerate(seqs) if seq != first + i)
            _check_leaf_chunk(rows[:bad], first, scan, report)
            report.add(Problem("entries", "entry missing or out of sequence", first + bad))
            return scan
        _check_leaf_chunk(rows, first, scan, report)
    return scan


def _check_leaf_chunk(
    rows: list[tuple[int, bytes | None, object]], first: int, scan: _LeafScan, report: VerificationReport
) -> None:
    pack, sha256 = _SEQ.pack, hashlib.sha256
    computed = [sha256(b"\x00" + pack(seq) + (body or b"")).digest() for seq, body, _ in rows]
    stored = [row[2] for row in rows]
    if computed == stored:
        scan.stored.extend(computed)
        return
    for offset, (got, want) in enumerate(zip(computed, stored, strict=True)):
        seq = first + offset
        if isinstance(want, bytes) and len(want) == 32:
            scan.stored.append(want)
            if got != want:
                scan.content[seq] = got
                report.add(Problem("entries", "content does not match its leaf hash", seq))
        else:
            # A missing or malformed stored hash: build the tree above from the content instead.
            scan.stored.append(got)
            report.add(Problem("entries", "stored leaf hash is missing or malformed", seq))


def _check_nodes(
    conn: sqlite3.Connection, leaves: list[bytes], report: VerificationReport
) -> list[list[bytes]]:
    """Each stored node must equal H(0x01 || stored left || stored right); none may be missing or extra."""
    levels, level = [leaves], 1
    while len(levels[-1]) >= 2:
        below = levels[-1]
        # RFC 9162 §2.1.1 node hash, inlined from merkle_tree.node_hash (a million calls for 10^6 entries).
        sha256 = hashlib.sha256
        computed = [sha256(b"\x01" + below[i] + below[i + 1]).digest() for i in range(0, len(below) - 1, 2)]
        rows = conn.execute("SELECT idx, hash FROM nodes WHERE level = ? ORDER BY idx", (level,)).fetchall()
        stored = [h for _, h in rows[: len(computed)]]
        if len(rows) == len(computed) and rows[-1][0] == len(rows) - 1 and stored == computed:
            levels.append(stored)
        else:
            levels.append(_compare_level(level, rows, computed, report))
        level += 1
    extra = conn.execute("SELECT count(*) FROM nodes WHERE level >= ?", (level,)).fetchone()[0]
    if extra and not any(p.table == "entries" for p in report.problems):
        report.add(Problem("nodes", f"{extra} stored subtree(s) beyond the tree", level=level))
    return levels


def _compare_level(
    level: int, rows: list[tuple[object, object]], computed: list[bytes], report: VerificationReport
) -> list[bytes]:
    by_index = dict(rows)
    result = []
    for i, expected in enumerate(computed):
        found = by_index.pop(i, None)
        if found != expected:
            what = "is missing" if found is None else "is wrong"
            message = f"stored subtree (level {level}, index {i}) {what}"
            report.add(Problem("nodes", message, i << level, level, ((i + 1) << level) - 1))
        # Carry a stored hash up (each check stays local); a malformed one is replaced.
        result.append(found if isinstance(found, bytes) and len(found) == 32 else expected)
    # Nodes past the verified leaves: extra rows, unless a sequence problem already cut the leaves short.
    if by_index and not any(p.table == "entries" for p in report.problems):
        report.add(Problem("nodes", f"{len(by_index)} stored subtree(s) beyond the tree", level=level))
    return result


def _read_heads(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    columns = ", ".join(_HEAD_COLUMNS)
    return conn.execute(f"SELECT {columns} FROM tree_heads ORDER BY tree_size").fetchall()


def _check_tree_heads(
    conn: sqlite3.Connection, tree: TreeLevels, key: Ed25519PublicKey, report: VerificationReport
) -> SignedTreeHead | None:
    """Check every head; returns the latest head that is signed and matches the entries."""
    size, previous, last_time = tree.size, 0, 0
    authentic, latest = 0, None
    mismatch: tuple[int, int] | None = None  # first head whose root the entries do not give
    for row in _read_heads(conn):
        report.tree_heads += 1
        head = _parse_head(row, previous, report)
        if head is None:
            previous = row[0] if isinstance(row[0], int) else previous
            continue
        signed = verify_tree_head(head, key)
        where = f"head at size {head.tree_size}"
        if not signed:
            report.add(Problem("tree_heads", f"bad signature on the {where}", level=HEAD_LEVEL))
        if head.previous_size != previous or head.timestamp_ms < last_time:
            report.add(Problem("tree_heads", f"{where} breaks the chain of heads", level=HEAD_LEVEL))
        if head.tree_size > size:
            report.add(Problem("entries", f"signed head covers {head.tree_size} entries", size))
        elif signed and tree.root(head.tree_size) == head.root:
            authentic, latest = head.tree_size, head
        elif signed and mismatch is None:
            mismatch = (authentic, head.tree_size - 1)
        previous, last_time = head.tree_size, head.timestamp_ms
    if previous < size:
        report.add(Problem("entries", "not covered by any signed tree head", previous, 0, size - 1))
    _attribute(report, authentic, mismatch)
    return latest


def _parse_head(row: tuple[object, ...], previous: int, report: VerificationReport) -> SignedTreeHead | None:
    try:
        return SignedTreeHead.model_validate(dict(zip(_HEAD_COLUMNS, row, strict=True)), strict=False)
    except ValidationError:
        report.add(Problem("tree_heads", f"malformed head at size {row[0]}", level=HEAD_LEVEL))
        return None


def _attribute(report: VerificationReport, authentic: int, mismatch: tuple[int, int] | None) -> None:
    """Use the heads' verdict on the entries' content to say which stored-hash problems are bad entries.

    Entries below ``authentic`` match a signed head, so a wrong stored hash over them is index damage.
    ``mismatch`` is the range in which the first head that does not match says an entry changed.
    """
    kept: list[Problem] = []
    for problem in report.problems:
        if problem.table in ("entries", "nodes") and problem.end is not None and problem.end < authentic:
            what = f"entry {problem.seq}" if problem.exact else f"entries {problem.seq}-{problem.end}"
            note = f"{problem.message}; {what} match the signed tree heads (damaged index, not content)"
            kept.append(Problem(problem.table, note, level=problem.level))
        elif problem.table == "nodes" and mismatch is not None:
            kept.append(problem.narrowed(*mismatch))
        else:
            kept.append(problem)
    if mismatch is not None and not any(_within(p, *mismatch) for p in kept):
        message = "content differs from what the signed tree heads committed to"
        kept.append(Problem("entries", message, mismatch[0], HEAD_LEVEL, mismatch[1]))
    report.problems[:] = kept


def _within(problem: Problem, low: int, high: int) -> bool:
    return problem.seq is not None and problem.end is not None and low <= problem.seq <= problem.end <= high
