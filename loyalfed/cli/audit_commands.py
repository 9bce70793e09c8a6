"""`loyalfed audit …` commands."""

from __future__ import annotations

import typer

audit = typer.Typer(help="Tamper-evident audit log", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")
