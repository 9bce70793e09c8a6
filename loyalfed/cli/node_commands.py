"""`loyalfed node serve`: run a partner's node service (its agent next to its own data)."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import SecretStr, ValidationError

node = typer.Typer(help="A partner's node: its service, SuperNode and enforcement point.")


@node.command("serve")
def serve(
    partner_dir: Path = typer.Option(..., "--partner-dir", help="The partner's data folder."),
    coordinator: str = typer.Option(..., "--coordinator", help="Coordinator URL (https://host:port)."),
    officer_public_key: list[Path] = typer.Option(
        ..., "--officer-public-key", help="Your data officer's public key file (repeat for several)."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address of the node's mTLS API."),
    port: int = typer.Option(8800, "--port", help="Port of the node's mTLS API."),
    state: Path | None = typer.Option(
        None, "--state", help="Node state folder (default PARTNER_DIR/.loyalfed)."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="LOYALFED_NODE_TOKEN", help="The node's coordinator token (role node)."
    ),
    partner_id: str | None = typer.Option(None, "--partner-id", help="Partner id (default: folder name)."),
    coordinator_ca: Path | None = typer.Option(
        None, "--coordinator-ca", help="CA certificate of the coordinator."
    ),
    tls_certificate: Path | None = typer.Option(
        None,
        "--tls-certificate",
        help="This node's certificate, signed by the federation CA from its request.",
    ),
    federation_ca: Path | None = typer.Option(None, "--federation-ca", help="The federation CA certificate."),
    region: str = typer.Option("CN", "--region", help="Region the node's data lives in."),
    yearly_epsilon_cap: float = typer.Option(
        10.0, "--yearly-epsilon-cap", help="The node's own yearly ε cap."
    ),
    heartbeat_s: float = typer.Option(10.0, "--heartbeat-interval", help="Seconds between heartbeats."),
    points_settings: Path | None = typer.Option(
        None, "--points-settings", help="Points interchange settings (JSON); serves /points/v1."
    ),
    approve_app: list[str] = typer.Option(
        [],
        "--approve-app",
        help="sha256 of another Flower App (FAB) this node may run (repeat); the app shipped with "
        "this loyalfed installation is always approved, any other is refused before its code loads.",
    ),
) -> None:
    """Register with the coordinator, supervise the SuperNode, enforce approvals, budget and consent."""
    from loyalfed.flower_app import flower_app_hash
    from participant_node.service.node_runtime import serve as serve_node
    from participant_node.service.settings import NodeSettings

    try:
        settings = NodeSettings(
            partner_dir=partner_dir,
            coordinator_url=coordinator,
            officer_public_keys=tuple(officer_public_key),
            partner_id=partner_id,
            host=host,
            port=port,
            state_dir=state,
            token=SecretStr(token) if token else None,
            coordinator_ca=coordinator_ca,
            tls_certificate=tls_certificate,
            federation_ca=federation_ca,
            region=region,
            yearly_epsilon_cap=yearly_epsilon_cap,
            heartbeat_interval_s=heartbeat_s,
            points_settings=points_settings,
            approved_apps=(flower_app_hash(), *approve_app),
        )
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise typer.BadParameter(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    serve_node(settings)


@node.command("app-hash")
def app_hash(
    app_dir: Path | None = typer.Argument(
        None, help="A Flower App folder (default: the app shipped with this loyalfed installation)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the sha256 of a Flower App's FAB: what `node serve --approve-app` takes."""
    import hashlib
    import json

    from flwr.cli.build import build_fab_from_disk

    from loyalfed.flower_app import flower_app_dir

    folder = app_dir or flower_app_dir()
    if not (folder / "pyproject.toml").is_file():
        raise typer.BadParameter(f"{folder}: not a Flower App folder (no pyproject.toml)")
    digest = hashlib.sha256(build_fab_from_disk(folder)).hexdigest()
    typer.echo(json.dumps({"app_dir": str(folder), "fab_sha256": digest}) if as_json else digest)


def register(app: typer.Typer) -> None:
    app.add_typer(node, name="node", no_args_is_help=True)
