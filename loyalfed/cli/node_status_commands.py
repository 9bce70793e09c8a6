"""`loyalfed node status|audit-reset`: the federation's nodes as the coordinator sees them.

``status`` lists every node (online, version); ``audit-reset`` is a data officer vouching that
their node's audit log was lost or restored, so the coordinator stops refusing its heartbeats.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from coordinator.platform.nodes import AuditResetReason
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
    """Add ``status`` and ``audit-reset`` to the ``node`` group (made by the node service's
    commands, or here)."""
    for group in app.registered_groups:
        if group.name == "node" and group.typer_instance is not None:
            node = group.typer_instance
            break
    else:
        node = typer.Typer(help="Participant nodes", no_args_is_help=True)
        app.add_typer(node, name="node")
    node.command("status")(status)
    node.command("audit-reset")(audit_reset)


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


def audit_reset(
    partner: Annotated[str, typer.Option("--partner", help="Your organisation's partner id")],
    reason: Annotated[
        AuditResetReason,
        typer.Option("--reason", help="state_lost, restored_from_backup or key_replaced"),
    ],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """As your organisation's data officer: vouch that your node's audit log was lost or restored.

    The coordinator refuses a node log that went back or changed key (RFC 9162 §8.3); after a
    genuine loss it forgets the head it kept, names that head in its own log, and pins the node's
    next one. Only the partner's own data officer may do this.
    """
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        reply = client.post(f"/nodes/{partner}/audit-reset", {"reason": reason.value})
    if as_json:
        typer.echo(json.dumps(reply, indent=2))
    elif reply["forgotten_tree_size"] is None:
        typer.echo(f"{partner}: no audit log head was kept; the next heartbeat pins one")
    else:
        typer.echo(
            f"{partner}: forgot the audit log head at size {reply['forgotten_tree_size']} "
            f"(root {reply['forgotten_root_hash'][:16]}…); the next heartbeat pins the node's new log"
        )
