"""`loyalfed coordinator serve`: the control-plane API with its supervised Flower SuperLink."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

coordinator = typer.Typer(help="The coordinator's control plane service", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(coordinator, name="coordinator")


def packaged_flower_app() -> Path | None:
    """The loyalfed Flower App jobs run: ``loyalfed/flower_app`` (or ``deploy/flower_app`` of a checkout)."""
    import loyalfed

    package = Path(loyalfed.__file__).resolve().parent
    for candidate in (package / "flower_app", package.parent / "deploy" / "flower_app"):
        if (candidate / "pyproject.toml").is_file():
            return candidate
    return None


@coordinator.command("serve")
def serve(
    state: Annotated[Path, typer.Option("--state", help="State directory (store, admin token, SuperLink)")],
    host: Annotated[
        str, typer.Option(help="Address to listen on (loopback unless TLS is given)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="API port (0: a free port)")] = 8700,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite under --state)")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="API certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="API private key (PEM)")] = None,
    tls_ca: Annotated[
        Path | None, typer.Option("--tls-ca", help="CA certificate of the API's certificate")
    ] = None,
    superlink_port: Annotated[
        int, typer.Option(min=0, max=65535, help="SuperLink port (0: a free port)")
    ] = 0,
    superlink_certs: Annotated[
        Path | None, typer.Option("--superlink-certs", help="Folder with ca.crt, server.pem, server.key")
    ] = None,
    flower_app: Annotated[Path | None, typer.Option("--flower-app", help="The Flower app jobs run")] = None,
    no_superlink: Annotated[
        bool, typer.Option("--no-superlink", help="Run the API without a SuperLink")
    ] = False,
) -> None:
    """Serve the control plane API under /api/v1 and supervise the Flower SuperLink."""
    from coordinator.service.server import serve as run_server
    from coordinator.service.settings import CoordinatorSettings

    values: dict[str, Any] = {
        "flower_app": flower_app or packaged_flower_app(),
        "state_dir": state,
        "host": host,
        "port": port,
        "database_url": database_url,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "tls_ca": tls_ca,
        "superlink": not no_superlink,
        "superlink_port": superlink_port,
        "superlink_certs": superlink_certs,
    }
    try:
        settings = CoordinatorSettings(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        raise typer.BadParameter(
            f"{'.'.join(str(p) for p in first['loc']) or 'settings'}: {first['msg']}"
        ) from None
    typer.echo(f"coordinator state in {state}; admin token in {state / 'admin.token'}", err=True)
    run_server(settings)
