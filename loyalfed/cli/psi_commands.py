"""`loyalfed psi …` commands."""

from __future__ import annotations

import typer

psi = typer.Typer(help="Private set intersection between two member files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(psi, name="psi")
