"""Read one contract file (CSV or Parquet) into an untyped frame, refusing files that cannot be read.

Everything fatal about a file as a whole is decided here: not found, ambiguous, empty, not
UTF-8, not a CSV/Parquet file. Row-level problems are left to `participant_node.data.frame_parsing`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from participant_node.data.contract import SUPPORTED_SUFFIXES, FileKind
from participant_node.data.errors import DataContractError

__all__ = ["RawTable", "find_file", "read_table"]

_PANDAS_LINE = re.compile(r"line (\d+)")


@dataclass(frozen=True)
class RawTable:
    """A file's columns as read (CSV: all text; Parquet: the file's own types)."""

    path: Path
    frame: pd.DataFrame
    row_label: str  # "line" for CSV (editor line numbers), "row" for Parquet (1-based data rows)
    first_row: int  # number of the first data row: 2 for CSV (after the header), 1 for Parquet

    @property
    def file(self) -> str:
        return self.path.name

    def row_numbers(self, mask: np.ndarray) -> np.ndarray:
        """Row numbers, as a person counts them in the file, of the rows where ``mask`` is true."""
        return np.flatnonzero(mask) + self.first_row


def find_file(folder: Path, kind: FileKind) -> Path | None:
    """The file of ``kind`` in ``folder`` (``members.parquet`` or ``members.csv``), or None."""
    found = [folder / f"{kind.value}{suffix}" for suffix in SUPPORTED_SUFFIXES]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise DataContractError(
            f"both {found[0].name} and {found[1].name} exist; keep exactly one", file=str(folder)
        )
    return found[0] if found else None


def read_table(path: Path) -> RawTable:
    """Read ``path`` as CSV or Parquet (by suffix); raise `DataContractError` if it cannot be read."""
    if path.suffix == ".parquet":
        return _read_parquet(path)
    return _read_csv(path)


def _read_csv(path: Path) -> RawTable:
    data = path.read_bytes()
    if not data.strip():
        raise DataContractError(
            "empty file: expected a header line and data rows", file=path.name, row="line 1"
        )
    data = data.removeprefix(codecs.BOM_UTF8)
    text = _decode_utf8(data, path.name)
    frame = None
    # Arrow's multi-threaded reader is ~10x faster than pandas' but skips blank lines (which would
    # shift every line number after them) and gives no line number on errors: fall back to pandas.
    if b"\n\n" not in data and b"\n\r\n" not in data:
        frame = _read_csv_arrow(data, text)
    if frame is None:
        frame = _read_csv_pandas(text, path.name)
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataContractError("empty file: a header but no data rows", file=path.name, row="line 2")
    return RawTable(path, frame, row_label="line", first_row=2)


def _read_csv_arrow(data: bytes, text: str) -> pd.DataFrame | None:
    header = next(csv.reader(io.StringIO(text[: text.find("\n")] if "\n" in text else text)), [])
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError):
        return None
    if table.num_columns != len(header):
        return None
    return table.to_pandas()


def _read_csv_pandas(text: str, file: str) -> pd.DataFrame:
    try:
        # All text, nothing converted to NaN: parsing and its errors belong to the contract, not pandas.
        return pd.read_csv(io.StringIO(text), dtype=str, na_filter=False, skip_blank_lines=False)
    except pd.errors.ParserError as err:
        match = _PANDAS_LINE.search(str(err))
        row = f"line {match.group(1)}" if match else ""
        raise DataContractError(f"not a well-formed CSV file: {err}", file=file, row=row) from err


def _decode_utf8(data: bytes, file: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line = data.count(b"\n", 0, err.start) + 1
        field_index = data[line_start : err.start].count(b",")
        header = data[: data.find(b"\n")].decode("utf-8", errors="replace").split(",")
        column = header[field_index].strip() if field_index < len(header) else f"#{field_index + 1}"
        raise DataContractError(
            f"not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "re-export the file as UTF-8",
            file=file,
            row=f"line {line}",
            column=column,
        ) from err


def _read_parquet(path: Path) -> RawTable:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataContractError(
            f"not a readable Parquet file ({type(err).__name__})", file=path.name
        ) from err
    if table.num_columns == 0:
        raise DataContractError("empty file: no columns", file=path.name, row="row 1")
    if table.num_rows == 0:
        raise DataContractError("empty file: a schema but no data rows", file=path.name, row="row 1")
    frame = table.to_pandas()
    frame.columns = [str(c).strip() for c in frame.columns]
    return RawTable(path, frame, row_label="row", first_row=1)


def read_member_ids(path: Path) -> list[str]:
    """The trimmed, non-empty ``member_id`` values of a contract file (only that column is read)."""
    column = "member_id"
    try:
        if path.suffix == ".parquet":
            if column not in pq.ParquetFile(path).schema_arrow.names:
                return []
            ids = pq.read_table(path, columns=[column]).column(column)
        else:
            options = pa_csv.ConvertOptions(
                column_types={column: pa.string()}, include_columns=[column], include_missing_columns=True
            )
            ids = pa_csv.read_csv(path, convert_options=options).column(column)
    except (pa.ArrowException, OSError):
        frame = read_table(path).frame  # names the file, row and column of what is wrong
        if column not in frame.columns:
            return []
        ids = pa.chunked_array([pa.array(frame[column].astype("string"), type=pa.string())])
    trimmed = pc.utf8_trim_whitespace(pc.cast(ids, pa.string()))
    return [v for v in trimmed.to_pylist() if v]
