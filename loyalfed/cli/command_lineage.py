"""What each state-changing CLI command records in the audit log (used with ``audit_trail.audited``).

Each function fills an :class:`~loyalfed.cli.audit_trail.AuditStep` from the command's arguments
and the state it has just committed: policy hashes, dataset fingerprints, ε, artefact hashes and
counts. (Policy drafts and decisions go through the coordinator service, which appends their
events itself: ``coordinator.platform.audit_trail``.)
Never a member identifier, never a free-text value: file and folder names go in only when they are
not identifier-shaped (``audit.identifier_guard``), and a published model's id is derived from its
weights' SHA-256, so ``loyalfed audit lineage --model`` works for any model a command trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from audit.identifier_guard import identifier_problem
from audit.lineage_event import EventType
from loyalfed.cli.audit_trail import AuditStep
from protocol.model_card import fairness_alarms

__all__ = [
    "agreement_approval",
    "agreement_draft",
    "budget_cap",
    "consent_import",
    "consent_withdrawal",
    "model_id_of",
    "policy_draft_local",
    "policy_hash_of",
    "psi_cache_answer",
    "psi_cache_build",
    "psi_cache_match",
    "psi_cache_query",
    "psi_run",
    "scoring",
    "training",
]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name(text: str, fallback: str) -> str:
    """A folder or partner name for the log, or ``fallback`` when it looks like an identifier."""
    return text if text and identifier_problem(text) is None else fallback


def policy_draft_local(step: AuditStep, arguments: dict[str, Any]) -> None:
    """policy.drafted in a local registry, and each local officer's policy.approved when asked."""
    from coordinator.approvals import PolicyRegistry, resolve_policy

    registry = PolicyRegistry.at_path(Path(arguments["registry_path"]))
    try:
        registered = resolve_policy(registry, str(arguments["file"]))
    finally:
        registry.close()
    policy = registered.policy
    common = {"policy_hash": registered.content_hash, "purpose": str(policy.purpose)}
    step.update(**common, partners=tuple(policy.partners), epsilon=policy.privacy.epsilon)
    step.update(delta=policy.privacy.delta, categories=tuple(sorted(policy.columns)))
    if arguments.get("approve_locally"):
        for partner in policy.partners:
            officer = {"actor": f"data_officer:{partner}", "role": "data_officer", "partner": partner}
            step.add(EventType.POLICY_APPROVED, **common, **officer)


def _agreement(path: Path) -> dict[str, Any]:
    from participant_node.points.agreement_book import load_signed_agreement

    agreement = load_signed_agreement(path).agreement
    return {
        "policy_hash": agreement.content_hash(),
        "purpose": "loyalty.points_interchange",
        "partners": tuple(_name(p, "partner") for p in agreement.partners),
        "details": {"document": "interchange_agreement"},
    }


def agreement_draft(step: AuditStep, arguments: dict[str, Any]) -> None:
    """policy.drafted for a points-interchange agreement: its content hash and its two partners."""
    step.update(**_agreement(Path(arguments["out"])))


def agreement_approval(step: AuditStep, arguments: dict[str, Any]) -> None:
    """policy.approved: one partner's officer signed the agreement's content hash."""
    step.update(**_agreement(Path(arguments["file"])), partner=_name(str(arguments["partner"]), "partner"))


def consent_import(step: AuditStep, arguments: dict[str, Any]) -> None:
    """consent.imported: whose store, and a fingerprint of the imported file (not its content)."""
    partner = _name(arguments["partner_dir"].name, "partner")
    fingerprint = _sha256(arguments["file"])
    step.update(
        partner=partner, inputs=[{"partner": partner, "fingerprint": fingerprint, "name": "consents"}]
    )


def consent_withdrawal(step: AuditStep, arguments: dict[str, Any]) -> None:
    """consent.withdrawn: how many members and which purposes (counts only, never who)."""
    members = list(arguments.get("member") or [])
    if arguments.get("members_file") is not None:
        lines = Path(arguments["members_file"]).read_text(encoding="utf-8").splitlines()
        members += [line for line in lines if line.strip()]
    purposes = [str(p) for p in arguments.get("purpose") or []]
    step.update(
        partner=_name(arguments["partner_dir"].name, "partner"),
        purpose=purposes[0] if len(purposes) == 1 else None,
        details={"members": len(members), "purposes": len(purposes) or "all"},
    )


def budget_cap(step: AuditStep, arguments: dict[str, Any]) -> None:
    """budget.set: the partner dataset's yearly ε cap."""
    step.update(partner=arguments["partner"], epsilon=float(arguments["epsilon"]))
    if arguments.get("year") is not None:
        step.update(details={"year": int(arguments["year"])})


def model_id_of(model_dir: Path) -> str:
    """A published model's id: ``model-`` and the first 16 hex digits of its weights' SHA-256."""
    card = json.loads((model_dir / "model_card.json").read_text(encoding="utf-8"))
    return f"model-{card['weights_sha256'][:16]}"


def _model_outputs(model_dir: Path) -> list[dict[str, str]]:
    names = ("model.pt", "model_card.json")
    return [{"name": n, "sha256": _sha256(model_dir / n)} for n in names if (model_dir / n).is_file()]


def training(step: AuditStep, out: Path) -> None:
    """A finished job (the main event) and its model's publication, from the model card just written.

    The reservation, start, rounds and budget charges were appended while the job ran
    (``loyalfed.cli.training_audit``).
    """
    card = json.loads((out / "model_card.json").read_text(encoding="utf-8"))
    inputs = [
        {"partner": partner, "fingerprint": fingerprint, "name": "partner data"}
        for partner, fingerprint in sorted(card.get("data_fingerprints", {}).items())
        if fingerprint
    ]
    job = {"job_id": card["job_id"], "purpose": card["purpose"], "policy_hash": _card_policy_hash(card)}
    step.update(**job, inputs=inputs, epsilon=card["target_epsilon"], delta=card["delta"])
    step.update(
        partners=tuple(node["partner_id"] for node in card["nodes"]), details={"rounds": card["rounds"]}
    )
    step.add(
        EventType.MODEL_PUBLISHED,
        **job,
        model_id=model_id_of(out),
        inputs=inputs,
        outputs=_model_outputs(out),
        epsilon=card["epsilon_worst_case_member"],
        delta=card["delta"],
    )
    for details in fairness_alarms(card):
        step.add(EventType.MODEL_FAIRNESS_ALARM, **job, model_id=model_id_of(out), details=details)


def _card_policy_hash(card: dict[str, Any]) -> str | None:
    for key in ("policy_hash", "policy_sha256"):
        if isinstance(card.get(key), str):
            return str(card[key])
    policy = card.get("policy")
    if isinstance(policy, dict) and isinstance(policy.get("hash") or policy.get("content_hash"), str):
        return str(policy.get("hash") or policy.get("content_hash"))
    return None


def policy_hash_of(policy: str, registry: Path) -> str:
    """The content hash of the policy a job names (file, id, id@version or hash) in ``registry``."""
    from coordinator.approvals import PolicyRegistry, resolve_policy

    book = PolicyRegistry.at_path(registry)
    try:
        return str(resolve_policy(book, policy).content_hash)
    finally:
        book.close()


def scoring(step: AuditStep, arguments: dict[str, Any]) -> None:
    """model.scored: which model, and a hash of each partner's scores file (kept at that node)."""
    model: Path = arguments["model"]
    out: Path = arguments["out"]
    files = sorted(out.glob("*.csv")) if out.is_dir() else [out]
    step.update(
        model_id=model_id_of(model),
        outputs=[{"name": f"scores/{f.name}", "sha256": _sha256(f)} for f in files],
        details={"as_of_year": int(str(arguments["as_of"])[:4])},
    )


def _file_input(path: Path, name: str) -> dict[str, str]:
    """A partner folder (its contract files' fingerprint) or one member file (its SHA-256)."""
    if path.is_dir():
        from participant_node.data.partner_data import fingerprint_partner

        return {
            "partner": _name(path.resolve().name, "partner"),
            "fingerprint": fingerprint_partner(path),
            "name": name,
        }
    partner = _name(path.resolve().parent.name, "partner")
    return {"partner": partner, "fingerprint": _sha256(path), "name": name}


def _psi_scope(arguments: dict[str, Any], own: Path) -> dict[str, Any]:
    """The matching's purpose and the two partners it is between (own folder and ``--recipient``)."""
    folder = own.resolve() if own.is_dir() else own.resolve().parent
    partners = [_name(folder.name, "partner")]
    recipient = arguments.get("recipient")
    if isinstance(recipient, str):
        partners.append(_name(recipient, "partner"))
    return {"purpose": str(arguments["purpose"]), "partners": tuple(partners)}


def psi_run(step: AuditStep, arguments: dict[str, Any]) -> None:
    """psi.run: purpose, mode and fingerprints of both member files (never their rows)."""
    inputs = [_file_input(arguments["a"], "members a"), _file_input(arguments["b"], "members b")]
    step.update(inputs=inputs, details={"mode": str(arguments["mode"]), "psi_role": "both"})
    step.update(purpose=str(arguments["purpose"]), partners=tuple(i["partner"] for i in inputs))
    if isinstance(arguments.get("policy"), str):  # the policy the matching ran under, by content hash
        step.update(policy_hash=policy_hash_of(arguments["policy"], arguments["registry"]))
    out = arguments.get("out")
    if isinstance(out, Path) and out.is_file():
        step.update(outputs=[{"name": "matches", "sha256": _sha256(out)}])


def psi_cache_build(step: AuditStep, arguments: dict[str, Any]) -> None:
    """psi.cache_epoch: a cached set encrypted under a new epoch key (the tags' hash, not the key)."""
    step.update(
        **_psi_scope(arguments, arguments["set_file"]),
        inputs=[_file_input(arguments["set_file"], "members")],
        outputs=[{"name": "epoch tags", "sha256": _sha256(arguments["out"])}],
        details={"mode": "cached_set", "psi_role": "holder_build"},
    )


def _tags_input(arguments: dict[str, Any]) -> dict[str, str]:
    """The holder's published epoch tags, by hash: ties this step to the epoch's ``build`` event."""
    return {
        "partner": _name(str(arguments["recipient"]), "partner"),
        "fingerprint": _sha256(arguments["tags_file"]),
        "name": "epoch tags",
    }


def psi_cache_query(step: AuditStep, arguments: dict[str, Any]) -> None:
    """psi.run (cached set, partner's query): its members' fingerprint, the epoch tags, the query's hash."""
    step.update(
        **_psi_scope(arguments, arguments["set_file"]),
        inputs=[_file_input(arguments["set_file"], "members"), _tags_input(arguments)],
        outputs=[{"name": "query", "sha256": _sha256(arguments["out"])}],
        details={"mode": "cached_set", "psi_role": "partner_query"},
    )


def psi_cache_answer(step: AuditStep, arguments: dict[str, Any]) -> None:
    """psi.cache_epoch (holder's answer under the epoch key): the query and answer by hash, the count."""
    key = json.loads(Path(arguments["key_file"]).read_text(encoding="utf-8"))
    purpose = key.get("purpose")
    step.update(
        purpose=purpose if isinstance(purpose, str) else None,
        partners=tuple(_name(str(p), "partner") for p in key.get("partners", ()) if isinstance(p, str)),
        outputs=[
            {"name": "query", "sha256": _sha256(arguments["query_file"])},
            {"name": "answer", "sha256": _sha256(arguments["out"])},
        ],
        details={"mode": "cached_set", "psi_role": "holder_answer"},
    )


def psi_cache_match(step: AuditStep, arguments: dict[str, Any]) -> None:
    """psi.run (cached set, partner's match): inputs by fingerprint, the matches file by hash."""
    step.update(
        **_psi_scope(arguments, arguments["set_file"]),
        inputs=[_file_input(arguments["set_file"], "members"), _tags_input(arguments)],
        details={"mode": "cached_set", "psi_role": "partner_match"},
    )
    out = arguments.get("out")
    if isinstance(out, Path) and out.is_file():
        step.update(outputs=[{"name": "matches", "sha256": _sha256(out)}])
