"""Demo stage 1: build the Complete Journey federation, validate it, register the partners' nodes.

Leaves ``ctx.artefacts["federation"]`` (a `participant_node.data.Federation`) and
``ctx.artefacts["partner_data"]`` (partner id -> validated `PartnerData`) for the later stages.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: the demo writes PNGs, it never opens a window

import matplotlib.pyplot as plt
import pandas as pd
from rich.progress import Progress

from loyalfed.datasets.complete_journey import build_complete_journey_federation
from loyalfed.demo.pipeline import DemoContext
from participant_node.data import (
    DataContractError,
    Federation,
    PartnerData,
    PartnerKind,
    fingerprint_partner,
    load_federation,
    load_partner,
)
from policies.purpose import Purpose

__all__ = ["BuildFederation"]

_FIGURE = "data_per_partner.png"
_ROUND_TO = 100  # what a node tells the coordinator: row counts rounded, never exact


class BuildFederation:
    """Build ``ctx.federation_dir`` from Complete Journey, load and validate every partner."""

    name = "build_federation"

    def run(self, ctx: DemoContext) -> None:
        with ctx.console.status("building the Complete Journey federation"):
            build_complete_journey_federation(ctx.federation_dir, seed=ctx.seed)
        federation = load_federation(ctx.federation_dir)
        partner_data = _load_all(ctx, federation)
        ctx.artefacts["federation"] = federation
        ctx.artefacts["partner_data"] = partner_data
        for partner in federation.partners:
            _register_node(ctx, partner.partner_id, partner.kind, partner_data[partner.partner_id])
        rows = [_partner_row(federation, pid, data) for pid, data in partner_data.items()]
        _report(ctx, federation, rows)


def _load_all(ctx: DemoContext, federation: Federation) -> dict[str, PartnerData]:
    loaded: dict[str, PartnerData] = {}
    with Progress(console=ctx.console, transient=True) as progress:
        task = progress.add_task("validating partner folders", total=len(federation.partners))
        for partner in federation.partners:
            data = load_partner(partner.path)
            if not data.report.ok:
                first = data.report.problems[0]
                raise DataContractError(f"built data has unusable rows: {first.reason}", file=first.location)
            loaded[partner.partner_id] = data
            progress.advance(task)
    return loaded


def _register_node(ctx: DemoContext, partner_id: str, kind: PartnerKind, data: PartnerData) -> None:
    summary = data.schema_summary(round_to=_ROUND_TO)
    ctx.record_lineage(
        "node.registered",
        actor=partner_id,
        role="partner organisation",
        partner=partner_id,
        inputs=[{"partner": partner_id, "fingerprint": fingerprint_partner(data.path)}],
        details={
            "kind": kind.value,
            **{f"{kind_}_rows_rounded": info["rows"] for kind_, info in summary.items()},
            **{f"{kind_}_columns": len(info["columns"]) for kind_, info in summary.items()},
        },
    )


def _consent_rate(data: PartnerData, purpose: Purpose) -> float:
    consents = data.consents
    active = consents[(consents["purpose"] == purpose.value) & consents["withdrawn_at"].isna()]
    return active["member_id"].nunique() / max(len(data.members), 1)


def _partner_row(federation: Federation, partner_id: str, data: PartnerData) -> dict[str, object]:
    row: dict[str, object] = {
        "partner": partner_id,
        "kind": federation.partner(partner_id).kind.value,
        "members": len(data.members),
        "transactions": len(data.transactions),
        "campaign exposures": 0 if data.campaigns is None else len(data.campaigns),
    }
    for purpose in Purpose:
        row[purpose.value] = _consent_rate(data, purpose)
    return row


def _report(ctx: DemoContext, federation: Federation, rows: list[dict[str, object]]) -> None:
    frame = pd.DataFrame(rows)
    ctx.report.add_heading("Data per partner")
    ctx.report.add_text(
        "The Complete Journey (dunnhumby, 2,469 households, 2017) split into four FreshMart store-group "
        "nodes by primary store and two cross-brand partners carved out of its departments (CarePlus: "
        "health and beauty, FuelGo: fuel). Consent rates are the share of members with an active "
        "(not withdrawn) consent per purpose. Every file was validated against the data contract."
    )
    header = list(frame.columns)
    table_rows = [
        [f"{v:.0%}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v) for v in r]
        for r in frame.itertuples(index=False)
    ]
    ctx.report.add_table("Data per partner", header, table_rows)
    _plot(frame, ctx)
    ctx.report.add_figure("Members, transactions and consent rates per partner", _FIGURE)
    kinds = frame["kind"].value_counts()
    groups, brands = kinds.get(PartnerKind.STORE_GROUP.value, 0), kinds.get(PartnerKind.BRAND.value, 0)
    ctx.add_summary(
        "build_federation", "partners", f"{len(federation.partners)} ({groups} store groups, {brands} brands)"
    )
    ctx.add_summary("build_federation", "member records (all partners)", f"{frame['members'].sum():,}")
    ctx.add_summary("build_federation", "transactions (all partners)", f"{frame['transactions'].sum():,}")


def _plot(frame: pd.DataFrame, ctx: DemoContext) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    labels = frame["partner"].str.replace("freshmart-", "FM-")
    axes[0].bar(labels, frame["members"], color="#4C72B0")
    axes[0].set_title("members")
    axes[1].bar(labels, frame["transactions"], color="#55A868")
    axes[1].set_title("transaction lines")
    width = 0.2
    for i, purpose in enumerate(Purpose):
        positions = [x + (i - 1.5) * width for x in range(len(frame))]
        axes[2].bar(positions, frame[purpose.value], width=width, label=purpose.value)
    axes[2].set_xticks(range(len(frame)), labels)
    axes[2].set_ylim(0, 1.3)  # headroom for the legend
    axes[2].set_title("active consent rate per purpose")
    axes[2].legend(fontsize=7, loc="upper center", ncols=2)
    for axis in axes:
        axis.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.tight_layout()
    fig.savefig(ctx.out_dir / _FIGURE, dpi=110)
    plt.close(fig)
