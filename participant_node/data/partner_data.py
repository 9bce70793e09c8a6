"""Load a partner folder into typed frames, counting and reporting every unusable row.

Fatal problems (a missing required file or column, an empty, non-UTF-8 or unreadable file, a
Parquet column stored with an impossible type, a nested type in a required column) raise
`DataContractError`. Row-level problems make the row unusable: it is left out of the frames and
counted, per file and reason, in ``PartnerData.report``; nothing is dropped silently. Usable but
implausible rows are kept and reported as warnings. Files are read chunk by chunk
(`participant_node.data.file_scan`): `validate_partner` keeps no rows at all, so checking a
folder needs memory for one chunk, not for the files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from participant_node.data.contract import CONTRACT, FileKind
from participant_node.data.errors import DataContractError
from participant_node.data.file_scan import scan_file
from participant_node.data.table_reader import find_file
from participant_node.data.validation_report import PartnerReport

__all__ = ["PartnerData", "fingerprint_partner", "load_partner", "validate_partner"]


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


def load_partner(path: Path | str, *, now: datetime | None = None) -> PartnerData:
    """Read and validate the partner folder ``path`` (members, transactions, consents[, campaigns]).

    ``now`` is the moment future-dated rows are judged against (default: the current UTC time).
    """
    folder = Path(path)
    report, frames = _scan_partner(folder, keep_rows=True, now=now)
    members, transactions, consents = (
        frames[k] for k in (FileKind.MEMBERS, FileKind.TRANSACTIONS, FileKind.CONSENTS)
    )
    assert members is not None and transactions is not None and consents is not None  # required files
    return PartnerData(folder, members, transactions, consents, frames[FileKind.CAMPAIGNS], report)


def validate_partner(path: Path | str, *, now: datetime | None = None) -> PartnerReport:
    """Check the partner folder ``path`` without keeping its rows: the report only."""
    report, _ = _scan_partner(Path(path), keep_rows=False, now=now)
    return report


def fingerprint_partner(path: Path | str) -> str:
    """SHA-256 over the names and bytes of a partner folder's contract files, in contract order."""
    digest = hashlib.sha256()
    for kind in FileKind:
        file = find_file(Path(path), kind)
        if file is not None:
            with file.open("rb") as handle:
                content = hashlib.file_digest(handle, "sha256").digest()
            digest.update(file.name.encode() + b"\0" + content)
    return digest.hexdigest()


def _scan_partner(
    folder: Path, *, keep_rows: bool, now: datetime | None
) -> tuple[PartnerReport, dict[FileKind, pd.DataFrame | None]]:
    if not folder.is_dir():
        raise DataContractError("not a partner folder (no such directory)", file=str(folder))
    moment = now or datetime.now(UTC).replace(tzinfo=None)
    report = PartnerReport(partner=folder.name)
    frames: dict[FileKind, pd.DataFrame | None] = {}
    known: pa.Array | None = None
    for kind in FileKind:  # members first: the other files' rows must name a usable member
        spec = CONTRACT[kind]
        path = find_file(folder, kind)
        if path is None:
            if spec.required_file:
                raise DataContractError(
                    f"missing required file '{kind.value}' ({kind.value}.parquet or {kind.value}.csv)",
                    file=str(folder),
                )
            frames[kind] = None
            continue
        scanned = scan_file(path, spec, known_members=known, keep_rows=keep_rows, now=moment)
        report.files[kind] = scanned.report
        frames[kind] = scanned.frame
        if kind is FileKind.MEMBERS:
            known = scanned.member_ids  # usable rows: present and unique
    return report, frames
