"""Files and reports for the `loyalfed psi …` commands.

Choosing the identifier column and its kind, the federation matching secret, and printing a
report as JSON (``--json``) or as a Rich table. Member tables are read through the node gate
(`loyalfed.cli.psi_member_tables`); matched ids are written by `loyalfed.cli.csv_output`.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = [
    "SECRET_ENV",
    "federation_secret",
    "id_column_values",
    "identifier_kind",
    "missing_file",
    "print_report",
    "run_secret",
]

SECRET_ENV = "LOYALFED_PSI_SECRET"


def missing_file(path: Path) -> FileNotFoundError:
    """The error the CLI prints as "No such file or directory: PATH" (it reads errno fields)."""
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))


def identifier_kind(id_column: str) -> Any:
    """The ``psi.identifiers.IdentifierKind`` named by ``--id-column``."""
    from psi.identifiers import IdentifierKind

    try:
        return IdentifierKind(id_column)
    except ValueError:
        raise ValueError(
            f"--id-column must be one of {[k.value for k in IdentifierKind]}, got {id_column!r}"
        ) from None


def id_column_values(frame: Any, path: Path, column: str) -> list[object]:
    """The values of ``column``; a missing column is an error naming the file and its columns."""
    if column not in frame.columns:
        raise ValueError(f"{path}: no column {column!r} (columns: {', '.join(map(str, frame.columns))})")
    return frame[column].tolist()


def run_secret(secret_file: Path | None) -> bytes:
    """The secret for a run whose two parties share this process (a fresh one if none is given)."""
    # Both parties run in this process, so a fresh secret per run is as good as a shared one;
    # across nodes the federation's secret comes from a file or the environment.
    if secret_file is not None:
        return secret_file.read_bytes().strip()
    if os.environ.get(SECRET_ENV):
        return os.environ[SECRET_ENV].encode()
    return os.urandom(32)


def print_report(report: dict[str, Any], as_json: bool) -> None:
    """Only JSON on stdout with ``--json``; otherwise a table titled by ``report[\"mode\"]``."""
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"PSI ({report['mode']})")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if key != "mode":
            table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    Console().print(table)


def federation_secret(secret_file: Path | None) -> bytes:
    """The federation's shared secret, required when the parties run in separate processes."""
    if secret_file is None and not os.environ.get(SECRET_ENV):
        raise ValueError(f"this step needs the federation matching secret: --secret-file or {SECRET_ENV}")
    return run_secret(secret_file)
