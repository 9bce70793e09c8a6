"""`loyalfed audit …` commands: verify the log, explain a model's lineage, export, report."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from audit.anomaly_report import find_anomalies
from audit.audit_log import connect
from audit.errors import AuditError, LogIntegrityError
from audit.lineage_event import EventType, LineageEvent
from audit.lineage_graph import build_lineage_graph
from audit.log_verification import verify_log
from audit.openlineage_export import forward_openlineage, write_openlineage
from audit.saved_tree_head import load_saved_head, read_saved_head
from audit.tree_head import public_key_from_hex
from participant_node.data.federation import load_federation

if TYPE_CHECKING:
    from audit.audit_service import ServiceConfig

audit = typer.Typer(help="Tamper-evident audit log", no_args_is_help=True)

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help="Audit log file (default: $LOYALFED_DATA_DIR/audit.sqlite or ./.loyalfed/audit.sqlite)"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print only JSON to stdout.")]


def register(app: typer.Typer) -> None:
    app.add_typer(audit, name="audit")


def default_db_path() -> Path:
    """The configured data directory's log (read when a command runs, never at import)."""
    return Path(os.environ.get("LOYALFED_DATA_DIR", ".loyalfed")) / "audit.sqlite"


def _db(db: Path | None) -> Path:
    path = db or default_db_path()
    if not path.exists():
        raise FileNotFoundError(2, "No such audit log", str(path))
    return path


def _entries(path: Path) -> list[tuple[int, LineageEvent]]:
    conn = connect(path, read_only=True)
    try:
        rows = conn.execute("SELECT seq, body FROM entries ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [(seq, LineageEvent.from_canonical(body)) for seq, body in rows]


PublicKeyOption = Annotated[
    str | None, typer.Option("--public-key", help="Pin the log's Ed25519 public key (64 hex digits).")
]
FederationOption = Annotated[
    Path | None,
    typer.Option("--federation", help="Federation folder whose federation.toml [audit] pins the log's key."),
]


def trusted_key(public_key: str | None, federation: Path | None) -> Ed25519PublicKey | None:
    """The pinned key: ``--public-key``, else the federation's ``[audit] public_key``; never a file
    beside the log (whoever rewrites the log can replace that too)."""
    if public_key:
        return public_key_from_hex(public_key.strip().lower())
    if federation is not None:
        settings = load_federation(federation).audit
        if settings is None or settings.public_key is None:
            raise AuditError(f"{federation}/federation.toml has no [audit] public_key to pin the log's key")
        return public_key_from_hex(settings.public_key)
    return None


@audit.command()
def verify(
    db: DbOption = None,
    json_output: JsonOption = False,
    public_key: PublicKeyOption = None,
    federation: FederationOption = None,
    since_head: Annotated[
        Path | None,
        typer.Option("--since-head", help="A head saved by `audit head --json`: the log must extend it."),
    ] = None,
) -> None:
    """Verify the whole log against a pinned key; names the first bad entry.

    With --since-head, also prove that the log extends the saved head (RFC 9162 consistency):
    fails on a log truncated to an earlier head, an older copy, a rewritten history or a swapped key.
    """
    path = _db(db)
    saved = load_saved_head(since_head) if since_head is not None else None
    report = verify_log(path, public_key=trusted_key(public_key, federation), since=saved)
    if json_output:
        typer.echo(json.dumps(report.as_dict()))
        if not report.ok:
            raise typer.Exit(1)
        return
    if not report.ok:
        extra = len(report.problems) - 1
        more = f" (+{extra} more problem{'s' * (extra > 1)})" if extra else ""
        raise LogIntegrityError(f"audit log {path} FAILED verification: {report.first_problem}{more}")
    since = f"; extends the saved head at size {report.since_size}" if report.since_size is not None else ""
    typer.echo(
        f"✓ {path}: {report.tree_size} entries, {report.tree_heads} signed tree heads verified"
        f" against the {report.trust_anchor}{since}; root {report.root_hash}"
    )


def _model_id(path: Path, model: str) -> str:
    """A model id, or the id of the published model whose artefacts are the files in a directory."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    digests = {hashlib.sha256(f.read_bytes()).hexdigest() for f in folder.rglob("*") if f.is_file()}
    for _, event in reversed(_entries(path)):
        published = event.event_type == EventType.MODEL_PUBLISHED and event.model_id
        if published and any(ref.sha256.removeprefix("sha256:") in digests for ref in event.outputs):
            return str(event.model_id)
    raise AuditError(
        f"{folder}: no published model in the log has any of this directory's files as an output"
    )


@audit.command()
def lineage(
    model: Annotated[
        str, typer.Option("--model", help="Model id, or a model directory (matched by file hashes).")
    ],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what went into a model: datasets, partners, approvals, consent snapshots and ε."""
    path = _db(db)
    graph = build_lineage_graph(_entries(path), _model_id(path, model))
    if json_output:
        typer.echo(json.dumps(graph.as_dict()))
        return
    table = Table(title=f"Lineage of model {graph.model_id} (log entries {graph.entries})")
    for column in ("kind", "node", "details"):
        table.add_column(column)
    for node in graph.nodes.values():
        details = ", ".join(f"{k}={v}" for k, v in node.items() if k not in ("kind", "label"))
        table.add_row(str(node["kind"]), str(node["label"]), details)
    console = Console()
    console.print(table)
    for source, target, relation in graph.edges:
        console.print(f"  {graph.nodes[source]['label']} --{relation}--> {graph.nodes[target]['label']}")


@audit.command()
def transfer(
    transfer_id: Annotated[str, typer.Argument(help="A points transfer's id.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the events recording a points transfer: its reserve, post or void at each node.

    A node records the transfers of one transaction in one event; this finds the transfer in it.
    """
    path = _db(db)
    found = [(seq, event) for seq, event in _entries(path) if event.names_transfer(transfer_id)]
    if not found:
        raise AuditError(f"{path}: no event records transfer {transfer_id}")
    rows = [_transfer_row(seq, event, transfer_id) for seq, event in found]
    if json_output:
        typer.echo(json.dumps(rows))
        return
    table = Table(title=f"Transfer {transfer_id}: {len(rows)} event(s)")
    for column in ("entry", "time", "event", "node", "side", "points", "credited", "link token hash"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            *(str(row[k]) for k in ("seq", "time", "event_type", "partner", "side")),
            str(row["points"]),
            str(row["credited"]),
            str(row["link_token_hash"]),
        )
    Console().print(table)


def _transfer_row(seq: int, event: LineageEvent, transfer_id: str) -> dict[str, object]:
    """What one event says of one transfer (its own fields, or its entry in the event's batch)."""
    ref = next((t for t in event.transfers or () if t.transfer_id == transfer_id), None)
    details = event.details
    return {
        "seq": seq,
        "time": event.time.isoformat(),
        "event_type": str(event.event_type),
        "partner": event.partner,
        "side": details.get("side"),
        "points": ref.points if ref is not None else details.get("points"),
        "credited": ref.credited if ref is not None else details.get("credited"),
        "link_token_hash": ref.link_token_hash if ref is not None else event.link_token_hash,
        "batch": len(event.transfers or ()) or 1,
    }


@audit.command("export-openlineage")
def export_openlineage(
    out: Annotated[Path, typer.Option("--out", help="NDJSON file of OpenLineage RunEvents.")],
    db: DbOption = None,
    url: Annotated[
        str | None, typer.Option(help="Also POST each event to this OpenLineage/Marquez URL.")
    ] = None,
) -> None:
    """Export the log as OpenLineage RunEvents (and optionally forward them over HTTP)."""
    entries = _entries(_db(db))
    count = write_openlineage(entries, out)
    message = f"wrote {count} OpenLineage RunEvents to {out}"
    if url:
        message += f"; forwarded {forward_openlineage(entries, url)} to {url}"
    Console(stderr=True).print(message)


@audit.command()
def report(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Anomaly signals: unusual access rates, out-of-policy or unapproved jobs, orphan ε charges."""
    anomalies = find_anomalies(_entries(_db(db)))
    if json_output:
        typer.echo(json.dumps({"anomalies": [a.as_dict() for a in anomalies]}))
        return
    if not anomalies:
        Console().print("[green]no anomalies[/green]")
        return
    table = Table(title=f"{len(anomalies)} anomaly signal(s)")
    for column in ("entry", "kind", "what"):
        table.add_column(column)
    for anomaly in anomalies:
        table.add_row(str(anomaly.seq), anomaly.kind.value, anomaly.message)
    Console().print(table)


@audit.command()
def head(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Print the latest signed tree head, the log's key and its frontier (JSON, for --since-head).

    Save it (`loyalfed audit head --json > head.json`) and later run
    `loyalfed audit verify --since-head head.json`.
    """
    saved = read_saved_head(_db(db))
    typer.echo(json.dumps(saved.model_dump(mode="json")))


def _service_config(clients: Path) -> ServiceConfig:
    from audit.audit_service import ServiceConfig  # FastAPI loads only for `serve`

    try:
        return ServiceConfig.model_validate({"clients": json.loads(clients.read_text(encoding="utf-8"))})
    except (json.JSONDecodeError, ValidationError) as err:
        raise AuditError(f"{clients}: not a list of client grants ({type(err).__name__})") from None


@audit.command()
def serve(
    clients: Annotated[
        Path,
        typer.Option(
            help="JSON list of client grants: client_id, token_sha256, actor, role (partner, coordinator,"
            " auditor), partner (for role partner), may_append."
        ),
    ],
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8470,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Server certificate (PEM) from the federation CA.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Its private key (PEM).")] = None,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Serve plain HTTP (loopback experiments only).")
    ] = False,
) -> None:
    """Run the audit service over HTTPS (authenticated append, scoped reads, proofs, signed heads)."""
    import uvicorn

    from audit.audit_log import AuditLog
    from audit.audit_service import create_app

    if (tls_cert is None or tls_key is None) and not insecure_http:
        raise AuditError("the audit service serves HTTPS: pass --tls-cert and --tls-key (or --insecure-http)")
    config = _service_config(clients)
    tls = {} if insecure_http else {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
    with AuditLog.open(db or default_db_path()) as log:
        uvicorn.run(create_app(log, config), host=host, port=port, log_level="info", **tls)  # type: ignore[arg-type]
