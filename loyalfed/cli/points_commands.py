"""`loyalfed points …`: cross-brand points interchange (积分通兑) at a partner's node.

Every command but ``agreement draft|approve|keygen`` acts for one node, named by its settings file
(``--node`` or ``LOYALFED_POINTS_NODE``; see ``participant_node.points.node_settings``). Commands
that talk to the partner (link, transfer, settle, recover) reach its node over mutual TLS with this
node's certificate. Each command prints a short summary, or only JSON with ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from audit.lineage_event import EventType
from loyalfed.cli import command_lineage
from loyalfed.cli.audit_trail import audited
from participant_node.points.agreement_book import load_signed_agreement, officer_key
from participant_node.points.errors import PointsError
from participant_node.points.node_settings import load_settings
from participant_node.points.service import PointsService
from participant_node.points.source_side import TransferRequest
from participant_node.points.transfer_ids import new_transfer_id
from policies.interchange_agreement import AgreementError, SignedAgreement, parse_agreement, sign_agreement
from policies.loyalty_programme import LoyaltyProgramme

points = typer.Typer(
    help="Cross-brand points interchange: agreements, links, transfers, settlement.", no_args_is_help=True
)
agreement = typer.Typer(
    help="Interchange agreements signed by both partners' data officers.", no_args_is_help=True
)
points.add_typer(agreement, name="agreement")

_NODE = typer.Option(..., "--node", envvar="LOYALFED_POINTS_NODE", help="The node's points settings (JSON).")
_JSON = typer.Option(False, "--json", help="Print only JSON to stdout.")


def register(app: typer.Typer) -> None:
    app.add_typer(points, name="points")


def _emit(payload: Any, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        Console().print(text)


@contextmanager
def _service(node: Path) -> Iterator[PointsService]:
    service = PointsService(load_settings(node))
    try:
        yield service
    finally:
        service.close()


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as err:
        raise PointsError(f"{path}: cannot read ({err.strerror})") from err
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise PointsError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}") from err
    if not isinstance(data, dict):
        raise PointsError(f"{path}: expected a mapping of fields")
    return data


@points.command("accrue")
def accrue(
    programme: Path = typer.Option(
        ..., "--programme", exists=True, dir_okay=False, help="Programme YAML/JSON."
    ),
    at: datetime = typer.Option(None, "--at", help="Opening moment (default: now, UTC)."),
    node: Path = _NODE,
    as_json: bool = _JSON,
) -> None:
    """Build the opening ledger from the partner's transactions under its programme's rules."""
    from participant_node.data import load_partner
    from participant_node.points.opening import issue_opening_balances

    rules = LoyaltyProgramme.model_validate(_read_mapping(programme))
    moment = (at or datetime.now(UTC)).replace(tzinfo=None)
    with _service(node) as service:
        if service.settings.partner_dir is None:
            raise PointsError("the node settings name no partner_dir to read transactions from")
        data = load_partner(service.settings.partner_dir)
        report = issue_opening_balances(service.ledger, rules, data.transactions, at=moment)
    _emit(
        report.to_json(),
        as_json,
        f"opened {report.members:,} members with {report.points:,} points "
        f"({report.issued:,} issued now, {report.already_issued:,} already issued, {report.refused} refused)",
    )


@agreement.command("keygen")
def keygen(
    out: Path = typer.Argument(..., help="Where to write the officer's Ed25519 key (PEM, 0600)."),
    as_json: bool = _JSON,
) -> None:
    """Make a data officer's signing key where it is used; prints the public key to register."""
    if out.exists():
        raise PointsError(f"{out} exists: refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public = key.public_key().public_bytes_raw().hex()
    _emit({"key": str(out), "public_key": public}, as_json, f"officer key {out}; public key {public}")


@agreement.command("draft")
@audited(EventType.POLICY_DRAFTED, command_lineage.agreement_draft, role="analyst")
def draft(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Agreement YAML or JSON."),
    out: Path = typer.Option(
        ..., "--out", help="Where to write the agreement for signing (*.agreement.json)."
    ),
    as_json: bool = _JSON,
) -> None:
    """Validate an agreement and write it, unsigned, for both data officers to approve."""
    parsed = parse_agreement(_read_mapping(file), source=str(file))
    out.write_text(SignedAgreement(agreement=parsed).model_dump_json(indent=2), encoding="utf-8")
    _emit(
        {"agreement": parsed.agreement_id, "content_hash": parsed.content_hash(), "out": str(out)},
        as_json,
        f"drafted {parsed.agreement_id} sha256 {parsed.content_hash()} → {out}",
    )


@agreement.command("approve")
@audited(EventType.POLICY_APPROVED, command_lineage.agreement_approval, role="data_officer", actor_param="")
def approve(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The *.agreement.json to sign."),
    partner: str = typer.Option(..., "--partner", help="The partner this officer signs for."),
    officer: str = typer.Option(..., "--officer", help="The signing officer's name."),
    key: Path = typer.Option(
        ..., "--key", exists=True, dir_okay=False, help="The officer's Ed25519 key (PEM)."
    ),
    as_json: bool = _JSON,
) -> None:
    """Sign the agreement's content hash for ``--partner`` (both partners' officers must)."""
    signed = load_signed_agreement(file)
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise PointsError(f"{key}: not an Ed25519 private key")
    signature = sign_agreement(
        signed.agreement, partner=partner, officer=officer, key=private, at=datetime.now(UTC)
    )
    signed = signed.with_signature(signature)
    file.write_text(signed.model_dump_json(indent=2), encoding="utf-8")
    payload = {"agreement": signed.agreement.agreement_id, "signed_by": sorted(signed.signed_by())}
    _emit(
        payload,
        as_json,
        f"{partner} approved {signed.agreement.agreement_id}; signed by {payload['signed_by']}",
    )


@agreement.command("show")
def show(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="A *.agreement.json."),
    node: Path = typer.Option(
        None, "--node", envvar="LOYALFED_POINTS_NODE", help="Verify against this node's keys."
    ),
    as_json: bool = _JSON,
) -> None:
    """The agreement's terms, hash and signatures (verified against the node's pinned officer keys)."""
    signed = load_signed_agreement(file)
    verified: bool | None = None
    if node is not None:
        keys = {p: officer_key(k) for p, k in load_settings(node).officer_keys.items()}
        try:
            signed.verify(keys)
            verified = True
        except AgreementError:
            verified = False
    a = signed.agreement
    payload = {
        "agreement": a.model_dump(mode="json"),
        "content_hash": a.content_hash(),
        "signed_by": sorted(signed.signed_by()),
        "verified": verified,
    }
    rates = "; ".join(f"{t.source}→{t.destination} {t.block_in}→{t.block_out}" for t in a.terms)
    _emit(
        payload, as_json, f"{a.agreement_id} ({rates}); signed by {payload['signed_by']}; verified {verified}"
    )


@points.command("link")
def link(peer: str = typer.Option(..., "--peer"), node: Path = _NODE, as_json: bool = _JSON) -> None:
    """Link this node's consented members with ``--peer``'s by PSI (pairwise link tokens)."""
    with _service(node) as service:
        report = service.link(peer)
    _emit(report.to_json(), as_json, f"linked {report.linked:,} members with {peer} (epoch {report.epoch})")


@points.command("transfer")
def transfer(
    member: str = typer.Option(..., "--member"),
    to: str = typer.Option(..., "--to", help="The partner whose points the member receives."),
    amount: int = typer.Option(..., "--points", min=1),
    transfer_id: str = typer.Option(
        None, "--transfer-id", help="Idempotency key (default: a new time-ordered id)."
    ),
    node: Path = _NODE,
    as_json: bool = _JSON,
) -> None:
    """Convert a member's points into ``--to``'s points at the agreed rate."""
    with _service(node) as service:
        receipt = service.transfer([TransferRequest(transfer_id or new_transfer_id(), member, to, amount)])[0]
        service.delivery.recover()
    _emit(
        receipt.to_json(),
        as_json,
        f"transfer {receipt.transfer_id}: {receipt.state} ({receipt.points} points + fee {receipt.fee} → "
        f"{receipt.credited} at {to}){'; ' + receipt.reason if receipt.reason else ''}",
    )
    if receipt.state == "refused":
        raise typer.Exit(2)


@points.command("balance")
def balance(member: str = typer.Option(..., "--member"), node: Path = _NODE, as_json: bool = _JSON) -> None:
    """The member's points at this node (available, posted, pending) and when they expire."""
    with _service(node) as service:
        result = service.balance(member)
    soonest = result["expiring"][0] if result["expiring"] else None
    _emit(
        result,
        as_json,
        f"available {result['available']:,} (posted {result['posted']:,}, "
        f"pending debits {result['pending_debits']:,})"
        + (f"; {soonest['points']:,} expire {soonest['expires_at'][:10]}" if soonest else ""),
    )


@points.command("history")
def history(
    member: str = typer.Option(..., "--member"),
    limit: int = typer.Option(20, "--limit", min=1),
    node: Path = _NODE,
    as_json: bool = _JSON,
) -> None:
    """The member's newest ledger entries."""
    with _service(node) as service:
        rows = service.history(member, limit=limit)
    text = "\n".join(
        f"{r['at']}  {r['kind']:<7} {r['code']:<16} {r['amount']:>+10,}  {r['transfer']}" for r in rows
    )
    _emit(rows, as_json, text or "no entries")


@points.command("settle")
def settle(
    peer: str = typer.Option(..., "--peer"),
    period: str = typer.Option(
        None, "--period", help="START/END (ISO 8601); default: the last netting period."
    ),
    node: Path = _NODE,
    as_json: bool = _JSON,
) -> None:
    """Exchange signed statements with ``--peer`` for a period and reconcile them."""
    with _service(node) as service:
        start, end = _period(period, service)
        result = service.settle(peer, start, end)
    net = result["statement"]
    _emit(
        result,
        as_json,
        f"{'reconciled' if result['reconciled'] else 'MISMATCH ' + str(result['differences'])}: "
        f"{net['payer'] or 'nobody'} pays {net['payee'] or 'nobody'} {net['net_amount']} "
        f"{net['currency']}",
    )
    if not result["reconciled"]:
        raise typer.Exit(2)


def _period(text: str | None, service: PointsService) -> tuple[datetime, datetime]:
    if text is None:
        days = service.book.latest_with(next(iter(service.settings.peers))).netting_period_days
        end = datetime.now(UTC)
        return end - timedelta(days=days), end
    try:
        start, end = (datetime.fromisoformat(part) for part in text.split("/", 1))
    except ValueError as err:
        raise PointsError(f"--period {text!r}: expected START/END in ISO 8601") from err
    return start.replace(tzinfo=start.tzinfo or UTC), end.replace(tzinfo=end.tzinfo or UTC)


@points.command("recover")
def recover(node: Path = _NODE, as_json: bool = _JSON) -> None:
    """Drive every pending transfer to posted or voided on both sides (after a crash or an outage)."""
    with _service(node) as service:
        report = service.recover()
    _emit(report.to_json(), as_json, f"recovery: {report.to_json()}")
