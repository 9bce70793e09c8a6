"""`loyalfed pki …`: each organisation makes its own keys; only requests and public keys travel.

# the federation operator, on an offline host
loyalfed pki init-ca --out ca/
# each organisation, on its own host
loyalfed pki request --role node --partner careplus --host psi.careplus.example --out keys/
loyalfed pki supernode-key --out keys/
# back at the CA, after checking out of band who sent careplus.csr
loyalfed pki sign careplus.csr --ca ca/ --role node --partner careplus --out careplus.pem
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from audit import EventType
from loyalfed.cli.audit_trail import audit_step, file_sha256
from pki import (
    CertificateRole,
    create_federation_ca,
    create_key_and_request,
    create_supernode_key,
    describe_certificate,
    load_ca,
    sign_request,
)
from pki.errors import PkiError

pki = typer.Typer(
    help="Federation keys and certificates (keys never leave their owner)", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON to stdout.")]


def register(app: typer.Typer) -> None:
    app.add_typer(pki, name="pki")


def _report(summary: Mapping[str, object], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console = Console()
    for line in lines:
        console.print(line)


@pki.command("init-ca")
def init_ca(
    out: Annotated[Path, typer.Option("--out", help="Folder for ca.crt and ca.key (keep this host offline)")],
    name: Annotated[str, typer.Option(help="The CA's common name")] = "loyalfed federation CA",
    days: Annotated[int, typer.Option(min=1, max=36500, help="Validity in days")] = 3650,
    as_json: JsonOption = False,
) -> None:
    """Create the federation CA. Its key signs every identity: keep it off every serving host."""
    with audit_step(EventType.KEY_CREATED, role="federation_operator") as step:
        ca = create_federation_ca(out, name=name, days=days)
        step.update(
            outputs=[{"name": "ca certificate", "sha256": file_sha256(out / "ca.crt")}],
            details={"key_use": "federation_ca", "days": days},
        )
    summary = {
        "ca_certificate": str(out / "ca.crt"),
        "ca_key": str(out / "ca.key"),
        "not_after": ca.certificate.not_valid_after_utc.isoformat(),
    }
    _report(
        summary,
        as_json,
        [
            f"CA certificate: {out / 'ca.crt'} (give it to every organisation)",
            f"CA key:         {out / 'ca.key'} (0600; keep offline)",
        ],
    )


@pki.command("request")
def request(
    role: Annotated[CertificateRole, typer.Option(help="coordinator, node or service")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the private key (stays here) and the .csr")],
    partner: Annotated[str | None, typer.Option(help="Partner id (node certificates)")] = None,
    host: Annotated[
        list[str] | None, typer.Option("--host", help="Host name or IP the service answers at")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a private key here and a certificate signing request to send to the federation CA."""
    with audit_step(EventType.KEY_CREATED, role="partner_operator", partner=partner) as step:
        files = create_key_and_request(out, role, partner=partner, hosts=host or [])
        step.update(
            outputs=[{"name": "certificate request", "sha256": file_sha256(files.request)}],
            details={"key_use": role.value},
        )
    summary = {
        "private_key": str(files.private_key),
        "request": str(files.request),
        "role": role.value,
        "partner": partner,
        "hosts": host or [],
    }
    _report(
        summary,
        as_json,
        [
            f"private key: {files.private_key} (0600; never send it)",
            f"request:     {files.request} (send this to the federation CA)",
        ],
    )


@pki.command("sign")
def sign(
    request_file: Annotated[Path, typer.Argument(help="The .csr an organisation sent")],
    ca_dir: Annotated[Path, typer.Option("--ca", help="Folder holding ca.crt and ca.key")],
    role: Annotated[CertificateRole, typer.Option(help="What the certificate may do")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the signed certificate (PEM)")],
    partner: Annotated[
        str | None, typer.Option(help="The partner you checked the request belongs to")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3650)] = 365,
    as_json: JsonOption = False,
) -> None:
    """Sign a request for ROLE (and PARTNER) after checking out of band who sent it."""
    try:
        request_pem = request_file.read_bytes()
    except FileNotFoundError as err:
        raise PkiError(f"{request_file}: no such request file") from err
    ca = load_ca(ca_dir)
    with audit_step(EventType.CERTIFICATE_ISSUED, role="federation_operator", partner=partner) as step:
        try:
            certificate = sign_request(ca, request_pem, role=role, partner=partner, days=days)
        except PkiError as err:
            raise PkiError(f"{request_file}: {err}") from err
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(certificate)
        step.update(
            outputs=[
                {"name": "certificate request", "sha256": hashlib.sha256(request_pem).hexdigest()},
                {"name": "certificate", "sha256": hashlib.sha256(certificate).hexdigest()},
            ],
            details={"certificate_role": role.value, "days": days},
        )
    summary = {"certificate": str(out), **describe_certificate(certificate)}
    _report(summary, as_json, [f"certificate: {out} (send it back with ca.crt)"])


@pki.command("supernode-key")
def supernode_key(
    out: Annotated[Path, typer.Option("--out", help="Folder for the SuperNode key pair")],
    as_json: JsonOption = False,
) -> None:
    """Make the SuperNode's ECDSA P-384 key pair; register only the .pub with the coordinator."""
    with audit_step(EventType.KEY_CREATED, role="partner_operator") as step:
        files = create_supernode_key(out)
        step.update(
            outputs=[{"name": "supernode public key", "sha256": file_sha256(files.public_key)}],
            details={"key_use": "supernode"},
        )
    summary = {"private_key": str(files.private_key), "public_key": str(files.public_key)}
    _report(
        summary,
        as_json,
        [
            f"private key: {files.private_key} (0600; for --auth-supernode-private-key)",
            f"public key:  {files.public_key} (give it to the coordinator)",
        ],
    )


@pki.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="A PEM certificate or certificate request")],
    as_json: JsonOption = False,
) -> None:
    """What a certificate or request says: subject, partner, hosts, validity, fingerprint."""
    try:
        data = file.read_bytes()
    except FileNotFoundError as err:
        raise PkiError(f"{file}: no such file") from err
    try:
        summary = describe_certificate(data)
    except PkiError as err:
        raise PkiError(f"{file}: {err}") from err
    _report(summary, as_json, [f"{key}: {value}" for key, value in summary.items()])
