"""`loyalfed node status`: the federation's nodes as the coordinator sees them (online, version)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from loyalfed.cli.service_client import (
    CaOption,
    ClientOptions,
    ConfigOption,
    JsonOption,
    TokenOption,
    UrlOption,
    connect,
)


def register(app: typer.Typer) -> None:
    """Add ``status`` to the ``node`` group (made by the node service's commands, or here)."""
    for group in app.registered_groups:
        if group.name == "node" and group.typer_instance is not None:
            group.typer_instance.command("status")(status)
            return
    node = typer.Typer(help="Participant nodes", no_args_is_help=True)
    node.command("status")(status)
    app.add_typer(node, name="node")


def status(
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every registered node: online (heartbeat within 30 s), last heartbeat, version."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        nodes = client.get("/nodes")
    if as_json:
        typer.echo(json.dumps(nodes, indent=2))
        return
    table = Table("partner", "online", "last heartbeat", "version", "api")
    for node in nodes:
        online = "[green]online[/green]" if node["online"] else "[red]offline[/red]"
        table.add_row(
            node["partner_id"],
            online,
            (node["last_heartbeat"] or "never")[:19],
            node["version"],
            node["api_url"],
        )
    Console().print(table)
