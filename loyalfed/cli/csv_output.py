"""CSV files the CLI writes: one CSV writer, and cells a spreadsheet would run as formulas escaped.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets strip before reading the next character) is read by Excel, LibreOffice and Google
Sheets as a formula: a member id such as ``=cmd|' /C calc'!A0`` would run when an analyst opens
the file. Such cells get a leading apostrophe, the escape OWASP recommends for CSV injection
(https://owasp.org/www-community/attacks/CSV_Injection); every cell is quoted where CSV needs it.
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["FORMULA_PREFIXES", "escape_cell", "write_csv"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: object) -> str:
    """``value`` as CSV cell text, with a leading apostrophe if it would start a formula.

    Numbers are written as numbers (a negative score is a number, not a formula); missing values
    (None, NaN) as empty cells.
    """
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        text = str(value)
        return f"'{text}" if text.startswith(FORMULA_PREFIXES) else text
    return repr(float(value)) if isinstance(value, float) else str(value)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write ``header`` and ``rows`` to ``path`` (UTF-8, RFC 4180 quoting); return the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow([escape_cell(name) for name in header])
        for row in rows:
            writer.writerow([escape_cell(cell) for cell in row])
            count += 1
    return count
