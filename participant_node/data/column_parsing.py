"""Parse one raw column (Arrow) into its contract type, vectorised, marking the rows whose value is unusable.

Fatal (raise): a Parquet column stored with a type that cannot hold the contract type (a
boolean ``amount``). Row-level (returned as `RowIssue` masks with a reason): a missing required
value, an unparsable or out-of-range timestamp, a non-numeric or infinite number, an integer
beyond 64 bits, a value of the wrong type, an unknown purpose. Reasons quote the first bad value
except in identifier columns; the quote is kept apart (``first``) so reasons of the chunks of one
file add up.

Text is trimmed once; Arrow's casts parse it when every present value is valid (the common case,
several times faster than pandas), pandas' lenient parsers otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from participant_node.data.contract import (
    IDENTIFIER_COLUMNS,
    TIMESTAMP_MAX,
    TIMESTAMP_MIN,
    ColumnSpec,
    ColumnType,
)
from participant_node.data.errors import DataContractError
from policies.purpose import Purpose

__all__ = ["ParsedColumn", "RowIssue", "parse_column"]

_TRUE = pa.array(["true", "t", "yes", "y", "1"])
_FALSE = pa.array(["false", "f", "no", "n", "0"])
_MAX_QUOTED = 40
_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas 3's default "str" dtype
_ARROW_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)
_INT64_LIMIT = 2.0**63  # |x| >= 2^63 does not fit a signed 64-bit integer
_US = pa.timestamp("us")


@dataclass(frozen=True)
class RowIssue:
    """Rows of a chunk unusable for one reason; ``reason`` may hold ``{first}``, the first bad value."""

    mask: np.ndarray
    reason: str
    first: str = ""

    @property
    def message(self) -> str:
        return self.reason.replace("{first}", self.first)


@dataclass(frozen=True)
class ParsedColumn:
    """Typed values (NA where missing or unusable) and the unusable rows with their reasons."""

    values: pd.Series
    invalid: list[RowIssue] = field(default_factory=list)


@dataclass(frozen=True)
class _Column:
    """One raw column as the parsers see it."""

    raw: pa.ChunkedArray
    text: pa.ChunkedArray | None  # trimmed text with nulls where missing; None for typed Parquet data
    missing: np.ndarray
    spec: ColumnSpec
    file: str

    def text_series(self) -> pd.Series:
        assert self.text is not None
        # Wrapping the Arrow data as pandas' default "str" array (NaN for missing) is zero-copy.
        return pd.Series(pd.arrays.ArrowStringArray(self.text, dtype=_STR))

    def issue(self, mask: np.ndarray, reason: str) -> list[RowIssue]:
        """A one-element list for the rows of ``mask``, empty when no row is set."""
        if not mask.any():
            return []
        if self.spec.name in IDENTIFIER_COLUMNS:
            return [RowIssue(mask, reason)]
        value = self.raw[int(np.flatnonzero(mask)[0])].as_py()
        return [RowIssue(mask, reason, f" (first: {str(value)[:_MAX_QUOTED]!r})")]


def _chunked(array: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    # pa.chunked_array([chunked]) would copy element by element: only wrap plain arrays.
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def parse_column(raw: pa.ChunkedArray, spec: ColumnSpec, *, file: str) -> ParsedColumn:
    """Parse ``raw`` (text from CSV, or a typed Parquet column) as ``spec`` says."""
    if pa.types.is_dictionary(raw.type):  # pandas categoricals written to Parquet
        raw = raw.cast(raw.type.value_type)
    if _is_text(raw.type):
        trimmed = pc.utf8_trim_whitespace(raw.cast(pa.string()))
        missing = pc.fill_null(pc.equal(trimmed, ""), True).to_numpy(zero_copy_only=False)
        text = pc.if_else(pa.array(missing), None, trimmed)
        column = _Column(raw, _chunked(text), missing, spec, file)
    else:
        column = _Column(raw, None, raw.is_null().to_numpy(zero_copy_only=False), spec, file)
    values, invalid = _PARSERS[spec.type](column)
    if spec.required and column.missing.any():
        invalid = [RowIssue(column.missing, "missing value"), *invalid]
    return ParsedColumn(values, invalid)


def _wrong_storage(column: _Column, expected: str) -> DataContractError:
    return DataContractError(
        f"wrong type: stored as {column.raw.type}, expected {expected} (all rows)",
        file=column.file,
        column=column.spec.name,
    )


def _cast(column: _Column, target: pa.DataType) -> pa.ChunkedArray | None:
    assert column.text is not None
    try:
        return _chunked(pc.cast(column.text, target))
    except _ARROW_PARSE_ERRORS:
        return None


_Result = tuple[pd.Series, list[RowIssue]]


def _parse_string(column: _Column) -> _Result:
    if column.text is not None:
        return column.text_series(), []
    if pa.types.is_integer(column.raw.type):  # integer ids in Parquet are fine as text
        return pd.Series(pd.arrays.ArrowStringArray(column.raw.cast(pa.string()), dtype=_STR)), []
    raise _wrong_storage(column, "text")


def _parse_timestamp(column: _Column) -> _Result:
    raw = column.raw
    if column.text is None:
        if not (pa.types.is_timestamp(raw.type) or pa.types.is_date(raw.type)):
            raise _wrong_storage(column, "an ISO 8601 timestamp")
        # Arrow keeps zoned timestamps as UTC instants: dropping the zone leaves naive UTC.
        moments = _chunked(pc.cast(raw, _US, safe=False))
        invalid: list[RowIssue] = []
    else:
        cast = _cast(column, _US)
        if cast is None:
            # ISO 8601 with or without offset; offsets are converted to UTC, naive values are taken as UTC.
            parsed = pd.to_datetime(column.text_series(), format="ISO8601", errors="coerce", utc=True)
            cast = _chunked(pa.array(parsed.dt.tz_convert(None).astype("datetime64[us]"), type=_US))
        moments = cast
        unparsable = moments.is_null().to_numpy(zero_copy_only=False) & ~column.missing
        invalid = column.issue(unparsable, "unparsable timestamp{first}, expected ISO 8601")
    low, high = pa.scalar(TIMESTAMP_MIN, _US), pa.scalar(TIMESTAMP_MAX, _US)
    outside = pc.or_(pc.less(moments, low), pc.greater_equal(moments, high))
    out_of_range = pc.fill_null(outside, False).to_numpy(zero_copy_only=False)
    invalid += column.issue(out_of_range, f"timestamp out of range{{first}}: {_SUPPORTED_YEARS}")
    in_range = pc.if_else(pa.array(out_of_range), pa.scalar(None, _US), moments)
    values = pd.Series(np.asarray(_chunked(in_range).cast(pa.timestamp("ns")).to_numpy(), dtype="M8[ns]"))
    return values, invalid


def _year_span(low: datetime, high: datetime) -> str:
    return f"supported years {low.year} to {high.year - 1}"


_SUPPORTED_YEARS = _year_span(TIMESTAMP_MIN, TIMESTAMP_MAX)


def _floats(column: _Column) -> np.ndarray:
    raw = column.raw
    if column.text is not None:
        cast = _cast(column, pa.float64())
        if cast is None:
            return pd.to_numeric(column.text_series(), errors="coerce").to_numpy(
                dtype="float64", na_value=np.nan
            )
        return cast.to_numpy().astype("float64")
    numeric = pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type) or pa.types.is_decimal(raw.type)
    if not numeric:
        raise _wrong_storage(column, "a decimal number")
    return pc.cast(raw, pa.float64(), safe=False).to_numpy().astype("float64")


def _parse_number(column: _Column) -> _Result:
    array = _floats(column)
    non_numeric = np.isnan(array) & ~column.missing
    invalid = column.issue(non_numeric, "not a number{first}")
    invalid += column.issue(np.isinf(array), "not a finite number")
    return pd.Series(np.where(np.isfinite(array), array, np.nan)), invalid


def _parse_integer(column: _Column) -> _Result:
    exact = _exact_integers(column)
    if exact is not None:
        return exact, []
    array = _floats(column)
    whole = np.isfinite(array) & (np.floor(array) == array)
    too_large = whole & (np.abs(array) >= _INT64_LIMIT)
    fits = whole & ~too_large
    invalid = column.issue(~whole & ~column.missing, "wrong type: not an integer{first}")
    invalid += column.issue(too_large, "integer out of range{first}: beyond 64 bits")
    return pd.Series(np.where(fits, array, 0).astype("int64")).astype("Int64").where(fits), invalid


def _exact_integers(column: _Column) -> pd.Series | None:
    """Values as Int64 without a detour through floats, when every present value fits 64 bits."""
    source = column.text if column.text is not None else column.raw
    if column.text is None and not pa.types.is_integer(source.type):
        return None
    try:
        cast = pc.cast(source, pa.int64())
    except _ARROW_PARSE_ERRORS:
        return None
    return pd.Series(pd.array(_chunked(cast).to_numpy(zero_copy_only=False), dtype="Int64"))


def _parse_boolean(column: _Column) -> _Result:
    if column.text is None:
        if pa.types.is_boolean(column.raw.type):
            return pd.Series(pd.array(column.raw.to_numpy(zero_copy_only=False), dtype="boolean")), []
        raise _wrong_storage(column, "a boolean")
    lowered = pc.utf8_lower(column.text)
    is_true = pc.is_in(lowered, value_set=_TRUE).to_numpy(zero_copy_only=False)
    is_false = pc.is_in(lowered, value_set=_FALSE).to_numpy(zero_copy_only=False)
    bad = ~(is_true | is_false) & ~column.missing
    values = pd.Series(pd.NA, index=range(len(bad)), dtype="boolean")
    values[is_true] = True
    values[is_false] = False
    return values, column.issue(bad, "wrong type: not a boolean{first}, expected true/false")


def _parse_purpose(column: _Column) -> _Result:
    values, _ = _parse_string(column)
    known = [p.value for p in Purpose]
    bad = ~values.isin(known).to_numpy(dtype=bool) & ~column.missing
    return values, column.issue(bad, f"unknown purpose{{first}}; known purposes: {', '.join(known)}")


_PARSERS: dict[ColumnType, Callable[[_Column], _Result]] = {
    ColumnType.STRING: _parse_string,
    ColumnType.TIMESTAMP: _parse_timestamp,
    ColumnType.AMOUNT: _parse_number,
    ColumnType.DECIMAL: _parse_number,
    ColumnType.INTEGER: _parse_integer,
    ColumnType.BOOLEAN: _parse_boolean,
    ColumnType.PURPOSE: _parse_purpose,
}
