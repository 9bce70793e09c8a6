"""Parse one raw column into its contract type, vectorised, marking the rows whose value is unusable.

Fatal (raise): a Parquet column stored with a type that cannot hold the contract type (a
boolean ``amount``). Row-level (returned as masks with a reason): a missing required value, an
unparsable timestamp, a non-numeric or negative amount, a value of the wrong type, an unknown
purpose. Reasons quote the first bad value except in identifier columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from participant_node.data.contract import IDENTIFIER_COLUMNS, ColumnSpec, ColumnType
from participant_node.data.errors import DataContractError
from policies.purpose import Purpose

__all__ = ["ParsedColumn", "parse_column"]

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_MAX_QUOTED = 40


@dataclass(frozen=True)
class ParsedColumn:
    """Typed values (NA where missing or unusable) and the masks of unusable rows with their reasons."""

    values: pd.Series
    invalid: list[tuple[np.ndarray, str]] = field(default_factory=list)


def parse_column(raw: pd.Series, spec: ColumnSpec, *, file: str) -> ParsedColumn:
    """Parse ``raw`` (text from CSV, or a typed Parquet column) as ``spec`` says."""
    text_like = pd.api.types.is_string_dtype(raw.dtype) or raw.dtype == object
    missing = _missing(raw, text_like)
    parser = _PARSERS[spec.type]
    values, invalid = parser(raw, missing, text_like, spec, file)
    if spec.required and missing.any():
        invalid = [(missing, "missing value"), *invalid]
    return ParsedColumn(values, invalid)


def _missing(raw: pd.Series, text_like: bool) -> np.ndarray:
    if text_like:
        stripped = raw.astype("str").str.strip()
        return (raw.isna() | (stripped == "")).to_numpy(dtype=bool)
    return raw.isna().to_numpy(dtype=bool)


def _quote(raw: pd.Series, mask: np.ndarray, spec: ColumnSpec) -> str:
    if spec.name in IDENTIFIER_COLUMNS:
        return ""
    first = str(raw.iloc[int(np.flatnonzero(mask)[0])])
    return f" (first: {first[:_MAX_QUOTED]!r})"


def _wrong_storage(raw: pd.Series, spec: ColumnSpec, file: str, expected: str) -> DataContractError:
    return DataContractError(
        f"wrong type: stored as {raw.dtype}, expected {expected} (all rows)", file=file, column=spec.name
    )


_Result = tuple[pd.Series, list[tuple[np.ndarray, str]]]


def _parse_string(
    raw: pd.Series, missing: np.ndarray, text_like: bool, spec: ColumnSpec, file: str
) -> _Result:
    if text_like:
        values = raw.astype("str").str.strip()
    elif pd.api.types.is_integer_dtype(raw.dtype):
        values = raw.astype("Int64").astype("str")  # integer ids in Parquet are fine as text
    else:
        raise _wrong_storage(raw, spec, file, "text")
    return values.where(~missing).astype("str"), []


def _parse_timestamp(
    raw: pd.Series, missing: np.ndarray, text_like: bool, spec: ColumnSpec, file: str
) -> _Result:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw.dt.tz_convert(None) if getattr(raw.dt, "tz", None) is not None else raw
        return values.astype("datetime64[ns]"), []
    if not text_like:
        raise _wrong_storage(raw, spec, file, "an ISO 8601 timestamp")
    # ISO 8601 with or without offset; offsets are converted to UTC, naive values are taken as UTC.
    parsed = pd.to_datetime(raw.where(~missing), format="ISO8601", errors="coerce", utc=True)
    values = parsed.dt.tz_convert(None).astype("datetime64[ns]")
    bad = values.isna().to_numpy(dtype=bool) & ~missing
    invalid = [(bad, f"unparsable timestamp{_quote(raw, bad, spec)}, expected ISO 8601")] if bad.any() else []
    return values, invalid


def _parse_number(
    raw: pd.Series, missing: np.ndarray, text_like: bool, spec: ColumnSpec, file: str
) -> _Result:
    if text_like:
        values = pd.to_numeric(raw.where(~missing), errors="coerce").astype("float64")
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.astype("float64")
    else:
        raise _wrong_storage(raw, spec, file, "a decimal number")
    array = values.to_numpy(dtype="float64", na_value=np.nan)
    invalid: list[tuple[np.ndarray, str]] = []
    non_numeric = np.isnan(array) & ~missing
    if non_numeric.any():
        invalid.append((non_numeric, f"not a number{_quote(raw, non_numeric, spec)}"))
    infinite = np.isinf(array)
    if infinite.any():
        invalid.append((infinite, "not a finite number"))
    if spec.type is ColumnType.AMOUNT:
        negative = array < 0
        if negative.any():
            invalid.append((negative, f"negative amount{_quote(raw, negative, spec)}"))
    return values, invalid


def _parse_integer(
    raw: pd.Series, missing: np.ndarray, text_like: bool, spec: ColumnSpec, file: str
) -> _Result:
    numbers, _ = _parse_number(raw, missing, text_like, spec, file)
    array = numbers.to_numpy(dtype="float64", na_value=np.nan)
    whole = np.isfinite(array) & (np.floor(array) == array)
    bad = ~whole & ~missing
    invalid = [(bad, f"wrong type: not an integer{_quote(raw, bad, spec)}")] if bad.any() else []
    return pd.Series(np.where(whole, array, np.nan), index=raw.index).astype("Int64"), invalid


def _parse_boolean(
    raw: pd.Series, missing: np.ndarray, text_like: bool, spec: ColumnSpec, file: str
) -> _Result:
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("boolean"), []
    if not text_like:
        raise _wrong_storage(raw, spec, file, "a boolean")
    lowered = raw.astype("str").str.strip().str.lower()
    is_true = lowered.isin(_TRUE).to_numpy(dtype=bool)
    is_false = lowered.isin(_FALSE).to_numpy(dtype=bool)
    bad = ~(is_true | is_false) & ~missing
    values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    values[is_true] = True
    values[is_false] = False
    invalid = (
        [(bad, f"wrong type: not a boolean{_quote(raw, bad, spec)}, expected true/false")]
        if bad.any()
        else []
    )
    return values, invalid


def _parse_purpose(
    raw: pd.Series, missing: np.ndarray, text_like: bool, spec: ColumnSpec, file: str
) -> _Result:
    values, _ = _parse_string(raw, missing, text_like, spec, file)
    known = [p.value for p in Purpose]
    bad = ~values.isin(known).to_numpy(dtype=bool) & ~missing
    invalid = []
    if bad.any():
        invalid.append((bad, f"unknown purpose{_quote(raw, bad, spec)}; known purposes: {', '.join(known)}"))
    return values, invalid


_PARSERS: dict[ColumnType, Callable[[pd.Series, np.ndarray, bool, ColumnSpec, str], _Result]] = {
    ColumnType.STRING: _parse_string,
    ColumnType.TIMESTAMP: _parse_timestamp,
    ColumnType.AMOUNT: _parse_number,
    ColumnType.DECIMAL: _parse_number,
    ColumnType.INTEGER: _parse_integer,
    ColumnType.BOOLEAN: _parse_boolean,
    ColumnType.PURPOSE: _parse_purpose,
}
