"""What a node tells the coordinator about its data: table schemas and row counts rounded to 100.

DESIGN.md, onboarding: column names and rounded counts, never values. Rounding to the nearest 100
keeps one member joining or leaving from showing in the summary.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from participant_node.data import PartnerData

__all__ = ["ROW_ROUNDING", "dataset_summary", "rounded"]

ROW_ROUNDING = 100


def rounded(count: int, step: int = ROW_ROUNDING) -> int:
    """``count`` to the nearest multiple of ``step`` (halves round up)."""
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    return (count + step // 2) // step * step


def _filled_columns(frame: pd.DataFrame) -> list[str]:
    # The reader adds the contract's optional columns empty; only columns the partner fills count.
    return [str(column) for column in frame.columns if frame[column].notna().any()]


def dataset_summary(data: PartnerData) -> dict[str, dict[str, Any]]:
    """``{table: {"columns": [...], "rows_rounded": n}}`` for every table the partner holds."""
    tables = {
        "members": data.members,
        "transactions": data.transactions,
        "consents": data.consents,
        "campaigns": data.campaigns,
    }
    return {
        name: {"columns": _filled_columns(frame), "rows_rounded": rounded(len(frame))}
        for name, frame in tables.items()
        if frame is not None
    }
