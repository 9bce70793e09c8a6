"""A partner's own churn warning list: its members' scores and bands, computed and kept at its node.

The scores and bands are per-member outputs, so they never leave the node that computed them and
are never pooled with another partner's (DESIGN.md: per-member scores never leave a node). Each
member gets the published model's score and a band from `models.churn_warning`: the programme's
day rules (30 days without a purchase: warning; 90: lapsed) combined with score cuts derived from
the held-out base rate on the model card. A propensity model has no bands: its list carries scores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from models.churn_warning import WarningPolicy, days_since_last_purchase, warning_bands
from models.task import Task
from participant_node.consent import MemberDataUse, admit
from participant_node.data import load_partner
from participant_node.training.errors import TrainingError
from participant_node.training.local_task_data import FEATURE_READS
from participant_node.training.scoring import read_model, score_partner
from policies.purpose import Purpose

__all__ = ["WARNING_LIST_COLUMNS", "warning_list"]

WARNING_LIST_COLUMNS = ("member_id", "score", "days_since_last_purchase", "band")


def warning_list(
    partner_dir: Path, model_dir: Path, *, as_of: datetime, now: datetime | None = None
) -> pd.DataFrame:
    """One row per consenting member of this partner: ``WARNING_LIST_COLUMNS`` (score only for
    a propensity model), ordered from the most to the least urgent band, then by score."""
    card = read_model(model_dir).card
    moment = now or datetime.now(UTC).replace(tzinfo=None)
    scores = score_partner(partner_dir, model_dir, as_of=as_of, now=moment)[["member_id", "score"]]
    if Task(card.task) is not Task.CHURN:
        return scores.sort_values("score", ascending=False, ignore_index=True)
    base_rate = card.metrics.base_rate if card.metrics is not None else None
    if base_rate is None or not 0.0 < base_rate < 1.0:
        raise TrainingError(f"{model_dir}: the model card has no held-out base rate to set the warning bands")
    # The purchase dates are read through the node gate, under the same use as the scores.
    use = MemberDataUse(
        purpose=Purpose(card.purpose), at=moment, reads=FEATURE_READS, retention_as_of=min(as_of, moment)
    )
    transactions = admit(load_partner(partner_dir), use).transactions
    days = days_since_last_purchase(scores["member_id"], transactions, as_of=as_of)
    bands = warning_bands(scores["score"].to_numpy(), days, WarningPolicy.from_base_rate(float(base_rate)))
    table = scores.assign(days_since_last_purchase=days.round(1), band=bands)
    table["days_since_last_purchase"] = table["days_since_last_purchase"].where(
        table["days_since_last_purchase"] != float("inf")
    )
    order = {"lapsed": 0, "at_risk": 1, "watch": 2, "low": 3}
    table = table.assign(_rank=table["band"].map(order)).sort_values(
        ["_rank", "score"], ascending=[True, False]
    )
    return table.drop(columns="_rank").reset_index(drop=True)[list(WARNING_LIST_COLUMNS)]
