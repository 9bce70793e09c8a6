"""The node's consent store: an append-only SQLite history of consents, withdrawals and erasures.

It lives at ``<partner_dir>/.loyalfed/consent.sqlite`` (``store_path``), next to the partner's data
and never shipped anywhere; the folder is created 0700 and the file 0600. Nothing is overwritten:
a withdrawal is a new record (GDPR Art. 7(1) asks the controller to demonstrate consent, so the
grant must survive its withdrawal). Erasure is the one deletion: the member's records go, and a
tombstone without identifiers stays (a keyed tag that only this node can recompute, the request's
dates and row counts) so the member stays excluded and the deadline can be shown to be met
(GDPR Art. 17 and 12(3), PIPL Art. 47).

The tag key is kept out of the database, in its own 0600 file beside it (``member_tag.key``): a
copy of ``consent.sqlite`` alone (a backup, a stolen file) holds 64-bit keyed tags and no key, so
it cannot be used to test a guessed member id against the tombstones. A store whose tombstones
outlive their key fails closed: erased members could no longer be recognised.
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from audit.identifier_guard import identifier_problem
from participant_node.consent.errors import ConsentStoreError
from participant_node.private_state import private_directory, private_file, write_private_file
from policies.consent_record import ConsentAction, ConsentRecord
from policies.jurisdiction import Jurisdiction, erasure_deadline
from policies.purpose import Purpose

__all__ = ["STORE_RELATIVE_PATH", "AccessRequest", "ConsentStore", "ErasureRequest", "store_path"]

STORE_RELATIVE_PATH = Path(".loyalfed") / "consent.sqlite"
TAG_KEY_FILE = "member_tag.key"
_KEY_ALPHABET = string.ascii_letters + string.digits

_metadata = sa.MetaData()
_meta = sa.Table(
    "meta", _metadata, sa.Column("key", sa.String, primary_key=True), sa.Column("value", sa.String)
)
_records = sa.Table(
    "consent_records",
    _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.String, nullable=False, index=True),
    sa.Column("purpose", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("scope", sa.String, nullable=False),
    sa.Column("lawful_basis", sa.String, nullable=False),
    sa.Column("granted_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime),
    sa.Column("withdrawn_at", sa.DateTime),
    sa.Column("cross_border", sa.Boolean, nullable=False),
    sa.Column("sensitive", sa.Boolean, nullable=False),
    sa.Column("notice_version", sa.String),
    sa.Column("evidence_hash", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
    sa.Column("source", sa.String, nullable=False),
)
_erasures = sa.Table(
    "erasure_requests",
    _metadata,
    sa.Column("request_id", sa.String, primary_key=True),
    sa.Column("member_tag", sa.String(16)),  # keyed SipHash tag, hex; never the member id
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("deadline", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
    sa.Column("rows_deleted", sa.String),  # JSON {file: count}
    sa.Column("jurisdictions", sa.String, nullable=False),
)

# Access (and portability) requests served: dates only. Kept so the node can show, and report to
# its coordinator, that each was answered within its deadline (GDPR Art. 12(3), PIPL Art. 50).
_access = sa.Table(
    "access_requests",
    _metadata,
    sa.Column("request_id", sa.String, primary_key=True),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("deadline", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
)


def store_path(partner_dir: Path) -> Path:
    """Where the consent store of the partner folder ``partner_dir`` lives."""
    return Path(partner_dir) / STORE_RELATIVE_PATH


@dataclass(frozen=True)
class ErasureRequest:
    """An erasure request's tombstone: dates and counts, no identifier."""

    request_id: str
    received_at: datetime
    deadline: datetime
    completed_at: datetime | None
    rows_deleted: dict[str, int]

    def overdue(self, now: datetime) -> bool:
        """Whether the request is still open after its deadline, or was completed late."""
        finished = self.completed_at or now
        return finished > self.deadline


@dataclass(frozen=True)
class AccessRequest:
    """An access request served by the node: dates only, no identifier."""

    request_id: str
    received_at: datetime
    deadline: datetime
    completed_at: datetime | None


def _request_id(kind: str) -> str:
    """A random request id that never reads as an identifier: the id is reported to the
    coordinator, whose guard refuses a run of 7 digits (a phone number or member id)."""
    while True:
        candidate = f"{kind}-{uuid.uuid4().hex[:12]}"
        if identifier_problem(candidate) is None:
            return candidate


def _secure_delete(connection: object, _record: object) -> None:
    # Erased records must not survive in SQLite's free pages: overwrite deleted content with zeros
    # (https://www.sqlite.org/pragma.html#pragma_secure_delete).
    cursor = connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA secure_delete = ON")
    cursor.close()


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ConsentStore:
    """Append-only consent history of one node, in SQLite.

    Parameters
    ----------
    path
        The SQLite file; created with its folder if missing.
    now
        Clock used for ``recorded_at`` stamps (injectable for tests).
    key_rng
        Source of the node's tag key, drawn once when the store is created.
    key_path
        The tag key file (default: ``member_tag.key`` beside ``path``), 0600, never in the database.
    """

    def __init__(
        self,
        path: Path,
        *,
        now: Callable[[], datetime] = _utcnow,
        key_rng: secrets.SystemRandom | None = None,
        key_path: Path | None = None,
    ) -> None:
        private_directory(path.parent)
        private_file(path)  # SQLite gives its journal the database file's mode
        self.path = path
        self.key_path = key_path or path.parent / TAG_KEY_FILE
        self._now = now
        self._engine = sa.create_engine(f"sqlite:///{path}")
        sa.event.listen(self._engine, "connect", _secure_delete)
        try:
            _metadata.create_all(self._engine)
        except sa.exc.DatabaseError as err:
            raise ConsentStoreError(f"{path}: not a consent store ({type(err).__name__})") from err
        self.tag_key = self._tag_key(key_rng or secrets.SystemRandom())

    @classmethod
    def at_partner(cls, partner_dir: Path, **kwargs: object) -> ConsentStore:
        """Open (or create) the store of the partner folder ``partner_dir``."""
        if not Path(partner_dir).is_dir():
            raise ConsentStoreError(f"{partner_dir}: partner folder not found")
        return cls(store_path(partner_dir), **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self._engine.dispose()

    def _tag_key(self, rng: secrets.SystemRandom) -> str:
        legacy = self._pop_legacy_key()
        if self.key_path.is_file():
            return self._read_key()
        if legacy is None:
            if self._has_tombstones():
                raise ConsentStoreError(
                    f"{self.key_path}: member tag key missing while {self.path.name} holds erasure "
                    "tombstones; restore the key file from the node's backup (erased members could "
                    "not be recognised without it)"
                )
            legacy = "".join(rng.choice(_KEY_ALPHABET) for _ in range(16))  # ~95 bits
        write_private_file(self.key_path, legacy.encode("ascii"))
        return legacy

    def _pop_legacy_key(self) -> str | None:
        """Move a key that older stores kept in the database out of it (secure_delete zeroes it)."""
        with self._engine.begin() as conn:
            key = conn.execute(sa.select(_meta.c.value).where(_meta.c.key == "tag_key")).scalar()
            if key is not None:
                if not self.key_path.is_file():
                    write_private_file(self.key_path, str(key).encode("ascii"))
                conn.execute(_meta.delete().where(_meta.c.key == "tag_key"))
        if key is not None:
            with self._engine.connect() as conn:
                conn.execute(sa.text("VACUUM"))  # rewrite the file: no copy of the key in free pages
        return None if key is None else str(key)

    def _read_key(self) -> str:
        key = self.key_path.read_text(encoding="ascii").strip()
        if len(key) != 16 or any(c not in _KEY_ALPHABET for c in key):
            raise ConsentStoreError(f"{self.key_path}: not a member tag key (16 letters or digits)")
        return key

    def _has_tombstones(self) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(_erasures)).scalar_one() > 0

    def append(self, records: Iterable[ConsentRecord], *, source: str) -> int:
        """Append records (grants or withdrawals) to the history; returns how many were added."""
        recorded_at = self._now()
        rows = [
            {
                **record.model_dump(),
                "evidence_hash": record.evidence_hash(),
                "recorded_at": recorded_at,
                "source": source,
            }
            for record in records
        ]
        if rows:
            with self._engine.begin() as conn:
                conn.execute(_records.insert(), rows)
        return len(rows)

    def withdraw(
        self, member_ids: Iterable[str], purposes: Iterable[Purpose], *, at: datetime, source: str = "cli"
    ) -> int:
        """Record a withdrawal of each member's consent to each purpose, effective at ``at``.

        As easy as granting (GDPR Art. 7(3), PIPL Art. 15): one record per member and purpose.
        """
        purposes = list(purposes)
        records = (
            ConsentRecord(
                member_id=m, purpose=p, action=ConsentAction.WITHDRAW, granted_at=at, withdrawn_at=at
            )
            for m in dict.fromkeys(member_ids)
            for p in purposes
        )
        return self.append(records, source=source)

    def grants(self) -> pd.DataFrame:
        """Grants recorded in the store, as a consents frame of the data contract."""
        query = sa.select(
            _records.c.member_id,
            _records.c.purpose,
            _records.c.granted_at,
            _records.c.expires_at,
            _records.c.withdrawn_at,
            _records.c.lawful_basis,
            _records.c.scope,
            _records.c.cross_border,
            _records.c.sensitive,
        ).where(_records.c.action == ConsentAction.GRANT.value)
        return self._frame(query, ("granted_at", "expires_at", "withdrawn_at"))

    def withdrawals(self) -> pd.DataFrame:
        """Withdrawals recorded in the store: ``member_id``, ``purpose``, ``withdrawn_at``."""
        query = sa.select(_records.c.member_id, _records.c.purpose, _records.c.withdrawn_at).where(
            _records.c.action == ConsentAction.WITHDRAW.value
        )
        return self._frame(query, ("withdrawn_at",))

    def history(self, member_id: str) -> list[dict[str, object]]:
        """Every record the store holds on ``member_id``, oldest first (for access requests)."""
        query = sa.select(_records).where(_records.c.member_id == member_id).order_by(_records.c.seq)
        with self._engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def member_ids(self) -> set[str]:
        """Every member id the store holds records on (grants or withdrawals)."""
        with self._engine.connect() as conn:
            return set(conn.execute(sa.select(_records.c.member_id).distinct()).scalars())

    def _frame(self, query: sa.Select, dates: tuple[str, ...]) -> pd.DataFrame:
        with self._engine.connect() as conn:
            frame = pd.read_sql(query, conn)
        for column in frame.columns:
            if column in dates:
                frame[column] = pd.to_datetime(frame[column]).astype("M8[us]")
            elif column in ("cross_border", "sensitive"):
                frame[column] = frame[column].astype(bool)
            else:
                frame[column] = frame[column].astype("string")
        return frame

    def open_erasure(
        self,
        member_tag: int,
        *,
        received_at: datetime,
        jurisdictions: frozenset[Jurisdiction],
        deadline: datetime | None = None,
    ) -> ErasureRequest:
        """Record an erasure request due at ``deadline`` (default: the stricter of the laws)."""
        due = deadline or erasure_deadline(received_at, jurisdictions)
        if due > erasure_deadline(received_at, jurisdictions):
            raise ConsentStoreError("an erasure deadline may be shorter than the law's, never longer")
        request = ErasureRequest(_request_id("erasure"), received_at, due, None, {})
        with self._engine.begin() as conn:
            conn.execute(
                _erasures.insert().values(
                    request_id=request.request_id,
                    member_tag=f"{member_tag:016x}",
                    received_at=received_at,
                    deadline=request.deadline,
                    jurisdictions=",".join(sorted(jurisdictions)),
                )
            )
        return request

    def complete_erasure(self, request_id: str, member_id: str, *, rows_deleted: dict[str, int]) -> None:
        """Delete the member's consent history and close the request with its row counts."""
        with self._engine.begin() as conn:
            removed = conn.execute(_records.delete().where(_records.c.member_id == member_id)).rowcount
            counts = {**rows_deleted, "consent_store": int(removed)}
            done = conn.execute(
                _erasures.update()
                .where(_erasures.c.request_id == request_id)
                .values(completed_at=self._now(), rows_deleted=json.dumps(counts, sort_keys=True))
            )
            if done.rowcount != 1:
                raise ConsentStoreError(f"erasure request {request_id} not found in {self.path}")

    def erasure_requests(self) -> list[ErasureRequest]:
        """All erasure tombstones, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_erasures).order_by(_erasures.c.received_at)).all()
        return [
            ErasureRequest(
                r.request_id, r.received_at, r.deadline, r.completed_at, json.loads(r.rows_deleted or "{}")
            )
            for r in rows
        ]

    def record_access(
        self, *, received_at: datetime, completed_at: datetime, jurisdictions: frozenset[Jurisdiction]
    ) -> AccessRequest:
        """Record an access request answered at ``completed_at``; its deadline is the law's (GDPR
        Art. 12(3) and GB/T 35273-2020 §8.7 set the same limits for every data-subject request)."""
        request = AccessRequest(
            _request_id("access"), received_at, erasure_deadline(received_at, jurisdictions), completed_at
        )
        with self._engine.begin() as conn:
            conn.execute(
                _access.insert().values(
                    request_id=request.request_id,
                    received_at=received_at,
                    deadline=request.deadline,
                    completed_at=completed_at,
                )
            )
        return request

    def access_requests(self) -> list[AccessRequest]:
        """Every access request served, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_access).order_by(_access.c.received_at)).all()
        return [AccessRequest(r.request_id, r.received_at, r.deadline, r.completed_at) for r in rows]

    def erased_tags(self) -> np.ndarray:
        """Tags of erased (or erasure-requested) members, for exclusion from every later step."""
        with self._engine.connect() as conn:
            tags = conn.execute(sa.select(_erasures.c.member_tag)).scalars().all()
        return np.array([int(t, 16) for t in tags if t], dtype=np.uint64)
