"""The ``loyalfed`` command line: one Typer app, one module per command group.

Each command module defines ``register(app)``; this module only wires them together and turns
the packages' typed errors into a one-line message and a non-zero exit (never a traceback).
"""

from __future__ import annotations

from loyalfed.cli.app import app, main

__all__ = ["app", "main"]
