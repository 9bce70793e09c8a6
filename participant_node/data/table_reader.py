"""Read one contract file (CSV or Parquet) in chunks of bounded size, refusing files that cannot be read.

Everything fatal about a file as a whole is decided here: not found, ambiguous, empty, not
UTF-8, not a CSV/Parquet file, a malformed CSV line. Row-level problems are left to
`participant_node.data.column_parsing`.

Memory stays bounded by the chunk, not the file: CSV is streamed in blocks by Arrow's reader
(all columns as text), Parquet batch by batch within its row groups, and only the columns asked
for are read. Row numbers are as a person counts them in the file: CSV line numbers (the header is
line 1; blank lines count), Parquet 1-based data rows.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from participant_node.data.contract import SUPPORTED_SUFFIXES, FileKind
from participant_node.data.errors import DataContractError
from participant_node.data.utf8_check import first_utf8_error

__all__ = [
    "CsvRestart",
    "RawTable",
    "TableChunk",
    "TableSource",
    "find_file",
    "open_table",
    "read_member_ids",
    "read_table",
]

_PANDAS_LINE = re.compile(r"line (\d+)")
CSV_BLOCK_BYTES = 16 << 20
PARQUET_BATCH_ROWS = 1 << 17
_HEADER_LIMIT = 1 << 20


class CsvRestart(Exception):
    """Arrow's CSV reader gave up after some chunks were used: read the file again with pandas."""


@dataclass(frozen=True)
class TableChunk:
    """Consecutive rows of a file: ``start`` is the 0-based index of the first one among all rows."""

    table: pa.Table
    start: int


@dataclass(frozen=True)
class TableSource:
    """An opened contract file: its columns (names trimmed), and its rows chunk by chunk."""

    path: Path
    columns: tuple[str, ...]
    row_label: str  # "line" for CSV (editor line numbers), "row" for Parquet (1-based data rows)
    first_row: int  # number of the first data row: 2 for CSV (after the header), 1 for Parquet
    raw_names: dict[str, str] = field(default_factory=dict)  # trimmed -> as written in the file
    nested: dict[str, str] = field(default_factory=dict)  # Parquet columns of nested types -> type
    use_pandas: bool = False

    @property
    def file(self) -> str:
        return self.path.name

    def row_numbers(self, indices: np.ndarray) -> np.ndarray:
        """Row numbers, as a person counts them in the file, of the 0-based row ``indices``."""
        return np.asarray(indices) + self.first_row

    def with_pandas(self) -> TableSource:
        return TableSource(
            self.path, self.columns, self.row_label, self.first_row, self.raw_names, use_pandas=True
        )

    def chunks(self, wanted: Sequence[str]) -> Iterator[TableChunk]:
        """The columns ``wanted`` (trimmed names present in the file), chunk by chunk."""
        raw = [self.raw_names[name] for name in wanted]
        if self.row_label == "row":
            tables = _parquet_tables(self.path, raw)
        elif self.use_pandas:
            tables = _pandas_tables(self.path, raw)
        else:
            tables = _arrow_csv_tables(self.path, list(self.raw_names.values()), raw)
        start = 0
        for table in tables:
            yield TableChunk(table.rename_columns(list(wanted)), start)
            start += table.num_rows


@dataclass(frozen=True)
class RawTable:
    """A whole file's columns as read (CSV: all text; Parquet: the file's own types)."""

    path: Path
    frame: pd.DataFrame
    row_label: str
    first_row: int

    @property
    def file(self) -> str:
        return self.path.name


def find_file(folder: Path, kind: FileKind) -> Path | None:
    """The file of ``kind`` in ``folder`` (``members.parquet`` or ``members.csv``), or None."""
    found = [folder / f"{kind.value}{suffix}" for suffix in SUPPORTED_SUFFIXES]
    found = [p for p in found if p.is_file()]
    if len(found) > 1:
        raise DataContractError(
            f"both {found[0].name} and {found[1].name} exist; keep exactly one", file=str(folder)
        )
    return found[0] if found else None


def open_table(path: Path) -> TableSource:
    """Open ``path`` as CSV or Parquet (by suffix); raise `DataContractError` if it cannot be read."""
    if path.suffix == ".parquet":
        return _open_parquet(path)
    return _open_csv(path)


def read_table(path: Path) -> RawTable:
    """The whole of ``path`` as one frame (for small files and single-member requests)."""
    source = open_table(path)
    if source.row_label == "row":
        frame = pq.read_table(path).to_pandas()
        frame.columns = [str(c).strip() for c in frame.columns]
        return RawTable(path, frame, source.row_label, source.first_row)
    try:
        tables = [chunk.table for chunk in source.chunks(source.columns)]
    except CsvRestart:
        tables = [chunk.table for chunk in source.with_pandas().chunks(source.columns)]
    frame = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=list(source.columns))
    if frame.empty:
        raise DataContractError("empty file: a header but no data rows", file=path.name, row="line 2")
    return RawTable(path, frame, source.row_label, source.first_row)


def read_member_ids(path: Path) -> list[str]:
    """The trimmed, non-empty ``member_id`` values of a contract file (only that column is read)."""
    source = open_table(path)
    if "member_id" not in source.columns:
        return []
    try:
        chunks = [chunk.table.column(0) for chunk in source.chunks(["member_id"])]
    except CsvRestart:
        chunks = [chunk.table.column(0) for chunk in source.with_pandas().chunks(["member_id"])]
    ids: list[str] = []
    for column in chunks:
        ids += [v for v in pc.utf8_trim_whitespace(column.cast(pa.string())).to_pylist() if v]
    return ids


def _open_csv(path: Path) -> TableSource:
    with path.open("rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    if not head.strip():
        raise DataContractError(
            "empty file: expected a header line and data rows", file=path.name, row="line 1"
        )
    first_line = head.split(b"\n", 1)[0]
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError:
        problem = first_utf8_error(path)
        assert problem is not None
        raise problem from None
    names = next(csv.reader(io.StringIO(text.rstrip("\r"))), [])
    trimmed = tuple(name.strip() for name in names)
    return TableSource(path, trimmed, "line", 2, dict(zip(trimmed, names, strict=True)))


def _arrow_csv_tables(path: Path, header: Sequence[str], wanted: list[str]) -> Iterator[pa.Table]:
    bad_rows: list[tuple[int | None, int, int]] = []

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        bad_rows.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    parse = pa_csv.ParseOptions(
        ignore_empty_lines=False,  # a blank line is a row of empty cells: line numbers stay true
        newlines_in_values=True,
        invalid_row_handler=on_invalid_row,
    )
    convert = pa_csv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()),
        include_columns=wanted,
        strings_can_be_null=False,
    )
    produced = False
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            parse_options=parse,
            convert_options=convert,
        )
        for batch in reader:
            produced = True
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, pa.ArrowKeyError) as err:
        if bad_rows and bad_rows[0][0] is not None:
            number, expected, actual = bad_rows[0]
            raise DataContractError(
                f"not a well-formed CSV file: expected {expected} fields, found {actual}",
                file=path.name,
                row=f"line {number}",
            ) from None
        problem = first_utf8_error(path)
        if problem is not None:
            raise problem from None
        if produced:
            raise CsvRestart from err
        yield from _pandas_tables(path, wanted)


def _pandas_tables(path: Path, wanted: list[str]) -> Iterator[pa.Table]:
    """The slow path, used when Arrow's reader cannot say which line is malformed: pandas can."""
    try:
        reader = pd.read_csv(
            path,
            dtype=str,
            na_filter=False,  # all text, nothing turned into NaN: parsing belongs to the contract
            skip_blank_lines=False,  # usecols would let a line with extra fields through unreported
            encoding="utf-8-sig",
            chunksize=200_000,
        )
        for frame in reader:
            yield pa.Table.from_pandas(frame[wanted], preserve_index=False)
    except pd.errors.ParserError as err:
        match = _PANDAS_LINE.search(str(err))
        row = f"line {match.group(1)}" if match else ""
        raise DataContractError("not a well-formed CSV file", file=path.name, row=row) from None
    except UnicodeDecodeError:
        problem = first_utf8_error(path)
        raise problem or DataContractError("not valid UTF-8", file=path.name) from None


def _open_parquet(path: Path) -> TableSource:
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as err:
        raise DataContractError(
            f"not a readable Parquet file ({type(err).__name__})", file=path.name
        ) from err
    if len(schema.names) == 0:
        raise DataContractError("empty file: no columns", file=path.name, row="row 1")
    if parquet.metadata.num_rows == 0:
        raise DataContractError("empty file: a schema but no data rows", file=path.name, row="row 1")
    trimmed = tuple(str(name).strip() for name in schema.names)
    nested = {
        name: str(column.type)
        for name, column in zip(trimmed, schema, strict=True)
        if pa.types.is_nested(column.type)
    }
    return TableSource(path, trimmed, "row", 1, dict(zip(trimmed, schema.names, strict=True)), nested)


def _parquet_tables(path: Path, wanted: list[str]) -> Iterator[pa.Table]:
    start = 0
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
            yield pa.Table.from_batches([batch])
            start += batch.num_rows
    except (pa.ArrowException, OSError) as err:
        raise DataContractError(
            f"not a readable Parquet file ({type(err).__name__})", file=path.name, row=f"row {start + 1}"
        ) from err
