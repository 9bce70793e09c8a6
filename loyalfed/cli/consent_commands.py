"""`loyalfed consent …` commands."""

from __future__ import annotations

import typer

consent = typer.Typer(help="Member consents at a node", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(consent, name="consent")
