"""Data-subject rights at the node: access and portability, erasure with deadlines, import.

Only the node holds member-level data, so these requests are served here:

* access / portability: everything the node holds on one member as JSON (PIPL Art. 45,
  GDPR Art. 15 and 20) — the rows of every contract file and the consent history;
* erasure: the member's rows are deleted from every contract file and from the consent store; a
  tombstone with a keyed tag, dates and row counts (no identifier) stays so the member is excluded
  from every later step and the deadline can be shown to be met (PIPL Art. 47, GDPR Art. 17, 12(3));
* withdrawal of consent, as easy as granting it (GDPR Art. 7(3), PIPL Art. 15);
* import of consent records into the store's append-only history (GDPR Art. 7(1) evidence).

A request naming a member the node does not hold is refused (nothing is recorded), so a typo is
never reported as a success. Refusals never quote the id: messages may be logged or forwarded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import ValidationError

from participant_node.consent.errors import SubjectRequestError
from participant_node.consent.store import ConsentStore, ErasureRequest
from participant_node.data.contract import FileKind
from participant_node.data.table_reader import find_file, read_member_ids, read_table
from policies.consent_filter import member_tags
from policies.consent_record import ConsentRecord
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose
from policies.retention import ErasureRules

__all__ = [
    "EXPORT_FORMAT_VERSION",
    "ErasureReceipt",
    "erase_member",
    "export_member",
    "import_consents",
    "overdue_erasures",
    "withdraw_consents",
]

EXPORT_FORMAT_VERSION = 1
_CONSENT_FIELDS = frozenset(ConsentRecord.model_fields)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure did: counts and dates only, safe for the audit log."""

    request_id: str
    received_at: datetime
    deadline: datetime
    completed_at: datetime | None
    rows_deleted: dict[str, int]
    deadline_rule: str = ""
    legal_deadline: datetime | None = None
    legal_rule: str = ""

    @property
    def on_time(self) -> bool:
        return self.completed_at is not None and self.completed_at <= self.deadline


def export_member(
    partner_dir: Path,
    member_id: str,
    *,
    now: Callable[[], datetime] = _utcnow,
    jurisdictions: frozenset[Jurisdiction] = frozenset({Jurisdiction.CN}),
) -> dict[str, Any]:
    """Everything the node holds on ``member_id``, machine-readable (PIPL Art. 45 / GDPR Art. 15, 20).

    The request is recorded (id and dates only) once the export is made; a refused one is not.
    """
    partner_dir = Path(partner_dir)
    received_at = now()
    export: dict[str, Any] = {
        "format_version": EXPORT_FORMAT_VERSION,
        "partner": partner_dir.name,
        "member_id": member_id,
        "exported_at": received_at.isoformat(),
    }
    found = 0
    for kind in FileKind:
        rows = _member_rows(partner_dir, kind, member_id)
        export[kind.value] = rows
        found += len(rows)
    store = ConsentStore.at_partner(partner_dir)
    try:
        export["consent_history"] = [_jsonable(r) for r in store.history(member_id)]
        if not found and not export["consent_history"]:
            raise SubjectRequestError(f"partner {partner_dir.name}: no data held on the requested member")
        store.record_access(received_at=received_at, completed_at=now(), jurisdictions=jurisdictions)
    finally:
        store.close()
    return export


def erase_member(
    partner_dir: Path,
    member_id: str,
    *,
    received_at: datetime,
    jurisdictions: frozenset[Jurisdiction] = frozenset({Jurisdiction.CN}),
    rules: ErasureRules | None = None,
    store: ConsentStore | None = None,
) -> ErasureReceipt:
    """Erase ``member_id`` at the node and keep an identifier-free tombstone with its deadline.

    The deadline is the earliest of the law's limits and the node's own ``rules`` (per
    jurisdiction, per programme). The tombstone is written first, so the member is excluded from
    every later step even if the file rewrite is interrupted; the request is closed when every
    file was rewritten. A member the node does not hold, or already erased, is refused.
    """
    partner_dir = Path(partner_dir)
    deadline = (rules or ErasureRules()).deadline(received_at, jurisdictions)
    own_store = store is None
    store = store or ConsentStore.at_partner(partner_dir)
    try:
        tag = int(member_tags(pd.Series([member_id]), store.tag_key)[0])
        _require_erasable(partner_dir, member_id, tag, store)
        request = store.open_erasure(
            tag, received_at=received_at, jurisdictions=jurisdictions, deadline=deadline.due
        )
        deleted = {kind.value: _delete_rows(partner_dir, kind, member_id) for kind in FileKind}
        store.complete_erasure(request.request_id, member_id, rows_deleted=deleted)
        done = next(r for r in store.erasure_requests() if r.request_id == request.request_id)
    finally:
        if own_store:
            store.close()
    return ErasureReceipt(
        done.request_id,
        done.received_at,
        done.deadline,
        done.completed_at,
        done.rows_deleted,
        deadline_rule=deadline.rule,
        legal_deadline=deadline.legal_due,
        legal_rule=deadline.legal_rule,
    )


def _require_erasable(partner_dir: Path, member_id: str, tag: int, store: ConsentStore) -> None:
    if tag in set(store.erased_tags().tolist()):
        raise SubjectRequestError(
            f"partner {partner_dir.name}: the requested member was already erased "
            "(see `loyalfed consent erasures`); nothing more to erase"
        )
    if member_id in store.member_ids():
        return
    if not any(member_id in _file_member_ids(partner_dir, kind) for kind in FileKind):
        raise SubjectRequestError(
            f"partner {partner_dir.name}: no member with the given id (not in any data file nor "
            "in the consent store); nothing erased — check the id"
        )


def withdraw_consents(
    partner_dir: Path,
    member_ids: Sequence[str],
    purposes: Iterable[Purpose],
    *,
    at: datetime,
    store: ConsentStore | None = None,
) -> int:
    """Record each member's withdrawal of each purpose; refuse the whole request if an id is unknown.

    Known members are those of the members file and of the consent store's history.
    """
    partner_dir = Path(partner_dir)
    own_store = store is None
    store = store or ConsentStore.at_partner(partner_dir)
    try:
        known = _file_member_ids(partner_dir, FileKind.MEMBERS) | store.member_ids()
        unknown = [number for number, member in enumerate(member_ids, start=1) if member not in known]
        if unknown:
            shown = ", ".join(map(str, unknown[:10])) + (" …" if len(unknown) > 10 else "")
            raise SubjectRequestError(
                f"partner {partner_dir.name}: {len(unknown)} of {len(member_ids)} member id(s) are not "
                f"members of this node (id number {shown} in the order given); nothing recorded"
            )
        return store.withdraw(member_ids, purposes, at=at)
    finally:
        if own_store:
            store.close()


def overdue_erasures(partner_dir: Path, *, now: datetime) -> list[ErasureRequest]:
    """Erasure requests still open after their deadline, or completed late."""
    store = ConsentStore.at_partner(Path(partner_dir))
    try:
        return [r for r in store.erasure_requests() if r.overdue(now)]
    finally:
        store.close()


def import_consents(partner_dir: Path, path: Path, *, store: ConsentStore | None = None) -> int:
    """Append every consent record of ``path`` (CSV or Parquet, consents contract) to the store.

    Rows are validated one by one; the first bad row aborts the import (nothing is written) with an
    error naming the file, row and field.
    """
    raw = read_table(Path(path))
    frame = raw.frame
    unknown = sorted(set(frame.columns) - _CONSENT_FIELDS)
    if unknown:
        raise SubjectRequestError(f"{raw.file}: unknown consent columns {unknown}")
    records = []
    for number, row in enumerate(frame.to_dict(orient="records"), start=raw.first_row):
        values = {k: v for k, v in row.items() if not _blank(v)}
        try:
            records.append(ConsentRecord.model_validate(values))
        except ValidationError as err:
            first = err.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise SubjectRequestError(
                f"{raw.file}: {raw.row_label} {number}, column {field}: {first['msg']}"
            ) from err
    own_store = store is None
    store = store or ConsentStore.at_partner(Path(partner_dir))
    try:
        return store.append(records, source=f"import:{raw.file}")
    finally:
        if own_store:
            store.close()


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or bool(pd.isna(value))


def _file_member_ids(partner_dir: Path, kind: FileKind) -> set[str]:
    path = find_file(partner_dir, kind)
    return set() if path is None else set(read_member_ids(path))


def _member_rows(partner_dir: Path, kind: FileKind, member_id: str) -> list[dict[str, Any]]:
    path = find_file(partner_dir, kind)
    if path is None:
        return []
    frame = read_table(path).frame
    mine = frame[frame["member_id"].astype("string").str.strip() == member_id]
    records = mine.astype(object).where(mine.notna(), None).to_dict(orient="records")
    return [_jsonable(r) for r in records]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    # Strict JSON (no NaN): missing values are null, dates ISO strings.
    return json.loads(json.dumps(row, default=str, allow_nan=False))


def _delete_rows(partner_dir: Path, kind: FileKind, member_id: str) -> int:
    path = find_file(partner_dir, kind)
    if path is None:
        return 0
    temporary = path.with_name(f".{path.name}.erasing")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        ids = pc.utf8_trim_whitespace(pc.cast(table["member_id"], pa.string()))
        keep = pc.fill_null(pc.not_equal(ids, member_id), True)
        kept = table.filter(keep)
        removed = table.num_rows - kept.num_rows
        if removed:
            pq.write_table(kept, temporary)
    else:
        frame = read_table(path).frame
        keep = frame["member_id"].astype("string").str.strip() != member_id
        removed = int((~keep).sum())
        if removed:
            frame.loc[keep].to_csv(temporary, index=False)
    if removed:
        os.replace(temporary, path)  # atomic: readers see the old file or the new one
    return int(removed)
