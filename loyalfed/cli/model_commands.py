"""`loyalfed model list|show|download`: the coordinator's model registry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from loyalfed.cli.service_client import (
    CaOption,
    ClientOptions,
    ConfigOption,
    JsonOption,
    ServiceClientError,
    TokenOption,
    UrlOption,
    connect,
)

model = typer.Typer(help="Published models: cards and weights", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model, name="model")


@model.command("list")
def list_models(
    task: Annotated[str | None, typer.Option(help="Only models of this task")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Published models, newest first."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        models = client.get("/models", task=task)
    if as_json:
        typer.echo(json.dumps(models, indent=2))
        return
    table = Table("model", "task", "job", "sha256", "published")
    for item in models:
        table.add_row(
            item["model_id"],
            item["task"],
            item["job_id"],
            item["artefact_sha256"][:16],
            item["published_at"][:19],
        )
    Console().print(table)


@model.command("show")
def show(
    model_id: Annotated[str, typer.Argument(help="Model id")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """A model's card and artefact hash (the card is printed as JSON)."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        detail = client.get(f"/models/{model_id}")
    typer.echo(json.dumps(detail, indent=2 if as_json else 1))


@model.command("download")
def download(
    model_id: Annotated[str, typer.Argument(help="Model id")],
    out: Annotated[Path, typer.Option("--out", help="File to write the weights to")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download a model's weights (analysts, auditors, the administrator); the sha256 is checked."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        expected = client.get(f"/models/{model_id}")["artefact_sha256"]
        weights = client.request("GET", f"/models/{model_id}/download").content
    digest = hashlib.sha256(weights).hexdigest()
    if digest != expected:
        raise ServiceClientError(
            f"model {model_id}: downloaded weights have sha256 {digest}, the registry says {expected}"
        )
    out.write_bytes(weights)
    summary = {"model_id": model_id, "path": str(out), "sha256": digest, "bytes": len(weights)}
    typer.echo(
        json.dumps(summary, indent=2)
        if as_json
        else f"{out} ({len(weights)} bytes, sha256 {digest[:16]}… verified)"
    )
