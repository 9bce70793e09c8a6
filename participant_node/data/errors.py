"""Errors of the data plane: a file that cannot be read as the data contract says."""

from __future__ import annotations

from participant_node.errors import NodeError

__all__ = ["DataContractError"]


class DataContractError(NodeError):
    """A partner's file breaks the data contract so badly that it cannot be loaded at all.

    The message names the file, the row (CSV: line number as an editor shows it; Parquet:
    1-based data row) and the column. It never quotes member identifiers.
    """

    def __init__(self, message: str, *, file: str, row: str = "", column: str = "") -> None:
        self.file = file
        self.row = row
        self.column = column
        location = ", ".join(part for part in (file, row, f"column '{column}'" if column else "") if part)
        super().__init__(f"{location}: {message}")
