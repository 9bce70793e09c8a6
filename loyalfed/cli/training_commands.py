"""`loyalfed train` and `loyalfed score`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the training commands to the root app (filled in by the federated-training work)."""
