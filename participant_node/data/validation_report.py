"""What loading a partner folder found: rows read, rows usable, every reason a row was unusable,
and the warnings about rows that are usable but implausible (`participant_node.data.plausibility`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from participant_node.data.contract import FileKind

__all__ = ["FileReport", "PartnerReport", "Problem"]

_MAX_EXAMPLE_ROWS = 5


@dataclass(frozen=True)
class Problem:
    """One reason rows of one file are unusable, with how many rows and the first few of them.

    ``rows`` are row numbers as a person counts them in the file (CSV: line number including
    the header line; Parquet: 1-based data row), see ``row_label``.
    """

    file: str
    column: str
    reason: str
    count: int
    rows: tuple[int, ...]
    row_label: str = "line"

    @property
    def location(self) -> str:
        shown = ", ".join(str(r) for r in self.rows[:_MAX_EXAMPLE_ROWS])
        more = f" (+{self.count - len(self.rows)} more)" if self.count > len(self.rows) else ""
        plural = "s" if self.count > 1 else ""
        return f"{self.file}, {self.row_label}{plural} {shown}{more}, column '{self.column}'"

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "column": self.column,
            "reason": self.reason,
            "count": self.count,
            self.row_label + "s": list(self.rows),
        }


@dataclass(frozen=True)
class FileReport:
    """Outcome of reading one file of the contract."""

    kind: FileKind
    file: str
    rows_read: int
    rows_usable: int
    problems: tuple[Problem, ...] = ()
    ignored_columns: tuple[str, ...] = ()
    warnings: tuple[Problem, ...] = ()
    skipped_columns: dict[str, str] = field(default_factory=dict)  # contract column -> why skipped

    @property
    def rows_unusable(self) -> int:
        return self.rows_read - self.rows_usable

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "file": self.file,
            "rows_read": self.rows_read,
            "rows_usable": self.rows_usable,
            "rows_unusable": self.rows_unusable,
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
            "ignored_columns": list(self.ignored_columns),
            "skipped_columns": dict(self.skipped_columns),
        }


@dataclass
class PartnerReport:
    """Per-file reports of one partner folder, in contract order."""

    partner: str
    files: dict[FileKind, FileReport] = field(default_factory=dict)

    @property
    def rows_unusable(self) -> int:
        return sum(f.rows_unusable for f in self.files.values())

    @property
    def ok(self) -> bool:
        """True when every row of every file is usable."""
        return self.rows_unusable == 0

    @property
    def problems(self) -> list[Problem]:
        return [p for f in self.files.values() for p in f.problems]

    @property
    def warnings(self) -> list[Problem]:
        return [w for f in self.files.values() for w in f.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner": self.partner,
            "ok": self.ok,
            "rows_unusable": self.rows_unusable,
            "warnings": sum(w.count for w in self.warnings),
            "files": [f.to_dict() for f in self.files.values()],
        }
