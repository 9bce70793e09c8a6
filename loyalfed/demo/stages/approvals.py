"""Demo stage: data-use policies, each store group's data officer approving, one refused job,
and consent withdrawals recorded through the nodes' real consent stores.

Leaves ``ctx.artefacts["policy"]`` (the approved churn policy: id, version, hash, registry path)
and ``ctx.artefacts["policies"]`` (purpose -> the same for every approved policy) so the training
stage can pass ``--policy`` / call ``require_approved`` against ``ctx.out_dir/registry.sqlite``.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from coordinator.approvals import PolicyNotApprovedError, PolicyRegistry, RegisteredPolicy, require_approved
from loyalfed.demo.pipeline import DemoContext
from loyalfed.local_officers import approve_as_local_officers, officers_dir_for
from participant_node.consent import ConsentStore, consented_members
from participant_node.data import Federation, PartnerData, PartnerKind, load_federation, load_partner
from policies.policy import DataUsePolicy, parse_policy
from policies.purpose import Purpose
from policies.roles import Actor, Role

__all__ = ["PolicyApprovals"]

REGISTRY_FILE = "registry.sqlite"
_ANALYST = Actor(Role.ANALYST)
_WITHDRAWALS_PER_NODE = 3
_MEMBER_COLUMNS = ("member_id", "joined_at", "tier", "points_balance")
_TRANSACTION_COLUMNS = (
    "member_id",
    "timestamp",
    "amount",
    "quantity",
    "store_id",
    "category",
    "discount",
    "basket_id",
)
_CAMPAIGN_COLUMNS = ("member_id", "campaign_id", "start_date", "end_date", "campaign_type", "redeemed_at")


class PolicyApprovals:
    """Draft churn and propensity policies, approve them per partner, refuse one job, withdraw consents."""

    name = "policy_approvals"

    def run(self, ctx: DemoContext) -> None:
        federation: Federation = ctx.artefacts.get("federation") or load_federation(ctx.federation_dir)
        stores = sorted(p.partner_id for p in federation.partners if p.kind is PartnerKind.STORE_GROUP)
        brands = sorted(p.partner_id for p in federation.partners if p.kind is PartnerKind.BRAND)
        registry = PolicyRegistry.at_path(ctx.out_dir / REGISTRY_FILE)
        try:
            approved = {
                purpose: _draft_and_approve(ctx, registry, _policy(purpose, stores))
                for purpose in (Purpose.CHURN_MODEL, Purpose.PROPENSITY_MODEL)
            }
            refusal = _refused_job(ctx, registry, stores, brands)
        finally:
            registry.close()
        ctx.artefacts["policies"] = {p.value: _artefact(ctx, r) for p, r in approved.items()}
        ctx.artefacts["policy"] = ctx.artefacts["policies"][Purpose.CHURN_MODEL.value]
        withdrawals = _withdraw_some(ctx, federation, stores)
        _report(ctx, approved, refusal, withdrawals)


def _policy(purpose: Purpose, stores: list[str], **overrides: Any) -> DataUsePolicy:
    columns: dict[str, tuple[str, ...]] = {"members": _MEMBER_COLUMNS, "transactions": _TRANSACTION_COLUMNS}
    if purpose is Purpose.PROPENSITY_MODEL:
        columns["campaigns"] = _CAMPAIGN_COLUMNS
    slug = purpose.value.split(".")[-1].replace("_", "-")
    data: dict[str, Any] = {
        "policy_id": f"freshmart-{slug}",
        "title": f"FreshMart store groups: federated {slug.replace('-', ' ')} (DP-SGD)",
        "purpose": purpose.value,
        "partners": stores,
        "regions": ["CN"],
        "coordinator_region": "CN",
        "columns": columns,
        "sensitive_columns": {"members": ("age_band", "gender", "income_band")},
        "privacy": {"epsilon": 8.0, "delta": 1e-5},
        "min_aggregation_k": 20,
        "impact_assessment": {"reference": "PIA-FM-2026-01", "completed_on": date(2026, 1, 15).isoformat()},
        "joint_handling_agreement": "JHA-FreshMart-2026",
        **overrides,
    }
    return parse_policy(data, source=f"demo policy {data['policy_id']}")


def _draft_and_approve(ctx: DemoContext, registry: PolicyRegistry, policy: DataUsePolicy) -> RegisteredPolicy:
    registered = _draft(ctx, registry, policy)
    _approve(ctx, registry, registered, list(policy.partners))
    require_approved(registry, registered.ref, partners=policy.partners)
    return registered


def _approve(
    ctx: DemoContext, registry: PolicyRegistry, registered: RegisteredPolicy, partners: list[str]
) -> None:
    """Each partner's data officer signs an approval of the registered hash for their own node.

    In the demo every partner runs on this machine, so each officer's own Ed25519 key lives in
    ``<out>/officers/<partner>/`` (``loyalfed.local_officers``).
    """
    approve_as_local_officers(
        registry,
        registered.ref,
        officers_dir=officers_dir_for(ctx.out_dir / REGISTRY_FILE),
        partners=partners,
    )
    for partner in partners:
        _lineage(
            ctx,
            "policy.approved",
            registered,
            actor=f"data_officer:{partner}",
            role="data_officer",
            partner=partner,
        )


def _draft(ctx: DemoContext, registry: PolicyRegistry, policy: DataUsePolicy) -> RegisteredPolicy:
    registered = registry.draft(policy, actor=_ANALYST)
    _lineage(
        ctx,
        "policy.drafted",
        registered,
        actor="analyst",
        role="analyst",
        partners=list(policy.partners),
        categories=sorted(policy.data_categories),
        epsilon=policy.privacy.epsilon,
        delta=policy.privacy.delta,
        details={"version": registered.version, "partners": len(policy.partners)},
    )
    return registered


def _refused_job(
    ctx: DemoContext, registry: PolicyRegistry, stores: list[str], brands: list[str]
) -> dict[str, str]:
    """A cross-brand churn policy: every store group and one brand approve, the other rejects."""
    partners = [*stores, *brands]
    policy = _policy(
        Purpose.CHURN_MODEL,
        partners,
        policy_id="cross-brand-churn",
        title="Churn across store groups and brand partners",
    )
    registered = _draft(ctx, registry, policy)
    approving, refusing = partners[:-1], partners[-1]
    _approve(ctx, registry, registered, approving)
    registry.reject(
        registered.ref,
        actor=Actor(Role.DATA_OFFICER, refusing),
        reason="sharing with a third handler needs our members' separate consent first (PIPL Art. 23)",
    )
    _lineage(
        ctx,
        "policy.rejected",
        registered,
        actor=f"data_officer:{refusing}",
        role="data_officer",
        partner=refusing,
    )
    try:
        require_approved(registry, registered.ref, partners=partners)
    except PolicyNotApprovedError as err:
        _lineage(
            ctx,
            "job.refused",
            registered,
            actor="analyst",
            role="analyst",
            partners=partners,
            details={"partners_not_approved": 1},
        )
        return {"policy": registered.ref, "refused_by": refusing, "message": str(err)}
    raise AssertionError("a policy one partner rejected must not be approved")  # the gate is broken


def _withdraw_some(ctx: DemoContext, federation: Federation, stores: list[str]) -> list[list[str]]:
    """Withdraw churn and propensity consent of a few members per store group, via the node store."""
    rng = random.Random(ctx.seed)
    now = datetime.now(UTC).replace(tzinfo=None)
    partner_data: dict[str, PartnerData] = ctx.artefacts.get("partner_data", {})
    rows = []
    for partner_id in stores:
        folder = federation.partner(partner_id).path
        data = partner_data.get(partner_id) or load_partner(folder)
        before = _selection(folder, data, now)
        chosen = rng.sample(sorted(before.member_ids), _WITHDRAWALS_PER_NODE)
        store = ConsentStore.at_partner(folder)
        try:
            store.withdraw(
                chosen, [Purpose.CHURN_MODEL, Purpose.PROPENSITY_MODEL], at=now - timedelta(seconds=1)
            )
        finally:
            store.close()
        after = _selection(folder, data, now)
        ctx.record_lineage(
            "consent.withdrawn",
            actor=f"data_officer:{partner_id}",
            role="data_officer",
            partner=partner_id,
            purpose=Purpose.CHURN_MODEL.value,
            consent_snapshot_hash=after.snapshot_hash,
            details={"members": len(chosen), "purposes": 2},
        )
        rows.append(
            [
                partner_id,
                f"{len(before.member_ids):,}",
                str(len(chosen)),
                f"{len(after.member_ids):,}",
                f"{after.excluded:,}",
            ]
        )
    return rows


def _selection(folder: Any, data: PartnerData, at: datetime) -> Any:
    return consented_members(folder, data.members, data.consents, purpose=Purpose.CHURN_MODEL, at=at)


def _lineage(ctx: DemoContext, event: str, registered: RegisteredPolicy, **fields: Any) -> None:
    ctx.record_lineage(
        event, purpose=registered.policy.purpose.value, policy_hash=registered.content_hash, **fields
    )


def _artefact(ctx: DemoContext, registered: RegisteredPolicy) -> dict[str, Any]:
    return {
        "policy_id": registered.policy_id,
        "version": registered.version,
        "ref": registered.ref,
        "content_hash": registered.content_hash,
        "registry": str(ctx.out_dir / REGISTRY_FILE),
        "purpose": registered.policy.purpose.value,
        "partners": list(registered.policy.partners),
    }


def _report(
    ctx: DemoContext,
    approved: dict[Purpose, RegisteredPolicy],
    refusal: dict[str, str],
    withdrawals: list[list[str]],
) -> None:
    ctx.report.add_heading("Policies, approvals and consent")
    ctx.report.add_text(
        "An analyst drafts one data-use policy per model as code (purpose, partners, allowed columns, "
        "sensitive columns for fairness checks only, ε/δ cap, k, region). Each policy is identified by the "
        "SHA-256 of its canonical JSON; every store group's data officer approves that hash for their own "
        "node. A cross-brand policy that one brand rejected is refused before anything runs. Then a few "
        "members per store group withdraw consent through their node's consent store: the consent gate "
        "excludes them from every later step."
    )
    rows = [
        [
            r.ref,
            r.policy.purpose.value,
            r.content_hash[:16],
            f"{len(r.policy.partners)}/{len(r.policy.partners)}",
            "approved",
        ]
        for r in approved.values()
    ]
    rows.append(
        [refusal["policy"], Purpose.CHURN_MODEL.value, "-", "-", f"refused ({refusal['refused_by']})"]
    )
    ctx.report.add_table("Policies and approvals", ["policy", "purpose", "sha256", "approvals", "job"], rows)
    ctx.report.add_text(f"Refused job message: {refusal['message']}")
    ctx.report.add_table(
        "Consent withdrawals (churn model)",
        ["partner", "consented before", "withdrawn", "consented after", "members excluded by consent"],
        withdrawals,
    )
    churn = approved[Purpose.CHURN_MODEL]
    ctx.add_summary("policy_approvals", "approved policy", f"{churn.ref} ({churn.content_hash[:12]})")
    ctx.add_summary(
        "policy_approvals", "refused job", f"{refusal['policy']}: {refusal['refused_by']} rejected"
    )
    ctx.add_summary(
        "policy_approvals",
        "consent withdrawals",
        f"{sum(int(r[2]) for r in withdrawals)} members across {len(withdrawals)} nodes",
    )
