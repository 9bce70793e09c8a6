"""The append-only audit log: lineage events in SQLite (WAL), a Merkle tree, signed tree heads.

Storage (one SQLite file):

- ``entries(seq, body, leaf_hash)`` — the event's canonical JSON and its RFC 9162 leaf hash over
  ``seq (u64 BE) || body``; binding the position into the leaf makes a reordered row visible at
  the leaf itself, not only at the root.
- ``nodes(level, idx, hash)`` — every complete interior subtree, written once when it completes,
  so an append costs O(log n) and a proof is O(log n) point reads.
- ``tree_heads`` — one Ed25519-signed tree head per batch, each chained to the previous size.
- ``meta`` — format version and the log's public key.

A batch (entries + nodes + tree head) is one transaction; with ``synchronous=FULL`` the WAL is
fsynced at each commit, so an event is acknowledged only once it is durable, and a writer killed at
any moment leaves either the whole batch or none of it (SQLite's atomic commit,
https://www.sqlite.org/atomiccommit.html).
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.errors import AuditError, LogIntegrityError
from audit.lineage_event import LineageEvent
from audit.merkle_tree import (
    EMPTY_ROOT,
    consistency_proof,
    frontier_positions,
    inclusion_proof,
    node_hash,
    range_hash,
    root_from_frontier,
)
from audit.tree_head import SignedTreeHead, TreeHeadSigner, load_or_create_signing_key

__all__ = [
    "FORMAT_VERSION",
    "MAX_TREE_SIZE",
    "AuditLog",
    "CanonicalEvent",
    "LogEntry",
    "default_key_path",
    "leaf_input",
]

# /2: tree heads sign previous_size (loyalfed-sth/2). Logs of another format are refused, not mixed.
FORMAT_VERSION = "loyalfed-audit/2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, leaf_hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_heads (
    tree_size INTEGER PRIMARY KEY, previous_size INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL,
    root_hash TEXT NOT NULL, log_id TEXT NOT NULL, signature TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_job ON entries (json_extract(body, '$.job_id'));
"""

LogEntry = tuple[int, LineageEvent]
# Positions are SQLite INTEGERs (signed 64-bit) and tree heads sign sizes as u64: the largest size.
MAX_TREE_SIZE = 2**63 - 1


_SEQ = struct.Struct(">Q")


def leaf_input(seq: int, body: bytes) -> bytes:
    """The RFC 9162 leaf data ``d(seq)``: the position and the canonical event bytes."""
    return _SEQ.pack(seq) + body


def default_key_path(db_path: Path) -> Path:
    """Where the log's signing key lives by default: next to the database, ``<name>.key``."""
    return db_path.with_suffix(".key")


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open the log database; read-only opens never create or modify the file."""
    if read_only:
        if not path.exists():
            raise FileNotFoundError(2, "No such audit log", str(path))
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: fsync the WAL at every commit, i.e. once per batch.
        conn.execute("PRAGMA synchronous=FULL")
        # Checkpoint every ~40 MB of WAL rather than 4 MB: fewer database-file fsyncs while appending.
        conn.execute("PRAGMA wal_autocheckpoint=10000")
    return conn


class CanonicalEvent(Protocol):
    """An event the log can append by its canonical bytes alone: a ``LineageEvent``, or a record
    holding the exact canonical bytes of one its producer validated (a points node's events,
    spliced into a validated template: ``participant_node.points.audit_trail``)."""

    def canonical_bytes(self) -> bytes: ...


class AuditLog:
    """An open, writable audit log. Thread-safe; one writer process per file.

    Use :meth:`open`; the signer (and so the key) is injectable for tests and HSM-backed keys.
    """

    def __init__(self, conn: sqlite3.Connection, signer: TreeHeadSigner, path: Path) -> None:
        self._conn = conn
        self._signer = signer
        self._lock = threading.RLock()
        self.path = path
        self._size, self._frontier = self._load_state()

    @classmethod
    def open(cls, path: Path, *, signer: TreeHeadSigner | None = None) -> AuditLog:
        """Open (creating if needed) the log at ``path``; the default key is :func:`default_key_path`."""
        signer = signer or TreeHeadSigner(load_or_create_signing_key(default_key_path(path)))
        conn = connect(path)
        conn.executescript(_SCHEMA)
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT_VERSION,))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('public_key', ?)", (signer.public_key_hex,))
            if conn.execute("SELECT count(*) FROM tree_heads").fetchone()[0] == 0:
                # RFC 9162 §2.1.1: the empty tree has a root too. Signing it at creation means every
                # reader, from the first one on, gets a signed head to hold the log to.
                _insert_head(conn, signer.sign(0, EMPTY_ROOT))
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != FORMAT_VERSION:
            conn.close()
            raise LogIntegrityError(
                f"{path}: log format {meta.get('format')!r}, this version writes {FORMAT_VERSION!r}"
            )
        if meta.get("public_key") != signer.public_key_hex:
            conn.close()
            raise AuditError(f"{path}: the signing key does not match the log's public key")
        return cls(conn, signer, path)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        return self._size

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._signer.public_key

    @property
    def public_key_hex(self) -> str:
        return self._signer.public_key_hex

    def _load_state(self) -> tuple[int, list[bytes]]:
        size = self._stored_size()
        head = self._conn.execute("SELECT max(tree_size) FROM tree_heads").fetchone()[0] or 0
        if head != size:
            raise LogIntegrityError(
                f"{self.path}: {size} entries but the latest signed tree head covers {head}; "
                "run `loyalfed audit verify` — refusing to append to a damaged log"
            )
        return size, [self._subtree(level, index) for level, index in frontier_positions(size)]

    # -- writing -------------------------------------------------------------------------------

    def append(self, event: LineageEvent) -> int:
        """Append one event durably; returns its sequence number."""
        return self.append_batch([event])[0]

    def append_batch(self, events: Sequence[LineageEvent | CanonicalEvent]) -> list[int]:
        """Append events in one transaction and one fsync; returns their sequence numbers.

        On return every event is durable and covered by a new signed tree head. The write lock is
        taken first (``BEGIN IMMEDIATE``), so another process appending to the same file is
        serialised with this one and its entries are picked up before numbering ours.
        """
        if not events:
            return []
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                if self._stored_size() != self._size:
                    self._size, self._frontier = self._load_state()
                first = self._size
                size, frontier, entry_rows, node_rows = self._leaves(events)
                head = self._signer.sign(size, root_from_frontier(frontier), previous_size=first)
                self._insert(entry_rows, node_rows, head)
                conn.execute("COMMIT")
            except BaseException as err:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(err, sqlite3.Error):
                    raise AuditError(f"{self.path}: could not append to the audit log ({err})") from err
                raise
            self._size, self._frontier = size, frontier
        return list(range(first, size))

    def _stored_size(self) -> int:
        row = self._conn.execute("SELECT max(seq) FROM entries").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _leaves(
        self, events: Sequence[LineageEvent | CanonicalEvent]
    ) -> tuple[int, list[bytes], list[tuple[int, str, bytes]], list[tuple[int, int, bytes]]]:
        size, frontier = self._size, list(self._frontier)
        entry_rows: list[tuple[int, str, bytes]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        pack, sha256 = _SEQ.pack, hashlib.sha256
        for event in events:
            body = event.canonical_bytes()
            # RFC 9162 §2.1.1 leaf hash, inlined from merkle_tree.leaf_hash for the hot loop.
            leaf = sha256(b"\x00" + pack(size) + body).digest()
            entry_rows.append((size, body.decode(), leaf))
            size = _push_leaf(frontier, size, leaf, node_rows)
        return size, frontier, entry_rows, node_rows

    def _insert(
        self,
        entry_rows: list[tuple[int, str, bytes]],
        node_rows: list[tuple[int, int, bytes]],
        head: SignedTreeHead,
    ) -> None:
        conn = self._conn
        conn.executemany("INSERT INTO entries VALUES (?, ?, ?)", entry_rows)
        conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", node_rows)
        _insert_head(conn, head)

    # -- reading -------------------------------------------------------------------------------

    def subtree(self, level: int, index: int) -> bytes:
        """The stored hash of a complete subtree (a :class:`~audit.merkle_tree.SubtreeSource`)."""
        with self._lock:
            return self._subtree(level, index)

    def _subtree(self, level: int, index: int) -> bytes:
        if level == 0:
            row = self._conn.execute("SELECT leaf_hash FROM entries WHERE seq = ?", (index,)).fetchone()
        else:
            row = self._conn.execute(
                "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (level, index)
            ).fetchone()
        if row is None:
            raise AuditError(f"{self.path}: subtree ({level}, {index}) is missing")
        return bytes(row[0])

    def tree_head(self, tree_size: int | None = None) -> SignedTreeHead:
        """The latest signed tree head, or the one signed at exactly ``tree_size``."""
        query = "SELECT tree_size, previous_size, timestamp_ms, root_hash, log_id, signature FROM tree_heads"
        with self._lock:
            if tree_size is None:
                row = self._conn.execute(query + " ORDER BY tree_size DESC LIMIT 1").fetchone()
            else:
                row = self._conn.execute(query + " WHERE tree_size = ?", (tree_size,)).fetchone()
        if row is None:
            raise AuditError(f"no signed tree head at size {'latest' if tree_size is None else tree_size}")
        keys = ("tree_size", "previous_size", "timestamp_ms", "root_hash", "log_id", "signature")
        return SignedTreeHead(**dict(zip(keys, row, strict=True)))

    def root(self, tree_size: int) -> bytes:
        """MTH of the first ``tree_size`` entries, from stored subtrees."""
        self._check_size(tree_size)
        return range_hash(self, 0, tree_size)

    def inclusion_proof(self, seq: int, tree_size: int | None = None) -> list[bytes]:
        tree_size = self._size if tree_size is None else tree_size
        self._check_size(tree_size)
        if not 0 <= seq < tree_size:
            raise AuditError(f"entry {seq} is not in a tree of size {tree_size}")
        return inclusion_proof(self, seq, tree_size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self._size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise AuditError(f"no consistency proof from size {old_size} to the smaller size {new_size}")
        return consistency_proof(self, old_size, new_size)

    def _check_size(self, tree_size: int) -> None:
        if not 0 <= tree_size <= self._size:
            raise AuditError(f"tree size {tree_size} is outside the log (size {self._size})")

    def entry(self, seq: int) -> tuple[bytes, bytes]:
        """The stored body and leaf hash of entry ``seq``."""
        with self._lock:
            row = self._conn.execute("SELECT body, leaf_hash FROM entries WHERE seq = ?", (seq,)).fetchone()
        if row is None:
            raise AuditError(f"no entry {seq} in the log (size {self._size})")
        return row[0].encode(), bytes(row[1])

    def events(
        self,
        *,
        job_id: str | None = None,
        model_id: str | None = None,
        partner: str | None = None,
        transfer_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10_000,
        visible: Callable[[LineageEvent], bool] | None = None,
    ) -> list[LogEntry]:
        """Events matching every given filter and ``visible``, in log order (at most ``limit``).

        ``transfer_id`` finds a points transfer's events, whether an event names it alone
        (``transfer_id``) or in the batch it lists (``transfers``).
        """
        clauses, params = ["1 = 1"], []
        for path, value in (("$.job_id", job_id), ("$.model_id", model_id)):
            if value is not None:
                clauses.append(f"json_extract(body, '{path}') = ?")
                params.append(value)
        if transfer_id is not None:
            clauses.append(_NAMES_TRANSFER)
            params += [transfer_id, transfer_id]
        sql = f"SELECT seq, body FROM entries WHERE {' AND '.join(clauses)} ORDER BY seq"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        found: list[LogEntry] = []
        for seq, body in rows:
            event = LineageEvent.from_canonical(body)
            if _matches(event, partner, since, until) and (visible is None or visible(event)):
                found.append((seq, event))
                if len(found) >= limit:
                    break
        return found

    def iter_events(self, *, after: int = -1) -> Iterable[LogEntry]:
        """Every entry after ``after`` (default: all) in log order (read in pages, so a concurrent
        append cannot interleave)."""
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, body FROM entries WHERE seq > ? ORDER BY seq LIMIT 5000", (after,)
                ).fetchall()
            if not rows:
                return
            for seq, body in rows:
                yield seq, LineageEvent.from_canonical(body)
            after = rows[-1][0]


# An entry naming a transfer: as its own ``transfer_id`` or in its ``transfers`` list (SQLite JSON1).
_NAMES_TRANSFER = (
    "(json_extract(body, '$.transfer_id') = ? OR EXISTS (SELECT 1 FROM json_each(body, '$.transfers') AS t"
    " WHERE json_extract(t.value, '$.transfer_id') = ?))"
)


def _insert_head(conn: sqlite3.Connection, head: SignedTreeHead) -> None:
    conn.execute(
        "INSERT INTO tree_heads VALUES (?, ?, ?, ?, ?, ?)",
        (head.tree_size, head.previous_size, head.timestamp_ms, head.root_hash, head.log_id, head.signature),
    )


def _matches(
    event: LineageEvent, partner: str | None, since: datetime | None, until: datetime | None
) -> bool:
    if partner is not None and partner not in event.partner_names():
        return False
    if since is not None and event.time < since:
        return False
    return until is None or event.time < until


def _push_leaf(frontier: list[bytes], size: int, leaf: bytes, node_rows: list[tuple[int, int, bytes]]) -> int:
    """Add a leaf to the right edge; record each subtree it completes. Returns the new size."""
    frontier.append(leaf)
    size += 1
    level, position = 0, size
    while position & 1 == 0:
        right, left = frontier.pop(), frontier.pop()
        parent = node_hash(left, right)
        frontier.append(parent)
        level += 1
        position >>= 1
        node_rows.append((level, position - 1, parent))
    return size
