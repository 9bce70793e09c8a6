"""Dataset schema summaries: column names and row counts rounded to the nearest 100, never values."""

from __future__ import annotations

import hashlib
import json

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import EventType
from audit.lineage_event import DatasetRef
from coordinator.platform.audit_trail import AuditTrail
from coordinator.platform.errors import InvalidRequestError
from coordinator.platform.organisations import get_organisation
from coordinator.platform.principals import Principal
from coordinator.store.tables import DatasetRow

__all__ = ["ROW_ROUNDING", "list_datasets", "register_dataset"]

# Counts are rounded so a summary cannot reveal one member joining or leaving (DESIGN.md: onboard
# with row counts rounded, never data).
ROW_ROUNDING = 100


def register_dataset(
    session: Session,
    trail: AuditTrail,
    *,
    actor: Principal,
    partner_id: str,
    name: str,
    tables: dict[str, dict[str, object]],
) -> DatasetRow:
    """Record (or replace) ``partner_id``'s summary of dataset ``name``."""
    get_organisation(session, partner_id)
    for table, summary in tables.items():
        rows = summary.get("rows_rounded")
        if not isinstance(rows, int) or rows < 0 or rows % ROW_ROUNDING:
            raise InvalidRequestError(
                f"tables.{table}.rows_rounded must be a count rounded to the nearest {ROW_ROUNDING}"
            )
    query = select(DatasetRow).where(DatasetRow.partner_id == partner_id, DatasetRow.name == name)
    row = session.scalar(query) or DatasetRow(partner_id=partner_id, name=name)
    row.tables, row.registered_at = tables, trail.clock()
    session.add(row)
    trail.commit(
        session,
        EventType.DATASET_REGISTERED,
        actor,
        partner=partner_id,
        inputs=(_reference(partner_id, name, tables),),
        details={"tables": len(tables)},
    )
    return row


def _reference(partner_id: str, name: str, tables: dict[str, dict[str, object]]) -> DatasetRef:
    """The dataset as lineage names it: its partner, a fingerprint of the summary (never of data)."""
    summary = json.dumps(tables, sort_keys=True, separators=(",", ":")).encode("utf-8")
    fingerprint = "sha256:" + hashlib.sha256(summary).hexdigest()
    try:
        return DatasetRef(partner=partner_id, fingerprint=fingerprint, name=name)
    except ValidationError:  # a name the audit log's charset refuses is left out, never the event
        return DatasetRef(partner=partner_id, fingerprint=fingerprint)


def list_datasets(session: Session, *, partner: str | None = None) -> list[DatasetRow]:
    query = select(DatasetRow).order_by(DatasetRow.partner_id, DatasetRow.name)
    if partner is not None:
        query = query.where(DatasetRow.partner_id == partner)
    return list(session.scalars(query))
