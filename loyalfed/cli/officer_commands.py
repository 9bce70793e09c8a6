"""`loyalfed officer keygen|register`: a data officer's Ed25519 signing key, made on their own machine.

The private key never leaves the officer's machine (file mode 0600); only the public key is
registered with the coordinator, and each partner's node is configured with it locally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from audit import EventType
from loyalfed.cli.audit_trail import audit_step, file_sha256
from loyalfed.cli.service_client import (
    CaOption,
    ClientOptions,
    ConfigOption,
    JsonOption,
    TokenOption,
    UrlOption,
    connect,
)
from policies.signed_approval import generate_signing_key, load_public_key, public_key_b64, write_key_pair

officer = typer.Typer(help="A data officer's signing key", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(officer, name="officer")


@officer.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", help="Folder for officer.key (0600) and officer.pub")],
    as_json: JsonOption = False,
) -> None:
    """Make an Ed25519 key pair here; register officer.pub, keep officer.key on this machine."""
    with audit_step(EventType.KEY_CREATED, role="data_officer") as step:
        key = generate_signing_key()
        private_path, public_path = write_key_pair(key, out)
        # The public half by hash: it ties this event to the key later registered and used to sign.
        step.update(
            outputs=[{"name": "officer public key", "sha256": file_sha256(public_path)}],
            details={"key": "ed25519", "key_use": "officer_signing"},
        )
    summary = {
        "private_key": str(private_path),
        "public_key": str(public_path),
        "public_key_b64": public_key_b64(key),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(
            f"private key {private_path} (mode 0600; never share it)\n"
            f"public key {public_path}: {summary['public_key_b64']}"
        )


@officer.command("register")
def register_key(
    public_key: Annotated[
        Path, typer.Option("--public-key", exists=True, dir_okay=False, help="officer.pub")
    ],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register your public key with the coordinator, for your own organisation."""
    encoded = public_key_b64(load_public_key(public_key))
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        reply = client.post("/officers/keys", {"public_key_b64": encoded})
    if as_json:
        typer.echo(json.dumps(reply, indent=2))
    else:
        typer.echo(f"registered {encoded} for {reply['organisation']}")
