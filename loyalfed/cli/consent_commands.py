"""`loyalfed consent …`: a node's consent store and data-subject requests.

Every command takes the partner folder; the store is ``<partner>/.loyalfed/consent.sqlite``. The
acting identity is ``--as data_officer:PARTNER`` (or ``LOYALFED_ACTOR``); it defaults to the data
officer of the partner folder's own name, the operator of that node. Output never leaves the node.
An erasure request appends an identifier-free event with its deadlines to the audit log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from audit.lineage_event import EventType
from loyalfed.cli import command_lineage
from loyalfed.cli.audit_trail import audited
from participant_node.consent import ConsentStore
from participant_node.consent.subject_rights import (
    ErasureReceipt,
    erase_member,
    export_member,
    import_consents,
    withdraw_consents,
)
from policies.jurisdiction import Jurisdiction
from policies.purpose import Purpose, parse_purpose
from policies.retention import ErasureRules, load_erasure_rules
from policies.roles import Action, Actor, authorize

# A node's own erasure rules (per-jurisdiction limits, the programme's promise), if it has any.
ERASURE_RULES_FILE = Path(".loyalfed") / "erasure_rules.toml"

consent = typer.Typer(help="Member consents at a node", no_args_is_help=True)

_PARTNER = typer.Argument(..., exists=True, file_okay=False, help="The partner folder (the node's data).")
_ACTOR = typer.Option(
    None, "--as", envvar="LOYALFED_ACTOR", help="data_officer:PARTNER (default: this partner's)."
)
_JSON = typer.Option(False, "--json", help="Print only JSON to stdout.")


def register(app: typer.Typer) -> None:
    app.add_typer(consent, name="consent")


def _authorize(partner_dir: Path, actor: str | None, action: Action) -> Actor:
    acting = Actor.parse(actor) if actor else Actor.parse(f"data_officer:{partner_dir.name}")
    authorize(acting, action, partner=partner_dir.name)
    return acting


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _moment(text: str | None) -> datetime:
    if text is None:
        return _now()
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        Console().print(text)


def _member_ids(members: list[str], members_file: Path | None) -> list[str]:
    ids = [m.strip() for m in members if m.strip()]
    if members_file is not None:
        ids += [
            line.strip() for line in members_file.read_text(encoding="utf-8").splitlines() if line.strip()
        ]
    if not ids:
        raise typer.BadParameter("name at least one member with --member or --members-file")
    return list(dict.fromkeys(ids))


@consent.command("import")
@audited(EventType.CONSENT_IMPORTED, command_lineage.consent_import, role="data_officer")
def import_(
    partner_dir: Path = _PARTNER,
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Consent records (CSV or Parquet)."),
    actor: str | None = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Append consent records (grants, guardian or sensitive-data consents) to the node's history."""
    _authorize(partner_dir, actor, Action.CONSENT_IMPORT)
    added = import_consents(partner_dir, file)
    _emit({"partner": partner_dir.name, "records_added": added}, as_json, f"added {added} consent records")


@consent.command("withdraw")
@audited(EventType.CONSENT_WITHDRAWN, command_lineage.consent_withdrawal, role="data_officer")
def withdraw(
    partner_dir: Path = _PARTNER,
    member: list[str] = typer.Option([], "--member", help="Member id (repeatable)."),
    members_file: Path | None = typer.Option(
        None, "--members-file", exists=True, help="One member id a line."
    ),
    purpose: list[str] = typer.Option([], "--purpose", help="Purpose withdrawn (repeatable; default: all)."),
    at: str | None = typer.Option(None, "--at", help="Effective time, ISO 8601 (default: now)."),
    actor: str | None = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Record that members withdrew consent: a new record, effective for every later job step."""
    _authorize(partner_dir, actor, Action.CONSENT_WITHDRAW)
    ids = _member_ids(member, members_file)
    purposes = [parse_purpose(p) for p in purpose] or list(Purpose)
    added = withdraw_consents(partner_dir, ids, purposes, at=_moment(at))
    payload = {
        "partner": partner_dir.name,
        "members": len(ids),
        "purposes": [p.value for p in purposes],
        "records_added": added,
    }
    _emit(payload, as_json, f"recorded {added} withdrawals for {len(ids)} member(s)")


@consent.command("export")
def export(
    partner_dir: Path = _PARTNER,
    member: str = typer.Option(..., "--member", help="The member whose data is exported."),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON here instead of stdout."),
    actor: str | None = _ACTOR,
) -> None:
    """Export everything this node holds on a member as JSON (access and portability)."""
    _authorize(partner_dir, actor, Action.CONSENT_EXPORT)
    text = json.dumps(export_member(partner_dir, member), indent=2, ensure_ascii=False)
    if out is None:
        typer.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        Console(stderr=True).print(f"wrote {out}")


@consent.command("erase")
def erase(
    partner_dir: Path = _PARTNER,
    member: str = typer.Option(..., "--member", help="The member to erase."),
    received_at: str | None = typer.Option(
        None, "--received-at", help="When the request arrived (default: now)."
    ),
    jurisdiction: list[Jurisdiction] = typer.Option(
        [Jurisdiction.CN], "--jurisdiction", help="Law(s) the node is under; the stricter deadline applies."
    ),
    rules: Path | None = typer.Option(
        None,
        "--rules",
        exists=True,
        dir_okay=False,
        help="Erasure rules TOML (default: PARTNER/.loyalfed/erasure_rules.toml if present).",
    ),
    promise: str | None = typer.Option(
        None, "--promise", help="The programme's own promise, e.g. '7 working days' (overrides --rules')."
    ),
    audit_log: Path | None = typer.Option(
        None, "--audit-log", help="Audit log to append the request to (default: LOYALFED_DATA_DIR's)."
    ),
    actor: str | None = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Erase a member at this node; keep an identifier-free tombstone with the deadline."""
    acting = _authorize(partner_dir, actor, Action.CONSENT_ERASE)
    erasure_rules = _erasure_rules(partner_dir, rules, promise)
    receipt = erase_member(
        partner_dir,
        member,
        received_at=_moment(received_at),
        jurisdictions=frozenset(jurisdiction),
        rules=erasure_rules,
    )
    _audit_erasure(audit_log, partner_dir.name, acting, receipt)
    payload = {
        "partner": partner_dir.name,
        "request_id": receipt.request_id,
        "deadline": receipt.deadline,
        "deadline_rule": receipt.deadline_rule,
        "legal_deadline": receipt.legal_deadline,
        "legal_rule": receipt.legal_rule,
        "completed_at": receipt.completed_at,
        "on_time": receipt.on_time,
        "rows_deleted": receipt.rows_deleted,
    }
    _emit(
        payload,
        as_json,
        f"erased: request {receipt.request_id}, due {receipt.deadline:%Y-%m-%d %H:%M} "
        f"({receipt.deadline_rule}), rows deleted {receipt.rows_deleted}",
    )


def _erasure_rules(partner_dir: Path, rules: Path | None, promise: str | None) -> ErasureRules:
    default = partner_dir / ERASURE_RULES_FILE
    path = rules or (default if default.is_file() else None)
    loaded = load_erasure_rules(path) if path is not None else ErasureRules()
    if promise is None:
        return loaded
    try:
        return ErasureRules.model_validate({**loaded.model_dump(), "programme_promise": promise})
    except ValueError as err:
        raise typer.BadParameter(str(err).splitlines()[-1], param_hint="--promise") from None


def _audit_erasure(audit_log: Path | None, partner: str, actor: Actor, receipt: ErasureReceipt) -> None:
    """Append the request (dates, the rule that set the deadline, row counts; no identifier)."""
    from audit.lineage_event import LineageEvent
    from loyalfed.cli.audit_trail import append_events

    def epoch(moment: datetime | None) -> int:
        assert moment is not None
        return int(moment.replace(tzinfo=UTC).timestamp())

    details: dict[str, int | str] = {
        "received_at_epoch_s": epoch(receipt.received_at),
        "deadline_epoch_s": epoch(receipt.deadline),
        "deadline_rule": receipt.deadline_rule,
        "legal_deadline_epoch_s": epoch(receipt.legal_deadline),
        "legal_rule": receipt.legal_rule,
        "completed_at_epoch_s": epoch(receipt.completed_at),
        "on_time": int(receipt.on_time),
        **{f"rows_deleted.{name}": count for name, count in sorted(receipt.rows_deleted.items())},
    }
    event = LineageEvent(
        event_type=EventType.CONSENT_ERASED,
        time=datetime.now(UTC),
        actor=str(actor),
        role=actor.role.value,
        partner=partner,
        details=details,  # type: ignore[arg-type]
    )
    append_events([event], log_path=audit_log)  # default: the CLI's audit trail (loyalfed.cli.audit_trail)


@consent.command("erasures")
def erasures(
    partner_dir: Path = _PARTNER,
    actor: str | None = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """List erasure requests (tombstones) with their deadlines; overdue ones are flagged."""
    _authorize(partner_dir, actor, Action.CONSENT_ERASE)
    store = ConsentStore.at_partner(partner_dir)
    try:
        requests = store.erasure_requests()
    finally:
        store.close()
    now = _now()
    rows: list[dict[str, Any]] = [
        {
            "request_id": r.request_id,
            "received_at": r.received_at,
            "deadline": r.deadline,
            "completed_at": r.completed_at,
            "overdue": r.overdue(now),
            "rows_deleted": r.rows_deleted,
        }
        for r in requests
    ]
    if as_json:
        typer.echo(json.dumps({"partner": partner_dir.name, "requests": rows}, indent=2, default=str))
        return
    table = Table(title=f"erasure requests at {partner_dir.name}")
    for column in ("request", "received", "deadline", "completed", "overdue"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["request_id"]),
            str(row["received_at"]),
            str(row["deadline"]),
            str(row["completed_at"] or "-"),
            "[red]yes[/red]" if row["overdue"] else "no",
        )
    Console().print(table)


@consent.command("check")
def check(
    partner_dir: Path = _PARTNER,
    purpose: str | None = typer.Option(None, "--purpose", help="Purpose of the intended use."),
    policy: Path | None = typer.Option(
        None, "--policy", exists=True, dir_okay=False, help="Run the full node gate under this policy file."
    ),
    region: str = typer.Option("CN", "--region", help="The node's region (with --policy)."),
    at: str | None = typer.Option(None, "--at", help="Moment of use, ISO 8601 (default: now)."),
    retention_as_of: str | None = typer.Option(
        None, "--retention-as-of", help="'Now' of the retention window (with --policy; default --at)."
    ),
    recipient: str | None = typer.Option(
        None, "--recipient", help="Partner receiving the data (default: own use)."
    ),
    cross_border: bool = typer.Option(False, "--cross-border", help="The use crosses a border."),
    actor: str | None = _ACTOR,
    as_json: bool = _JSON,
) -> None:
    """Count what the consent gate lets through (counts only); with --policy also retention and columns."""
    from participant_node.consent import consented_members, gate_partner_data
    from participant_node.data import load_partner
    from policies.policy import load_policy

    _authorize(partner_dir, actor, Action.CONSENT_EXPORT)
    if (purpose is None) == (policy is None):
        raise typer.BadParameter("give exactly one of --purpose or --policy")
    partner = load_partner(partner_dir)
    payload: dict[str, Any] = {"partner": partner_dir.name, "members": len(partner.members)}
    if policy is not None:
        rules = load_policy(policy)
        gated = gate_partner_data(
            partner,
            rules,
            at=_moment(at),
            node_region=region,
            recipient=recipient,
            retention_as_of=_moment(retention_as_of) if retention_as_of else None,
        )
        selection = gated.selection
        payload |= {
            "policy": rules.policy_id,
            "policy_hash": rules.content_hash(),
            "purpose": rules.purpose.value,
            "cross_border": gated.cross_border,
            "retention_purged": gated.retention_purged,
            "columns_dropped": gated.columns_dropped,
        }
    else:
        selection = consented_members(
            partner_dir,
            partner.members,
            partner.consents,
            purpose=parse_purpose(str(purpose)),
            at=_moment(at),
            recipient=recipient,
            cross_border=cross_border,
        )
        payload["purpose"] = purpose
    payload |= {
        "consented": len(selection.member_ids),
        "members_excluded_by_consent": selection.excluded,
        "excluded_by": selection.excluded_by,
        "consent_snapshot_hash": selection.snapshot_hash,
    }
    _emit(payload, as_json, json.dumps(payload, indent=2))
