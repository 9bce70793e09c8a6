"""`loyalfed policy …`: draft, show, approve, reject and check data-use policies.

The registry is a SQLite file, ``./.loyalfed/registry.sqlite`` by default (``--registry`` or
``LOYALFED_REGISTRY``; any SQLAlchemy URL with ``--registry-url``). The acting identity is
``--as ROLE[:PARTNER]`` (or ``LOYALFED_ACTOR``): ``analyst`` drafts, ``data_officer:PARTNER``
approves or rejects for that partner only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from coordinator.approvals import DEFAULT_REGISTRY_PATH, PolicyRegistry, records_of_processing, resolve_policy
from policies.approval import PartnerState
from policies.policy import load_policy
from policies.roles import Action, Actor, authorize

policy = typer.Typer(help="Data-use policies and data-officer approvals.", no_args_is_help=True)

_REGISTRY = typer.Option(
    DEFAULT_REGISTRY_PATH, "--registry", envvar="LOYALFED_REGISTRY", help="Policy registry SQLite file."
)
_REGISTRY_URL = typer.Option(
    None, "--registry-url", envvar="LOYALFED_REGISTRY_URL", help="SQLAlchemy URL (overrides --registry)."
)
_JSON = typer.Option(False, "--json", help="Print only JSON to stdout.")
_STATE_STYLE = {PartnerState.APPROVED: "green", PartnerState.REJECTED: "red", PartnerState.PENDING: "yellow"}


def register(app: typer.Typer) -> None:
    app.add_typer(policy, name="policy")


def open_registry(path: Path, url: str | None) -> PolicyRegistry:
    """The registry named on the command line (a URL wins over a file path)."""
    return PolicyRegistry(url) if url else PolicyRegistry.at_path(path)


def _emit(payload: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        Console().print(text)


@policy.command("draft")
def draft(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Policy YAML or JSON file."),
    actor: str = typer.Option(
        "analyst", "--as", envvar="LOYALFED_ACTOR", help="Acting identity ROLE[:PARTNER]."
    ),
    registry_path: Path = _REGISTRY,
    registry_url: str | None = _REGISTRY_URL,
    as_json: bool = _JSON,
) -> None:
    """Validate a policy file and register it (a changed policy becomes a new version)."""
    registry = open_registry(registry_path, registry_url)
    try:
        registered = registry.draft(load_policy(file), actor=Actor.parse(actor))
    finally:
        registry.close()
    payload = {
        "policy": registered.ref,
        "content_hash": registered.content_hash,
        "partners": list(registered.policy.partners),
    }
    _emit(payload, as_json, f"drafted [bold]{registered.ref}[/bold] sha256 {registered.content_hash}")


@policy.command("show")
def show(
    ref: str = typer.Argument(..., help="Policy id, id@version, hash prefix or policy file."),
    registry_path: Path = _REGISTRY,
    registry_url: str | None = _REGISTRY_URL,
    as_json: bool = _JSON,
) -> None:
    """Show a registered policy with its version and content hash."""
    registry = open_registry(registry_path, registry_url)
    try:
        registered = resolve_policy(registry, ref)
    finally:
        registry.close()
    payload = {
        "policy": registered.ref,
        "content_hash": registered.content_hash,
        "drafted_by": registered.drafted_by,
        "drafted_at": registered.drafted_at.isoformat(),
        "body": registered.policy.model_dump(mode="json"),
    }
    _emit(payload, as_json, json.dumps(payload, indent=2))


def _decide(
    ref: str, actor: str, partner: str | None, reason: str, approve: bool, registry: PolicyRegistry
) -> Any:
    acting = Actor.parse(actor)
    if approve:
        return registry.approve(ref, actor=acting, partner=partner, reason=reason)
    return registry.reject(ref, actor=acting, partner=partner, reason=reason)


@policy.command("approve")
def approve(
    ref: str = typer.Argument(..., help="Policy id (its current version), id@version or hash prefix."),
    actor: str = typer.Option(..., "--as", envvar="LOYALFED_ACTOR", help="data_officer:PARTNER"),
    partner: str | None = typer.Option(
        None, "--partner", help="Partner approved for (default: the actor's)."
    ),
    reason: str = typer.Option("", "--reason", help="Optional note kept with the approval."),
    registry_path: Path = _REGISTRY,
    registry_url: str | None = _REGISTRY_URL,
    as_json: bool = _JSON,
) -> None:
    """Approve the current version of a policy for your own partner's node."""
    _record_decision(ref, actor, partner, reason, True, registry_path, registry_url, as_json)


@policy.command("reject")
def reject(
    ref: str = typer.Argument(..., help="Policy id (its current version), id@version or hash prefix."),
    reason: str = typer.Option(..., "--reason", help="Why the policy is rejected (required)."),
    actor: str = typer.Option(..., "--as", envvar="LOYALFED_ACTOR", help="data_officer:PARTNER"),
    partner: str | None = typer.Option(
        None, "--partner", help="Partner rejected for (default: the actor's)."
    ),
    registry_path: Path = _REGISTRY,
    registry_url: str | None = _REGISTRY_URL,
    as_json: bool = _JSON,
) -> None:
    """Reject the current version of a policy for your own partner's node, with a reason."""
    _record_decision(ref, actor, partner, reason, False, registry_path, registry_url, as_json)


def _record_decision(
    ref: str,
    actor: str,
    partner: str | None,
    reason: str,
    approve: bool,
    registry_path: Path,
    registry_url: str | None,
    as_json: bool,
) -> None:
    """One data officer's decision on a policy's current version, recorded and reported."""
    registry = open_registry(registry_path, registry_url)
    try:
        decision = _decide(ref, actor, partner, reason, approve, registry)
    finally:
        registry.close()
    payload = {
        "policy_id": decision.policy_id,
        "policy_hash": decision.policy_hash,
        "partner": decision.partner,
        "decision": decision.decision.value,
    }
    if not approve:
        payload["reason"] = decision.reason
    verb = "[green]approved[/green]" if approve else "[red]rejected[/red]"
    summary = f"{verb} {decision.policy_id} ({decision.policy_hash[:12]}) for {decision.partner}"
    _emit(payload, as_json, summary)


@policy.command("status")
def status(
    ref: str = typer.Argument(..., help="Policy id, id@version, hash prefix or policy file."),
    registry_path: Path = _REGISTRY,
    registry_url: str | None = _REGISTRY_URL,
    as_json: bool = _JSON,
) -> None:
    """Each involved partner's approval state on the policy's hash; exit 1 unless all approved."""
    registry = open_registry(registry_path, registry_url)
    try:
        registered = resolve_policy(registry, ref)
        state = registry.status(registered.content_hash)
        current = registry.latest(registered.policy_id)
    finally:
        registry.close()
    partners = {
        p: {"state": s.value, "reason": state.reasons.get(p, "")} for p, s in sorted(state.states.items())
    }
    approved = state.approved and current.content_hash == registered.content_hash
    payload = {
        "policy": registered.ref,
        "content_hash": registered.content_hash,
        "current_version": current.ref,
        "approved": approved,
        "partners": partners,
    }
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        table = Table(title=f"{registered.ref} sha256 {registered.content_hash[:12]}")
        for column in ("partner", "state", "reason"):
            table.add_column(column)
        for partner, item in partners.items():
            style = _STATE_STYLE[PartnerState(item["state"])]
            table.add_row(partner, f"[{style}]{item['state']}[/{style}]", item["reason"])
        Console().print(table)
    if not approved:
        raise SystemExit(1)  # click swallows typer.Exit under standalone_mode=False


@policy.command("records")
def records(
    actor: str = typer.Option(
        "auditor", "--as", envvar="LOYALFED_ACTOR", help="auditor or data_officer:PARTNER"
    ),
    audit_log: Path | None = typer.Option(
        None,
        "--audit-log",
        exists=True,
        dir_okay=False,
        help="Audit log whose lineage adds job counts and ε.",
    ),
    registry_path: Path = _REGISTRY,
    registry_url: str | None = _REGISTRY_URL,
) -> None:
    """Records of processing (GDPR Art. 30 / PIPL Art. 54) from the registry and audit log, as JSON."""
    authorize(Actor.parse(actor), Action.RECORDS_GENERATE)
    lineage: list[dict[str, Any]] = []
    if audit_log is not None:
        from audit import AuditLog

        with AuditLog.open(audit_log) as log:
            lineage = [event.model_dump(mode="json") for _, event in log.iter_events()]
    registry = open_registry(registry_path, registry_url)
    try:
        typer.echo(json.dumps(records_of_processing(registry, lineage=lineage), indent=2))
    finally:
        registry.close()
