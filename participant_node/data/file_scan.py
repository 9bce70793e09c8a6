"""Check one contract file chunk by chunk: typed rows, unusable rows counted by reason, warnings.

Only one chunk is parsed at a time; what outlives a chunk is one byte per row (is it usable?),
the reasons' counts and first rows, the members' ids (members file only, for duplicates and for
the other files' "unknown member" rule), the plausibility state and, when the caller wants the
rows, the typed usable rows themselves.

Nested Parquet columns (lists, structs, maps) have no place in the contract: a required one makes
the file unreadable, an optional one is skipped and reported by name, any other is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from participant_node.data.column_parsing import RowIssue, parse_column
from participant_node.data.contract import FileKind, FileSpec
from participant_node.data.errors import DataContractError
from participant_node.data.plausibility import PlausibilityCheck
from participant_node.data.table_reader import CsvRestart, TableChunk, TableSource, open_table
from participant_node.data.validation_report import FileReport, Problem

__all__ = ["ScannedFile", "scan_file"]

_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class ScannedFile:
    """A file's report, its usable typed rows (if kept) and, for members, the usable member ids."""

    report: FileReport
    frame: pd.DataFrame | None
    member_ids: pa.Array | None


@dataclass
class _Tally:
    message: str
    count: int = 0
    rows: list[int] = field(default_factory=list)

    def add(self, indices: np.ndarray) -> None:
        self.count += len(indices)
        self.rows += [int(i) for i in indices[: _EXAMPLE_ROWS - len(self.rows)]]


@dataclass
class _Scan:
    """The state of one pass over a file."""

    source: TableSource
    spec: FileSpec
    known_members: pa.Array | None
    keep_rows: bool
    plausibility: PlausibilityCheck
    tallies: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    rows_read: int = 0
    rows_usable: int = 0
    usable: list[np.ndarray] = field(default_factory=list)  # members only: duplicates come last
    kept: list[pd.DataFrame] = field(default_factory=list)
    ids: list[pa.ChunkedArray] = field(default_factory=list)

    def record(self, column: str, issue: RowIssue, start: int) -> None:
        tally = self.tallies.setdefault((column, issue.reason), _Tally(issue.message))
        tally.add(np.flatnonzero(issue.mask) + start)


def scan_file(
    path: Path, spec: FileSpec, *, known_members: pa.Array | None, keep_rows: bool, now: datetime
) -> ScannedFile:
    """Check ``path`` against ``spec``; raise `DataContractError` if it cannot be read at all."""
    source = open_table(path)
    skipped = _check_columns(source, spec)
    wanted = [c for c in spec.names if c in source.columns and c not in skipped]
    try:
        return _scan(source, spec, wanted, skipped, known_members, keep_rows, now)
    except CsvRestart:
        return _scan(source.with_pandas(), spec, wanted, skipped, known_members, keep_rows, now)


def _scan(
    source: TableSource,
    spec: FileSpec,
    wanted: list[str],
    skipped: dict[str, str],
    known_members: pa.Array | None,
    keep_rows: bool,
    now: datetime,
) -> ScannedFile:
    plausibility = PlausibilityCheck(spec, now, 0 if known_members is None else len(known_members))
    scan = _Scan(source, spec, known_members, keep_rows, plausibility)
    for chunk in source.chunks(wanted):
        _take_chunk(scan, chunk)
    if scan.rows_read == 0:
        raise DataContractError("empty file: a header but no data rows", file=source.file, row="line 2")
    member_ids, frame = None, None
    if spec.kind is FileKind.MEMBERS:
        usable = np.concatenate(scan.usable)
        member_ids = _finish_members(scan, usable)
        scan.rows_usable = int(usable.sum())
        frame = _members_frame(scan, usable) if keep_rows else None
    elif keep_rows:
        frame = pd.concat(scan.kept, ignore_index=True) if len(scan.kept) > 1 else scan.kept[0]
    report = FileReport(
        kind=spec.kind,
        file=source.file,
        rows_read=scan.rows_read,
        rows_usable=scan.rows_usable,
        problems=tuple(_problem(source, column, tally) for (column, _), tally in scan.tallies.items()),
        ignored_columns=tuple(c for c in source.columns if c not in spec.names),
        warnings=tuple(
            scan.plausibility.warnings(
                file=source.file, row_label=source.row_label, first_row=source.first_row
            )
        ),
        skipped_columns=skipped,
    )
    return ScannedFile(report, frame, member_ids)


def _take_chunk(scan: _Scan, chunk: TableChunk) -> None:
    n = chunk.table.num_rows
    columns: dict[str, pd.Series] = {}
    issues: list[tuple[str, RowIssue]] = []
    for column_spec in scan.spec.columns:
        if column_spec.name in chunk.table.column_names:
            raw = chunk.table.column(column_spec.name)
        else:
            raw = pa.chunked_array([pa.nulls(n, pa.string())])
        parsed = parse_column(raw, column_spec, file=scan.source.file)
        columns[column_spec.name] = parsed.values
        issues += [(column_spec.name, issue) for issue in parsed.invalid]
    frame = pd.DataFrame(columns)
    codes = _member_codes(frame["member_id"], scan.known_members)
    issues += _row_rules(frame, scan.spec, codes)
    usable = np.ones(n, dtype=bool)
    for column, issue in issues:
        scan.record(column, issue, chunk.start)
        usable &= ~issue.mask
    scan.rows_read += n
    scan.rows_usable += int(usable.sum())
    if scan.spec.kind is FileKind.MEMBERS:
        scan.usable.append(usable)
        scan.ids.append(pa.chunked_array([pa.array(frame["member_id"], type=pa.string(), from_pandas=True)]))
    scan.plausibility.observe(frame, usable, chunk.start, codes)
    if scan.keep_rows:
        # Members are filtered once duplicates across the whole file are known.
        kept = frame if scan.spec.kind is FileKind.MEMBERS else frame.loc[usable].reset_index(drop=True)
        scan.kept.append(kept)
    pa.default_memory_pool().release_unused()  # hand the chunk's buffers back to the system


def _member_codes(ids: pd.Series, known_members: pa.Array | None) -> np.ndarray | None:
    """Each row's place among the members file's usable ids (-1: not there), or None for members."""
    if known_members is None:
        return None
    found = pc.index_in(pa.array(ids, type=pa.string(), from_pandas=True), value_set=known_members)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False)


def _row_rules(frame: pd.DataFrame, spec: FileSpec, codes: np.ndarray | None) -> list[tuple[str, RowIssue]]:
    """Rules across columns or files, row by row: contact details, known members, dates in order."""
    rules: list[tuple[str, RowIssue]] = []
    ids = frame["member_id"]
    if spec.kind is FileKind.MEMBERS:
        no_contact = (frame["phone"].isna() & frame["email"].isna()).to_numpy(dtype=bool)
        rules.append(("phone/email", RowIssue(no_contact, "neither phone nor email")))
    if codes is not None:
        unknown = ids.notna().to_numpy(dtype=bool) & (codes < 0)
        reason = "unknown member: not among the usable rows of the members file"
        rules.append(("member_id", RowIssue(unknown, reason)))
    if spec.kind is FileKind.CONSENTS:
        for column in ("expires_at", "withdrawn_at"):
            rules.append(
                (column, RowIssue(_before(frame[column], frame["granted_at"]), "earlier than granted_at"))
            )
    if spec.kind is FileKind.CAMPAIGNS:
        rules.append(
            ("end_date", RowIssue(_before(frame["end_date"], frame["start_date"]), "earlier than start_date"))
        )
    return [(column, issue) for column, issue in rules if issue.mask.any()]


def _before(later: pd.Series, earlier: pd.Series) -> np.ndarray:
    return (later < earlier).fillna(False).to_numpy(dtype=bool)


def _finish_members(scan: _Scan, usable: np.ndarray) -> pa.Array:
    """Mark every row of a duplicated member_id unusable; return the usable member ids."""
    ids = pa.chunked_array([chunk for ids in scan.ids for chunk in ids.chunks], type=pa.string())
    series = pd.Series(pd.arrays.ArrowStringArray(ids))
    duplicated = (series.duplicated(keep=False) & series.notna()).to_numpy(dtype=bool)
    if duplicated.any():
        reason = "duplicate member_id: every row with it is unusable"
        scan.record("member_id", RowIssue(duplicated, reason), 0)
        usable &= ~duplicated
    return pc.filter(ids, pa.array(usable)).combine_chunks()


def _members_frame(scan: _Scan, usable: np.ndarray) -> pd.DataFrame:
    frame = pd.concat(scan.kept, ignore_index=True) if len(scan.kept) > 1 else scan.kept[0]
    return frame.loc[usable].reset_index(drop=True)


def _check_columns(source: TableSource, spec: FileSpec) -> dict[str, str]:
    """Refuse a header without the required columns; return the optional columns to skip, and why."""
    header = "line 1" if source.row_label == "line" else "schema"
    present = list(source.columns)
    duplicated = sorted({c for c in present if present.count(c) > 1})
    if duplicated:
        raise DataContractError(
            "duplicate column in the header", file=source.file, row=header, column=duplicated[0]
        )
    for name in spec.required_names:
        if name not in present:
            raise DataContractError(
                f"missing required column; the file has: {', '.join(present)}",
                file=source.file,
                row=header,
                column=name,
            )
        if name in source.nested:
            raise DataContractError(
                f"unsupported nested Parquet type {source.nested[name]} in a required column",
                file=source.file,
                row=header,
                column=name,
            )
    if spec.one_of and not set(present).intersection(spec.one_of):
        raise DataContractError(
            f"missing column: at least one of {' or '.join(spec.one_of)} is required",
            file=source.file,
            row=header,
            column="/".join(spec.one_of),
        )
    return {
        name: f"unsupported nested Parquet type {source.nested[name]}: column skipped"
        for name in spec.names
        if name in source.nested
    }


def _problem(source: TableSource, column: str, tally: _Tally) -> Problem:
    rows = tuple(int(r) for r in source.row_numbers(np.asarray(tally.rows, dtype=np.int64)))
    return Problem(
        file=source.file,
        column=column,
        reason=tally.message,
        count=tally.count,
        rows=rows,
        row_label=source.row_label,
    )
