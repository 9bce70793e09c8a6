"""What `models` needs from the data contract's frames, checked once at the door.

`participant_node.data` validates files in depth; `models` only re-checks the columns it uses, so a
frame built some other way (a test, a notebook, another connector) fails with the frame and column
named instead of a KeyError deep inside a groupby.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import numpy as np
import pandas as pd

from models.errors import ModelError

__all__ = ["MissingColumnError", "as_timestamp", "require_columns", "to_ns"]

NS_PER_DAY = 86_400 * 10**9


class MissingColumnError(ModelError):
    """A frame lacks a column the computation needs."""


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, frame_name: str) -> None:
    """Raise `MissingColumnError` naming ``frame_name`` and the first missing column."""
    for column in columns:
        if column not in frame.columns:
            raise MissingColumnError(f"{frame_name}: required column {column!r} is missing")


def as_timestamp(value: datetime | date | str | pd.Timestamp) -> pd.Timestamp:
    """``value`` as a tz-naive UTC `pandas.Timestamp` (the contract's convention)."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def to_ns(values: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch; NaT becomes ``np.iinfo(int64).min``."""
    return pd.to_datetime(values).to_numpy(dtype="datetime64[ns]").view("int64")
