"""`loyalfed data …` commands."""

from __future__ import annotations

import typer

data = typer.Typer(help="Data contract", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data, name="data")
