"""`loyalfed admin token issue`: the federation administrator issues credentials bound to a role and
an organisation (the token is shown once; the coordinator keeps only its SHA-256)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from loyalfed.cli.service_client import (
    CaOption,
    ClientOptions,
    ConfigOption,
    JsonOption,
    TokenOption,
    UrlOption,
    connect,
)
from policies.roles import Role

admin = typer.Typer(help="Federation administration", no_args_is_help=True)
token_group = typer.Typer(help="Credentials", no_args_is_help=True)
admin.add_typer(token_group, name="token")


def register(app: typer.Typer) -> None:
    app.add_typer(admin, name="admin")


@token_group.command("issue")
def issue(
    role: Annotated[Role, typer.Option("--role", help="Role of the new credential")],
    org: Annotated[
        str,
        typer.Option("--org", help="Organisation it acts for ('federation' for the federation's own staff)"),
    ],
    name: Annotated[str, typer.Option("--name", help="Who holds it (a person or service name)")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a token (printed once: hand it to its holder over a trusted channel)."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        issued = client.post("/tokens", {"name": name, "role": role.value, "organisation": org})
    if as_json:
        typer.echo(json.dumps(issued, indent=2))
    else:
        typer.echo(issued["token"])
