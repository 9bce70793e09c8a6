"""`loyalfed policy …`: data-use policies and signed decisions, through the coordinator service.

An analyst drafts a policy from a file; a data officer signs their decision *locally* with their
own Ed25519 key (``loyalfed officer keygen``) and posts the signed statement. Nobody declares a
role: the coordinator knows it from the caller's token. ``records`` builds GDPR Art. 30 / PIPL
Art. 54 records of processing from a local registry file and audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from audit.lineage_event import EventType
from coordinator.approvals import DEFAULT_REGISTRY_PATH, PolicyRegistry, records_of_processing
from loyalfed.cli import command_lineage
from loyalfed.cli.audit_trail import audited
from loyalfed.cli.service_client import (
    CaOption,
    ClientOptions,
    ConfigOption,
    JsonOption,
    ServiceClient,
    TokenOption,
    UrlOption,
    connect,
)
from policies.approval import ApprovalDecision
from policies.policy import load_policy
from policies.signed_approval import load_private_key, sign_decision

policy = typer.Typer(help="Data-use policies and data officers' signed decisions.", no_args_is_help=True)
_STYLE = {"approved": "green", "rejected": "red", "pending": "yellow"}
VersionOption = Annotated[
    int | None, typer.Option("--version", min=1, help="Policy version (default: latest)")
]


def register(app: typer.Typer) -> None:
    app.add_typer(policy, name="policy")


def _approvals_line(approvals: dict[str, str]) -> str:
    return ", ".join(
        f"[{_STYLE.get(s, 'white')}]{p} {s}[/{_STYLE.get(s, 'white')}]" for p, s in approvals.items()
    )


@policy.command("draft")
def draft(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Policy YAML or JSON file")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Validate a policy file here and register it (a changed policy becomes a new version)."""
    document = load_policy(file).model_dump(mode="json")
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        version = client.post("/policies", {"document": document})
    if as_json:
        typer.echo(json.dumps(version, indent=2))
    else:
        Console().print(
            f"drafted [bold]{version['policy_id']} v{version['version']}[/bold] sha256 {version['hash']}"
        )


@policy.command("list")
def list_policies(
    pending: Annotated[bool, typer.Option("--pending", help="Only those awaiting my organisation")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Each policy's latest version and every partner's decision on it."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        organisation = client.get("/me")["organisation"] if pending else None
        policies = client.get("/policies", pending_for=organisation)
    if as_json:
        typer.echo(json.dumps(policies, indent=2))
        return
    table = Table("policy", "version", "sha256", "decisions")
    for item in policies:
        table.add_row(
            item["policy_id"], str(item["version"]), item["hash"][:16], _approvals_line(item["approvals"])
        )
    Console().print(table)


@policy.command("show")
def show(
    policy_id: Annotated[str, typer.Argument(help="Policy id")],
    version: VersionOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """A policy version: its document, hash and each partner's decision."""
    path = f"/policies/{policy_id}" + (f"/versions/{version}" if version else "")
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        detail = client.get(path)
    if as_json:
        typer.echo(json.dumps(detail, indent=2))
        return
    Console().print(
        f"[bold]{detail['policy_id']} v{detail['version']}[/bold] sha256 {detail['hash']}\n"
        f"{_approvals_line(detail['approvals'])}"
    )
    typer.echo(json.dumps(detail["document"], indent=2))


@policy.command("diff")
def diff(
    policy_id: Annotated[str, typer.Argument(help="Policy id")],
    from_version: Annotated[int, typer.Argument(min=1, help="Older version")],
    to_version: Annotated[int, typer.Argument(min=1, help="Newer version")],
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed between two versions, field by field."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        changes = client.get(f"/policies/{policy_id}/diff", **{"from": from_version, "to": to_version})
    if as_json:
        typer.echo(json.dumps(changes, indent=2))
        return
    for change in changes["changes"]:
        typer.echo(f"{change['path']}: {json.dumps(change['before'])} -> {json.dumps(change['after'])}")


def _sign_and_post(
    client: ServiceClient,
    policy_id: str,
    version: int | None,
    key_file: Path,
    decision: ApprovalDecision,
    reason: str,
) -> dict[str, Any]:
    key = load_private_key(key_file)
    organisation = client.get("/me")["organisation"]
    path = f"/policies/{policy_id}" + (f"/versions/{version}" if version else "")
    target = client.get(path)
    signed = sign_decision(
        key,
        policy_id=target["policy_id"],
        policy_version=target["version"],
        policy_hash=target["hash"],
        partner_id=organisation,
        decision=decision,
    )
    body = signed.to_dict() | {"reason": reason}
    stored: dict[str, Any] = client.post(
        f"/policies/{policy_id}/versions/{target['version']}/decisions", body
    )
    return stored | {"policy_id": target["policy_id"], "version": target["version"], "hash": target["hash"]}


KeyOption = Annotated[
    Path, typer.Option("--key", exists=True, dir_okay=False, help="Your officer.key (signs locally)")
]


@policy.command("approve")
def approve(
    policy_id: Annotated[str, typer.Argument(help="Policy id")],
    key: KeyOption,
    version: VersionOption = None,
    reason: Annotated[str, typer.Option("--reason", help="Optional note shown with the approval")] = "",
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign an approval of a policy version's hash for your organisation's node, and post it."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        stored = _sign_and_post(client, policy_id, version, key, ApprovalDecision.APPROVED, reason)
    _report(stored, as_json)


@policy.command("reject")
def reject(
    policy_id: Annotated[str, typer.Argument(help="Policy id")],
    key: KeyOption,
    reason: Annotated[str, typer.Option("--reason", help="Why (required; shown to the analyst)")],
    version: VersionOption = None,
    url: UrlOption = None,
    token: TokenOption = None,
    ca_cert: CaOption = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign a rejection of a policy version's hash for your organisation's node, and post it."""
    with connect(ClientOptions(url, token, ca_cert, config)) as client:
        stored = _sign_and_post(client, policy_id, version, key, ApprovalDecision.REJECTED, reason)
    _report(stored, as_json)


def _report(stored: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(stored, indent=2))
        return
    Console().print(
        f"{stored['decision']} {stored['policy_id']} v{stored['version']} ({stored['hash'][:12]}) "
        f"for {stored['partner_id']}, signed at {stored['signed_at']}"
    )


@policy.command("records")
def records(
    audit_log: Annotated[
        Path | None,
        typer.Option("--audit-log", exists=True, dir_okay=False, help="Audit log adding job counts and ε"),
    ] = None,
    registry_path: Annotated[
        Path, typer.Option("--registry", envvar="LOYALFED_REGISTRY", help="Registry file")
    ] = (DEFAULT_REGISTRY_PATH),
    registry_url: Annotated[
        str | None, typer.Option("--registry-url", envvar="LOYALFED_REGISTRY_URL")
    ] = None,
) -> None:
    """Records of processing (GDPR Art. 30 / PIPL Art. 54) from a local registry and audit log, as JSON."""
    lineage: list[dict[str, Any]] = []
    if audit_log is not None:
        from audit import AuditLog

        with AuditLog.open(audit_log) as log:
            lineage = [event.model_dump(mode="json") for _, event in log.iter_events()]
    registry = PolicyRegistry(registry_url) if registry_url else PolicyRegistry.at_path(registry_path)
    try:
        typer.echo(json.dumps(records_of_processing(registry, lineage=lineage), indent=2))
    finally:
        registry.close()


@policy.command("draft-local")
@audited(EventType.POLICY_DRAFTED, command_lineage.policy_draft_local, role="analyst")
def draft_local(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Policy YAML or JSON file")],
    approve_locally: Annotated[
        bool,
        typer.Option(
            "--approve-as-local-officers",
            help="Each partner's local data officer signs an approval of the new hash with its own "
            "Ed25519 key (kept beside the registry, under officers/<partner>/, 0600).",
        ),
    ] = False,
    registry_path: Annotated[
        Path, typer.Option("--registry", envvar="LOYALFED_REGISTRY", help="Local policy registry file.")
    ] = DEFAULT_REGISTRY_PATH,
    as_json: JsonOption = False,
) -> None:
    """Experiments where every partner runs on this machine (the bundled demo data): register a policy
    in a local registry and, in the same step, have every partner's officer sign its approval.

    `loyalfed train --policy FILE --registry FILE` checks exactly these signed approvals.
    """
    from loyalfed.local_officers import approve_as_local_officers, officers_dir_for
    from policies.roles import Actor, Role

    registry = PolicyRegistry.at_path(registry_path)
    try:
        registered = registry.draft(load_policy(file), actor=Actor(Role.ANALYST))
        if approve_locally:
            approve_as_local_officers(registry, registered.ref, officers_dir=officers_dir_for(registry_path))
    finally:
        registry.close()
    payload = {
        "policy": registered.ref,
        "content_hash": registered.content_hash,
        "partners": list(registered.policy.partners),
        "approved_by_local_officers": approve_locally,
    }
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
    else:
        signed = " and signed by every partner's local officer" if approve_locally else ""
        Console().print(f"drafted [bold]{registered.ref}[/bold] sha256 {registered.content_hash}{signed}")
