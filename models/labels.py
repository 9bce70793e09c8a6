"""Label builders with a configurable as-of date and horizon: churn and campaign propensity.

Both return one label per member (a `pandas.Series` of 0/1 indexed by ``member_id``), because DP-SGD
is then a member-level guarantee: one member = one training example (issue 3, item 1).
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from models.frame_contract import NS_PER_DAY, as_timestamp, require_columns, to_ns

__all__ = ["CHURN_RATE_FRACTION", "churn_labels", "propensity_labels"]

# The retail plans' churn label: no purchase in the horizon, or a horizon spend rate below 30 % of
# the member's historical rate (a "partial churn" that full-lapse labels miss; Buckinx & Van den
# Poel, "Customer base analysis: partial defection...", EJOR 164(1), 2005).
CHURN_RATE_FRACTION = 0.30
# A member first seen a few days before as_of has no meaningful historical rate; floor the
# denominator at four weeks so one big first basket does not make every later week look like churn.
_MIN_HISTORY_DAYS = 28.0


def churn_labels(
    transactions: pd.DataFrame,
    *,
    as_of: datetime | date | str | pd.Timestamp,
    horizon_days: int,
    members: pd.DataFrame | None = None,
) -> pd.Series:
    """Churn labels at ``as_of`` over ``[as_of, as_of + horizon_days)``.

    Parameters
    ----------
    transactions
        Contract frame with ``member_id``, ``timestamp``, ``amount``.
    as_of
        The labelling date; history is everything strictly before it.
    horizon_days
        Length of the label window in days (> 0).
    members
        If given, only these members (``member_id`` column) can be labelled.

    Returns
    -------
    pandas.Series
        int8, indexed by ``member_id`` (sorted), for every member with a purchase before ``as_of``:
        1 when the member buys nothing in the horizon or spends at a daily rate below
        `CHURN_RATE_FRACTION` of their historical daily rate (history = first purchase .. as_of,
        at least 28 days), else 0.
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    require_columns(transactions, ("member_id", "timestamp", "amount"), frame_name="transactions")
    end = as_timestamp(as_of).as_unit("ns").value
    ts = to_ns(transactions["timestamp"])
    ids = transactions["member_id"].astype(str)
    amount = transactions["amount"].to_numpy(dtype=np.float64)
    before = ts < end
    history = pd.DataFrame({"member_id": ids[before], "ts": ts[before], "amount": amount[before]})
    if members is not None:
        require_columns(members, ("member_id",), frame_name="members")
        history = history[history["member_id"].isin(set(members["member_id"].astype(str)))]
    grouped = history.groupby("member_id", sort=True).agg(first=("ts", "min"), spend=("amount", "sum"))
    days = np.maximum((end - grouped["first"].to_numpy()) / NS_PER_DAY, _MIN_HISTORY_DAYS)
    historical_rate = grouped["spend"].to_numpy() / days
    in_horizon = (ts >= end) & (ts < end + horizon_days * NS_PER_DAY)
    future = pd.Series(amount[in_horizon]).groupby(ids[in_horizon].to_numpy()).sum()
    future_spend = future.reindex(grouped.index, fill_value=0.0).to_numpy()
    no_purchase = ~grouped.index.isin(future.index)
    churned = no_purchase | (future_spend / horizon_days < CHURN_RATE_FRACTION * historical_rate)
    return pd.Series(churned.astype(np.int8), index=grouped.index.rename("member_id"), name="churn")


def propensity_labels(
    campaigns: pd.DataFrame,
    *,
    as_of: datetime | date | str | pd.Timestamp,
    horizon_days: int,
) -> pd.Series:
    """Campaign-response labels for members who receive a campaign starting in the horizon.

    One example per member. A member who receives several campaigns starting in
    ``[as_of, as_of + horizon_days)`` is positive when they redeem a coupon of ANY of them inside
    that campaign's window (``start_date`` to ``end_date``, end day included). Choosing "any" rather
    than, say, the first campaign answers the question a marketer plans with ("is this member worth
    sending the next season's campaigns to?"), uses every exposure, and avoids an arbitrary choice
    between campaigns that start on the same day.

    Parameters
    ----------
    campaigns
        Contract frame: ``member_id``, ``campaign_id``, ``start_date``, ``end_date`` and the optional
        ``redeemed_at`` (first redemption in the window; missing column = nobody redeemed).
    as_of, horizon_days
        The window in which a campaign must START to count.

    Returns
    -------
    pandas.Series
        int8 indexed by ``member_id`` (sorted).
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    require_columns(campaigns, ("member_id", "campaign_id", "start_date", "end_date"), frame_name="campaigns")
    start_at = as_timestamp(as_of)
    start = pd.to_datetime(campaigns["start_date"])
    in_window = ((start >= start_at) & (start < start_at + pd.Timedelta(days=horizon_days))).to_numpy()
    ids = campaigns["member_id"].astype(str).to_numpy()[in_window]
    if "redeemed_at" in campaigns.columns:
        redeemed = pd.to_datetime(campaigns["redeemed_at"], errors="coerce")[in_window]
        window_end = pd.to_datetime(campaigns["end_date"])[in_window] + pd.Timedelta(days=1)
        hit = (redeemed.notna() & (redeemed >= start[in_window]) & (redeemed < window_end)).to_numpy()
    else:
        hit = np.zeros(len(ids), dtype=bool)
    labels = pd.Series(hit, index=pd.Index(ids, name="member_id")).groupby(level=0, sort=True).max()
    return labels.astype(np.int8).rename("propensity")
