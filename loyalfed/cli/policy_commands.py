"""`loyalfed policy …` commands."""

from __future__ import annotations

import typer

policy = typer.Typer(help="Data-use policies and data-officer approvals.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(policy, name="policy")
