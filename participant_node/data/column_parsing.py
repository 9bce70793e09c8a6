"""Parse one raw column into its contract type, vectorised, marking the rows whose value is unusable.

Fatal (raise): a Parquet column stored with a type that cannot hold the contract type (a
boolean ``amount``). Row-level (returned as masks with a reason): a missing required value, an
unparsable timestamp, a non-numeric or negative amount, a value of the wrong type, an unknown
purpose. Reasons quote the first bad value except in identifier columns.

Text is trimmed once into an Arrow array; Arrow's casts parse it when every present value is
valid (the common case, several times faster than pandas), pandas' lenient parsers otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from participant_node.data.contract import IDENTIFIER_COLUMNS, ColumnSpec, ColumnType
from participant_node.data.errors import DataContractError
from policies.purpose import Purpose

__all__ = ["ParsedColumn", "parse_column"]

_TRUE = pa.array(["true", "t", "yes", "y", "1"])
_FALSE = pa.array(["false", "f", "no", "n", "0"])
_MAX_QUOTED = 40
_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3's default "str" dtype
_ARROW_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


@dataclass(frozen=True)
class ParsedColumn:
    """Typed values (NA where missing or unusable) and the masks of unusable rows with their reasons."""

    values: pd.Series
    invalid: list[tuple[np.ndarray, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Column:
    """One raw column as the parsers see it."""

    raw: pd.Series
    text: pa.ChunkedArray | None  # trimmed text with nulls where missing; None for typed Parquet data
    missing: np.ndarray
    spec: ColumnSpec
    file: str

    def series(self, array: pa.Array | pa.ChunkedArray) -> pd.Series:
        return pd.Series(_as_chunked(array))

    def text_series(self) -> pd.Series:
        assert self.text is not None
        # Wrapping the Arrow data as pandas' default "str" array (NaN for missing) is zero-copy.
        return pd.Series(pd.arrays.ArrowStringArray(self.text, dtype=_STR), index=self.raw.index)


def _as_chunked(array: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    # pa.chunked_array([chunked]) would copy element by element: only wrap plain arrays.
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def parse_column(raw: pd.Series, spec: ColumnSpec, *, file: str) -> ParsedColumn:
    """Parse ``raw`` (text from CSV, or a typed Parquet column) as ``spec`` says."""
    if pd.api.types.is_string_dtype(raw.dtype) or raw.dtype == object:
        trimmed = pc.utf8_trim_whitespace(_as_chunked(pa.array(raw, type=pa.string(), from_pandas=True)))
        missing = pc.fill_null(pc.equal(trimmed, ""), True).to_numpy(zero_copy_only=False)
        text = pc.if_else(pa.array(missing), None, trimmed)
        column = _Column(raw, text, missing, spec, file)
    else:
        column = _Column(raw, None, raw.isna().to_numpy(dtype=bool), spec, file)
    values, invalid = _PARSERS[spec.type](column)
    if spec.required and column.missing.any():
        invalid = [(column.missing, "missing value"), *invalid]
    return ParsedColumn(values.set_axis(raw.index), invalid)


def _quote(column: _Column, mask: np.ndarray) -> str:
    if column.spec.name in IDENTIFIER_COLUMNS:
        return ""
    first = str(column.raw.iloc[int(np.flatnonzero(mask)[0])])
    return f" (first: {first[:_MAX_QUOTED]!r})"


def _wrong_storage(column: _Column, expected: str) -> DataContractError:
    return DataContractError(
        f"wrong type: stored as {column.raw.dtype}, expected {expected} (all rows)",
        file=column.file,
        column=column.spec.name,
    )


def _cast(column: _Column, target: pa.DataType) -> pd.Series | None:
    assert column.text is not None
    try:
        return column.series(pc.cast(column.text, target))
    except _ARROW_PARSE_ERRORS:
        return None


_Result = tuple[pd.Series, list[tuple[np.ndarray, str]]]


def _parse_string(column: _Column) -> _Result:
    if column.text is not None:
        return column.text_series(), []
    if pd.api.types.is_integer_dtype(column.raw.dtype):
        return column.raw.astype("Int64").astype("str"), []  # integer ids in Parquet are fine as text
    raise _wrong_storage(column, "text")


def _parse_timestamp(column: _Column) -> _Result:
    raw = column.raw
    if column.text is None:
        if not pd.api.types.is_datetime64_any_dtype(raw.dtype):
            raise _wrong_storage(column, "an ISO 8601 timestamp")
        values = raw.dt.tz_convert(None) if getattr(raw.dt, "tz", None) is not None else raw
        return values.astype("datetime64[ns]"), []
    values = _cast(column, pa.timestamp("us"))
    if values is None:
        # ISO 8601 with or without offset; offsets are converted to UTC, naive values are taken as UTC.
        parsed = pd.to_datetime(column.text_series(), format="ISO8601", errors="coerce", utc=True)
        values = parsed.dt.tz_convert(None)
    values = values.astype("datetime64[ns]")
    bad = values.isna().to_numpy(dtype=bool) & ~column.missing
    invalid = [(bad, f"unparsable timestamp{_quote(column, bad)}, expected ISO 8601")] if bad.any() else []
    return values, invalid


def _parse_number(column: _Column) -> _Result:
    raw = column.raw
    if column.text is not None:
        values = _cast(column, pa.float64())
        if values is None:
            values = pd.to_numeric(column.text_series(), errors="coerce")
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw
    else:
        raise _wrong_storage(column, "a decimal number")
    values = values.astype("float64")
    array = values.to_numpy(dtype="float64", na_value=np.nan)
    invalid: list[tuple[np.ndarray, str]] = []
    non_numeric = np.isnan(array) & ~column.missing
    if non_numeric.any():
        invalid.append((non_numeric, f"not a number{_quote(column, non_numeric)}"))
    infinite = np.isinf(array)
    if infinite.any():
        invalid.append((infinite, "not a finite number"))
    if column.spec.type is ColumnType.AMOUNT:
        negative = array < 0
        if negative.any():
            invalid.append((negative, f"negative amount{_quote(column, negative)}"))
    return values, invalid


def _parse_integer(column: _Column) -> _Result:
    numbers, _ = _parse_number(column)
    array = numbers.to_numpy(dtype="float64", na_value=np.nan)
    whole = np.isfinite(array) & (np.floor(array) == array)
    bad = ~whole & ~column.missing
    invalid = [(bad, f"wrong type: not an integer{_quote(column, bad)}")] if bad.any() else []
    return pd.Series(np.where(whole, array, np.nan)).astype("Int64"), invalid


def _parse_boolean(column: _Column) -> _Result:
    if column.text is None:
        if pd.api.types.is_bool_dtype(column.raw.dtype):
            return column.raw.astype("boolean"), []
        raise _wrong_storage(column, "a boolean")
    lowered = pc.utf8_lower(column.text)
    is_true = pc.is_in(lowered, value_set=_TRUE).to_numpy(zero_copy_only=False)
    is_false = pc.is_in(lowered, value_set=_FALSE).to_numpy(zero_copy_only=False)
    bad = ~(is_true | is_false) & ~column.missing
    values = pd.Series(pd.NA, index=column.raw.index, dtype="boolean")
    values[is_true] = True
    values[is_false] = False
    if not bad.any():
        return values, []
    return values, [(bad, f"wrong type: not a boolean{_quote(column, bad)}, expected true/false")]


def _parse_purpose(column: _Column) -> _Result:
    values, _ = _parse_string(column)
    known = [p.value for p in Purpose]
    bad = ~values.isin(known).to_numpy(dtype=bool) & ~column.missing
    invalid = []
    if bad.any():
        invalid.append((bad, f"unknown purpose{_quote(column, bad)}; known purposes: {', '.join(known)}"))
    return values, invalid


_PARSERS: dict[ColumnType, Callable[[_Column], _Result]] = {
    ColumnType.STRING: _parse_string,
    ColumnType.TIMESTAMP: _parse_timestamp,
    ColumnType.AMOUNT: _parse_number,
    ColumnType.DECIMAL: _parse_number,
    ColumnType.INTEGER: _parse_integer,
    ColumnType.BOOLEAN: _parse_boolean,
    ColumnType.PURPOSE: _parse_purpose,
}
