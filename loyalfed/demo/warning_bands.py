"""The demo's churn warning bands: each node's own list, summarised as band counts per node.

Each partner's list is computed at its node from the published churn model
(`participant_node.training.churn_warning_list`) and stays there; the report shows only how many
members fall in each band at each node (counts over the node's members, no member).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from loyalfed.federated_run import select_partners
from participant_node.data import load_federation
from participant_node.training.churn_warning_list import warning_list
from protocol import ModelCard

__all__ = ["BANDS", "warning_band_rows"]

BANDS = ("lapsed", "at_risk", "watch", "low")


def warning_band_rows(
    card: ModelCard, model_dir: Path, federation_dir: Path, *, as_of: datetime
) -> list[list[str]]:
    """Per node: the partner, then its members in each of `BANDS` (a churn model's card)."""
    if card.task != "churn":
        raise ValueError(f"warning bands need a churn model, got a {card.task!r} model")
    rows = []
    for partner_id, path, _ in select_partners(load_federation(federation_dir), None):
        counts = warning_list(path, model_dir, as_of=as_of)["band"].value_counts()
        rows.append([partner_id, *(f"{int(counts.get(band, 0)):,}" for band in BANDS)])
    return rows
