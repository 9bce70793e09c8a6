"""Load a partner folder into typed frames, counting and reporting every unusable row.

Fatal problems (a missing required file or column, an empty, non-UTF-8 or unreadable file, a
Parquet column stored with an impossible type) raise `DataContractError`. Row-level problems
make the row unusable: it is left out of the frames and counted, per file and reason, in
``PartnerData.report``; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from participant_node.data.column_parsing import parse_column
from participant_node.data.contract import CONTRACT, FileKind, FileSpec
from participant_node.data.errors import DataContractError
from participant_node.data.table_reader import RawTable, find_file, read_table
from participant_node.data.validation_report import FileReport, PartnerReport, Problem

__all__ = ["PartnerData", "fingerprint_partner", "load_partner"]

_Invalid = list[tuple[np.ndarray, str, str]]  # (mask, column, reason)
_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class PartnerData:
    """A partner's usable rows, typed as the contract says, and the report of what was left out."""

    path: Path
    members: pd.DataFrame
    transactions: pd.DataFrame
    consents: pd.DataFrame
    campaigns: pd.DataFrame | None
    report: PartnerReport

    def frame(self, kind: FileKind) -> pd.DataFrame | None:
        return getattr(self, kind.value)

    def schema_summary(self, round_to: int = 100) -> dict[str, Any]:
        """Column names and row counts rounded to ``round_to``: what a node may tell the coordinator."""
        summary: dict[str, Any] = {}
        for kind in FileKind:
            frame = self.frame(kind)
            if frame is not None:
                filled = [c for c in frame.columns if frame[c].notna().any()]
                summary[kind.value] = {
                    "columns": filled,
                    "rows": int(round(len(frame) / round_to) * round_to),
                }
        return summary


def load_partner(path: Path | str) -> PartnerData:
    """Read and validate the partner folder ``path`` (members, transactions, consents[, campaigns])."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataContractError("not a partner folder (no such directory)", file=str(folder))
    report = PartnerReport(partner=folder.name)
    members = _load_file(folder, CONTRACT[FileKind.MEMBERS], report, known_members=None)
    assert members is not None  # members is a required file: _load_file raised otherwise
    known = pd.Index(members["member_id"].dropna().unique())
    frames = {
        kind: _load_file(folder, CONTRACT[kind], report, known_members=known)
        for kind in (FileKind.TRANSACTIONS, FileKind.CONSENTS, FileKind.CAMPAIGNS)
    }
    transactions, consents = frames[FileKind.TRANSACTIONS], frames[FileKind.CONSENTS]
    assert transactions is not None and consents is not None
    return PartnerData(folder, members, transactions, consents, frames[FileKind.CAMPAIGNS], report)


def fingerprint_partner(path: Path | str) -> str:
    """SHA-256 over the names and bytes of a partner folder's contract files, in contract order."""
    digest = hashlib.sha256()
    for kind in FileKind:
        file = find_file(Path(path), kind)
        if file is not None:
            digest.update(file.name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _load_file(
    folder: Path, spec: FileSpec, report: PartnerReport, *, known_members: pd.Index | None
) -> pd.DataFrame | None:
    path = find_file(folder, spec.kind)
    if path is None:
        if not spec.required_file:
            return None
        raise DataContractError(
            f"missing required file '{spec.kind.value}' ({spec.kind.value}.parquet or {spec.kind.value}.csv)",
            file=str(folder),
        )
    table = read_table(path)
    _check_columns(table, spec)
    frame, invalid = _typed_frame(table, spec)
    invalid += _row_rules(frame, spec, known_members)
    unusable = np.zeros(len(frame), dtype=bool)
    for mask, _, _ in invalid:
        unusable |= mask
    ignored = tuple(c for c in table.frame.columns if c not in spec.names)
    report.files[spec.kind] = FileReport(
        kind=spec.kind,
        file=table.file,
        rows_read=len(frame),
        rows_usable=int((~unusable).sum()),
        problems=tuple(_problem(table, mask, column, reason) for mask, column, reason in invalid),
        ignored_columns=ignored,
    )
    return frame.loc[~unusable].reset_index(drop=True)


def _check_columns(table: RawTable, spec: FileSpec) -> None:
    header = "line 1" if table.row_label == "line" else "schema"
    present = set(table.frame.columns)
    if len(present) != len(table.frame.columns):
        duplicated = sorted({c for c in table.frame.columns if list(table.frame.columns).count(c) > 1})
        raise DataContractError(
            "duplicate column in the header", file=table.file, row=header, column=duplicated[0]
        )
    for name in spec.required_names:
        if name not in present:
            raise DataContractError(
                f"missing required column; the file has: {', '.join(table.frame.columns)}",
                file=table.file,
                row=header,
                column=name,
            )
    if spec.one_of and not present.intersection(spec.one_of):
        raise DataContractError(
            f"missing column: at least one of {' or '.join(spec.one_of)} is required",
            file=table.file,
            row=header,
            column="/".join(spec.one_of),
        )


def _typed_frame(table: RawTable, spec: FileSpec) -> tuple[pd.DataFrame, _Invalid]:
    columns: dict[str, pd.Series] = {}
    invalid: _Invalid = []
    raw = table.frame.reset_index(drop=True)
    for column_spec in spec.columns:
        if column_spec.name not in raw.columns:
            raw_column = pd.Series(pd.NA, index=raw.index, dtype="object")
        else:
            raw_column = raw[column_spec.name]
        parsed = parse_column(raw_column, column_spec, file=table.file)
        columns[column_spec.name] = parsed.values
        invalid += [(mask, column_spec.name, reason) for mask, reason in parsed.invalid]
    return pd.DataFrame(columns), invalid


def _row_rules(frame: pd.DataFrame, spec: FileSpec, known_members: pd.Index | None) -> _Invalid:
    """Rules across columns or files: unique members, known members, dates in order."""
    rules: _Invalid = []
    ids = frame["member_id"]
    if spec.kind is FileKind.MEMBERS:
        duplicated = (ids.duplicated(keep=False) & ids.notna()).to_numpy(dtype=bool)
        rules.append((duplicated, "member_id", "duplicate member_id: every row with it is unusable"))
        no_contact = (frame["phone"].isna() & frame["email"].isna()).to_numpy(dtype=bool)
        rules.append((no_contact, "phone/email", "neither phone nor email"))
    if known_members is not None:
        known = pc.is_in(pa.array(ids, type=pa.string(), from_pandas=True), value_set=pa.array(known_members))
        unknown = ids.notna().to_numpy(dtype=bool) & ~pc.fill_null(known, False).to_numpy(
            zero_copy_only=False
        )
        rules.append((unknown, "member_id", "unknown member: not among the usable rows of the members file"))
    if spec.kind is FileKind.CONSENTS:
        for column in ("expires_at", "withdrawn_at"):
            rules.append((_before(frame[column], frame["granted_at"]), column, "earlier than granted_at"))
    if spec.kind is FileKind.CAMPAIGNS:
        rules.append((_before(frame["end_date"], frame["start_date"]), "end_date", "earlier than start_date"))
    return [(mask, column, reason) for mask, column, reason in rules if mask.any()]


def _before(later: pd.Series, earlier: pd.Series) -> np.ndarray:
    return (later < earlier).fillna(False).to_numpy(dtype=bool)


def _problem(table: RawTable, mask: np.ndarray, column: str, reason: str) -> Problem:
    rows = table.row_numbers(mask)
    return Problem(
        file=table.file,
        column=column,
        reason=reason,
        count=len(rows),
        rows=tuple(int(r) for r in rows[:_EXAMPLE_ROWS]),
        row_label=table.row_label,
    )
