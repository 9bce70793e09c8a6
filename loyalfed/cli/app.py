"""The root Typer app and the process-boundary error handler."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from loyalfed.cli import (
    admin_commands,
    audit_commands,
    consent_commands,
    coordinator_commands,
    data_commands,
    demo_commands,
    job_commands,
    model_commands,
    node_commands,
    node_status_commands,
    officer_commands,
    pki_commands,
    points_commands,
    policy_commands,
    psi_commands,
    training_commands,
)
from loyalfed.cli.error_handling import exit_code_for, public_message

app = typer.Typer(
    name="loyalfed",
    help="Privacy-preserving federated learning, PSI and points interchange for loyalty programmes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (
    data_commands,
    demo_commands,
    training_commands,
    psi_commands,
    policy_commands,
    consent_commands,
    audit_commands,
    pki_commands,
    coordinator_commands,
    points_commands,
    job_commands,
    officer_commands,
    admin_commands,
    model_commands,
    node_commands,  # before node_status_commands: it adds `status` to this `node` group
    node_status_commands,
):
    module.register(app)


def main() -> None:
    """Console-script entry point: run the app, report typed errors without a traceback."""
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting with it.
        code = app(standalone_mode=False)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]interrupted[/red]")
        sys.exit(130)
    except Exception as err:  # process boundary: every error becomes a message + exit code
        code = exit_code_for(err)
        # soft_wrap: one line however narrow the terminal (scripts grep for it).
        Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/bold red] {public_message(err)}")
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else 0)
