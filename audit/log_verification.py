"""Whole-log verification: recompute every leaf, every stored subtree and every signed tree head.

Checks, in order (the first failure names the first bad entry or row):

1. ``meta`` holds the format and a public key matching the trust anchor (a pinned key, the key
   file next to the log, or — weakest — the key the log asserts about itself).
2. ``entries`` are numbered 0..n-1 without gaps; each stored leaf hash equals
   ``H(0x00 || seq || body)`` (RFC 9162 §2.1.1), so altering or reordering a row shows at that row.
3. every stored interior node equals the hash of its children, and no extra node exists.
4. every tree head is signed by the log key, chains to the previous one, has the recomputed root
   at its size, and the latest one covers every entry (an inserted or deleted tail row shows here).
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

from audit.audit_log import FORMAT_VERSION, connect, default_key_path
from audit.merkle_tree import EMPTY_ROOT, root_from_frontier
from audit.tree_head import SignedTreeHead, load_or_create_signing_key, public_key_from_hex, verify_tree_head

__all__ = ["Problem", "VerificationReport", "verify_log"]

_HEADS = 64  # tree heads sit above every tree level
_CHUNK = 100_000


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the log: where (table, entry) and what."""

    table: str
    message: str
    seq: int | None = None
    level: int = 0  # tree level the check ran at: the lowest one is closest to the cause

    def __str__(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else f"table {self.table}"
        return f"{where}: {self.message}"


@dataclass
class VerificationReport:
    """The outcome of :func:`verify_log`; ``ok`` only when no problem was found."""

    path: Path
    tree_size: int = 0
    root_hash: str = EMPTY_ROOT.hex()
    tree_heads: int = 0
    trust_anchor: str = ""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        """The most specific problem: the lowest tree level first (a bad leaf also spoils every node
        above it), then the lowest entry number."""
        return min(self.problems, key=lambda p: (p.level, p.seq is None, p.seq or 0), default=None)

    def as_dict(self) -> dict[str, object]:
        first = self.first_problem
        return {
            "ok": self.ok,
            "path": str(self.path),
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "tree_heads_checked": self.tree_heads,
            "trust_anchor": self.trust_anchor,
            "first_bad_entry": None if first is None else first.seq,
            "first_problem": None if first is None else str(first),
            "problems": [str(p) for p in self.problems[:50]],
        }


def verify_log(path: Path, *, public_key: Ed25519PublicKey | None = None) -> VerificationReport:
    """Verify the whole log at ``path`` against ``public_key`` (default: its key file, else meta)."""
    report = VerificationReport(path=path)
    conn = connect(path, read_only=True)
    try:
        key = _trust_anchor(conn, path, public_key, report)
        levels = [_check_leaves(conn, report)]
        report.tree_size = len(levels[0])
        _check_nodes(conn, levels, report)
        if key is not None:
            _check_tree_heads(conn, levels, key, report)
        report.root_hash = _root(levels, report.tree_size).hex()
    except sqlite3.DatabaseError as err:
        # A dropped table or a file that is not a database: a finding about the log, not a crash.
        report.problems.append(Problem("database", f"cannot read the log ({err})", level=-2))
    finally:
        conn.close()
    return report


def _trust_anchor(conn, path: Path, pinned: Ed25519PublicKey | None, report: VerificationReport):
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT_VERSION:
        found = meta.get("format")
        report.problems.append(Problem("meta", f"log format {found!r} is not {FORMAT_VERSION!r}", level=-1))
    stored = meta.get("public_key")
    key_file = default_key_path(path)
    if pinned is not None:
        anchor, report.trust_anchor = pinned, "pinned public key"
    elif key_file.exists():
        anchor, report.trust_anchor = (
            load_or_create_signing_key(key_file).public_key(),
            f"key file {key_file.name}",
        )
    elif stored:
        report.trust_anchor = "public key recorded in the log (self-asserted; pin a key for more)"
        return public_key_from_hex(stored)
    else:
        report.problems.append(Problem("meta", "no public key recorded and none given", level=-1))
        return None
    raw = anchor.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if stored != raw.hex():
        report.problems.append(Problem("meta", "the recorded public key is not the trusted key", level=-1))
    return anchor


def _check_leaves(conn, report: VerificationReport) -> list[bytes]:
    """Stored leaf hashes of the contiguous prefix 0..k-1, each checked against its body."""
    leaves: list[bytes] = []
    pack, sha256 = struct.Struct(">Q").pack, hashlib.sha256
    # CAST: hash the stored UTF-8 bytes as they are, without a str round trip.
    cursor = conn.execute("SELECT seq, CAST(body AS BLOB), leaf_hash FROM entries ORDER BY seq")
    while rows := cursor.fetchmany(_CHUNK):
        first = len(leaves)
        seqs = [row[0] for row in rows]
        if seqs != list(range(first, first + len(rows))):
            # A gap (deleted row) or a foreign number (inserted row): positions no longer line up.
            bad = next(i for i, seq in enumerate(seqs) if seq != first + i)
            _check_leaf_chunk(rows[:bad], first, leaves, report)
            report.problems.append(Problem("entries", "entry missing or out of sequence", first + bad))
            return leaves
        _check_leaf_chunk(rows, first, leaves, report, pack=pack, sha256=sha256)
    return leaves


def _check_leaf_chunk(rows, first: int, leaves: list[bytes], report: VerificationReport, **fast) -> None:
    pack, sha256 = fast.get("pack", struct.Struct(">Q").pack), fast.get("sha256", hashlib.sha256)
    # Stored hashes go up the tree: each check stays local, so a problem is reported where it is.
    stored = [row[2] for row in rows]
    computed = [sha256(b"\x00" + pack(seq) + body).digest() for seq, body, _ in rows]
    if computed != stored:
        for offset, (got, want) in enumerate(zip(computed, stored, strict=True)):
            if got != want:
                report.problems.append(
                    Problem("entries", "content does not match its leaf hash", first + offset)
                )
    leaves.extend(stored)


def _check_nodes(conn, levels: list[list[bytes]], report: VerificationReport) -> None:
    """Each stored node must equal H(0x01 || stored left || stored right); none may be missing or extra."""
    level = 1
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
    if extra and len(report.problems) == 0:
        report.problems.append(Problem("nodes", f"{extra} stored subtree(s) beyond the tree", level=level))


def _compare_level(level: int, rows: list, computed: list[bytes], report: VerificationReport) -> list[bytes]:
    by_index = {idx: bytes(h) for idx, h in rows}
    result = []
    for i, expected in enumerate(computed):
        found = by_index.pop(i, None)
        if found != expected:
            what = "is missing" if found is None else "is wrong"
            report.problems.append(
                Problem("nodes", f"stored subtree (level {level}, index {i}) {what}", i << level, level)
            )
        result.append(expected if found is None else found)
    # Nodes past the verified leaves: extra rows, unless a sequence problem already cut the leaves short.
    if by_index and not any(p.table == "entries" for p in report.problems):
        report.problems.append(
            Problem("nodes", f"{len(by_index)} stored subtree(s) beyond the tree", level=level)
        )
    return result


def _root(levels: list[list[bytes]], size: int) -> bytes:
    """MTH of the first ``size`` leaves from the recomputed levels (right fold of the frontier)."""
    parts, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            parts.append(levels[level][start >> level])
            start += 1 << level
    return root_from_frontier(parts)


def _check_tree_heads(conn, levels, key: Ed25519PublicKey, report: VerificationReport) -> None:
    rows = conn.execute(
        "SELECT tree_size, previous_size, timestamp_ms, root_hash, log_id, signature"
        " FROM tree_heads ORDER BY tree_size"
    ).fetchall()
    size, previous, last_time = len(levels[0]), 0, 0
    for tree_size, previous_size, timestamp_ms, root_hash, log_id, signature in rows:
        report.tree_heads += 1
        try:
            head = SignedTreeHead(
                tree_size=tree_size,
                timestamp_ms=timestamp_ms,
                previous_size=previous_size,
                root_hash=root_hash,
                log_id=log_id,
                signature=signature,
            )
        except ValidationError:
            message = f"malformed head at size {tree_size}"
            report.problems.append(Problem("tree_heads", message, min(previous, max(size - 1, 0)), _HEADS))
            previous = tree_size if isinstance(tree_size, int) else previous
            continue
        for message in _head_problems(head, previous_size != previous or timestamp_ms < last_time, key):
            report.problems.append(Problem("tree_heads", message, min(previous, size), _HEADS))
        if tree_size > size:
            report.problems.append(Problem("entries", f"signed head covers {tree_size} entries", size))
        elif _root(levels, tree_size).hex() != root_hash:
            report.problems.append(
                Problem("tree_heads", f"root differs at size {tree_size}", min(previous, size), _HEADS)
            )
        previous, last_time = tree_size, timestamp_ms
    if previous != size:
        report.problems.append(Problem("entries", "entry is not covered by any signed tree head", previous))


def _head_problems(head: SignedTreeHead, broken_chain: bool, key: Ed25519PublicKey) -> list[str]:
    problems = []
    if not verify_tree_head(head, key):
        problems.append(f"bad signature on the head at size {head.tree_size}")
    if broken_chain:
        problems.append(f"head at size {head.tree_size} breaks the chain of heads")
    return problems
