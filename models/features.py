"""`build_features`: one row per member of behavioural features, scaled by a `FeatureSchema`.

Only transactions strictly before ``as_of`` (and inside the schema's trailing window) are used, so a
feature never sees the label period. Everything is vectorised over integer member codes
(`numpy.bincount` and sorted unique keys), which keeps 10^6 transactions to about a second.

The contract's REQUIRED columns are enough (members: ``member_id``, ``joined_at``; transactions:
``member_id``, ``timestamp``, ``amount``). Optional columns feed optional features; when a column is
missing its feature is 0 for everyone, never an error:

========================  =============================================
missing column            features that are then 0
========================  =============================================
transactions.basket_id    none: a visit is then one distinct timestamp
transactions.quantity     basket_items
transactions.discount     discount_share
transactions.store_id     stores_visited
transactions.category     every category_share_*
campaigns (no frame)      coupons_redeemed, coupon_redemption_rate
========================  =============================================

References: RFM (recency, frequency, monetary) after Hughes, *Strategic Database Marketing* (1994);
the recent-versus-history trend and the overdue ratio follow the "buy-till-you-die" intuition of
Fader, Hardie & Lee, "Counting your customers the easy way", Marketing Science 24(2), 2005.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from models.feature_schema import OTHER_CATEGORY, FeatureSchema
from models.frame_contract import NS_PER_DAY, as_timestamp, require_columns, to_ns

__all__ = ["build_features"]

_MIN_HISTORY_DAYS = 7.0  # annualising a rate over fewer days than a week only amplifies noise
_NEUTRAL_TREND = 1.0
_LAST_DAYS = 14.0  # r = 1 (no change) when there is no earlier period to compare with


@dataclass(frozen=True)
class _Visits:
    """Transactions collapsed to visits (baskets), with integer member codes."""

    member: np.ndarray  # int64 code into the member index
    days_before: np.ndarray  # float64 days between the visit and as_of (> 0)
    amount: np.ndarray
    quantity: np.ndarray | None


def build_features(
    members: pd.DataFrame,
    transactions: pd.DataFrame,
    *,
    as_of: datetime | date | str | pd.Timestamp,
    schema: FeatureSchema,
    campaigns: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Build the feature matrix of ``members`` at ``as_of``.

    Parameters
    ----------
    members, transactions, campaigns
        Frames of the data contract (see module docstring for the columns used).
    as_of
        Only transactions and campaign events strictly before it are used.
    schema
        Fixes the columns, their public bounds and the category vocabulary.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``member_id`` in the order of ``members``; exactly ``schema.names`` as float32 in
        [0, 1]. Members without a transaction in the window get a row too (recency at its maximum).
    """
    require_columns(members, ("member_id", "joined_at"), frame_name="members")
    require_columns(transactions, ("member_id", "timestamp", "amount"), frame_name="transactions")
    stamp = as_timestamp(as_of)
    index = pd.Index(members["member_id"].astype(str), name="member_id")
    tx = _window(transactions, index, stamp, schema.window_days)
    visits = _visits(tx)
    raw = _behaviour(visits, len(index), schema)
    raw["tenure_days"] = _tenure_days(members["joined_at"], stamp)
    raw["discount_share"] = _discount_share(tx, len(index))
    raw["stores_visited"] = _distinct_per_member(tx, "store_id", len(index))
    raw.update(_campaign_history(campaigns, index, stamp))
    columns = {spec.name: spec.scale(raw[spec.name]) for spec in schema.features}
    columns.update(_category_shares(tx, len(index), schema))
    frame = pd.DataFrame(columns, index=index)[list(schema.names)]
    return frame.astype(np.float32)


def _window(
    transactions: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp, window_days: int
) -> pd.DataFrame:
    """Transactions of known members in [as_of - window, as_of), with ``code`` and ``days_before``."""
    ts = to_ns(transactions["timestamp"])
    end = as_of.as_unit("ns").value
    start = end - window_days * NS_PER_DAY
    code = index.get_indexer(transactions["member_id"].astype(str))
    keep = (ts >= start) & (ts < end) & (code >= 0)
    tx = transactions.loc[keep].copy()
    tx["code"] = code[keep].astype(np.int64)
    tx["days_before"] = (end - ts[keep]) / NS_PER_DAY
    return tx


def _visits(tx: pd.DataFrame) -> _Visits:
    """Collapse lines to visits: one per (member, basket_id), or per (member, timestamp) without it."""
    key_source = tx["basket_id"].astype(str) if "basket_id" in tx.columns else tx["days_before"]
    basket_code, _ = pd.factorize(key_source)
    key = tx["code"].to_numpy() * (int(basket_code.max(initial=0)) + 1) + basket_code
    unique_keys, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    n = len(unique_keys)
    amount = np.bincount(inverse, weights=tx["amount"].to_numpy(dtype=np.float64), minlength=n)
    quantity = None
    if "quantity" in tx.columns:
        qty = pd.to_numeric(tx["quantity"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64)
        quantity = np.bincount(inverse, weights=qty, minlength=n)
    return _Visits(
        member=tx["code"].to_numpy()[first],
        days_before=tx["days_before"].to_numpy()[first],
        amount=amount,
        quantity=quantity,
    )


def _behaviour(v: _Visits, n_members: int, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """Recency, frequency, monetary, basket, trend, overdue, activity and tier (raw units)."""
    n_visits = np.bincount(v.member, minlength=n_members).astype(np.float64)
    spend = np.bincount(v.member, weights=v.amount, minlength=n_members)
    oldest = _group_extreme(v.member, v.days_before, n_members, np.maximum, fill=0.0)
    recency = _group_extreme(v.member, v.days_before, n_members, np.minimum, fill=float(schema.window_days))
    span = np.maximum(oldest, _MIN_HISTORY_DAYS)
    seen = n_visits > 0
    per_visit = np.divide(1.0, n_visits, out=np.zeros(n_members), where=seen)
    spend_per_year = spend / span * 365.0
    mean_gap = span * per_visit
    overdue = np.where(seen, recency / np.maximum(mean_gap, 1e-9), np.inf)
    raw = {
        "recency_days": recency,
        "visits_per_year": n_visits / span * 365.0,
        "spend_per_year": spend_per_year,
        "history_days": oldest,
        "basket_value": spend * per_visit,
        "basket_items": np.zeros(n_members),
        "overdue_ratio": _ratio_to_unit(overdue),
        "tier": _tier(spend_per_year, schema.tier_thresholds),
        # The plain RFM core (Hughes 1994) in raw units: counts and totals, not rates, so a member
        # with one or two purchases gets exact values instead of a rate annualised over a few days.
        "visit_count": n_visits,
        "spend_total": spend,
        "recency_log": recency,
        "history_log": oldest,
    }
    if v.quantity is not None:
        raw["basket_items"] = np.bincount(v.member, weights=v.quantity, minlength=n_members) * per_visit
    raw.update(_trends(v, n_members, oldest, schema.trend_days))
    raw["spend_volatility"] = _ratio_to_unit(_weekly_spend_variation(v, n_members, oldest))
    # The 8-week trend reacts late to a member who has just stopped; the last two weeks against the
    # member's own daily rate catch that (a two-week "very recent" window, as in the RFM literature).
    last = v.days_before <= _LAST_DAYS
    # Net spend floored at 0, as in `_trends`: refunds can make a period's net spend negative.
    last_rate = (
        np.maximum(np.bincount(v.member[last], weights=v.amount[last], minlength=n_members), 0.0) / _LAST_DAYS
    )
    daily_rate = np.maximum(spend, 0.0) / span
    ratio = np.divide(last_rate, daily_rate, out=np.ones(n_members), where=daily_rate > 0)
    raw["spend_last_2w_ratio"] = _ratio_to_unit(ratio)
    return raw


def _weekly_spend_variation(v: _Visits, n_members: int, oldest: np.ndarray) -> np.ndarray:
    """Coefficient of variation of spend per week, over the weeks from the first visit to as_of.

    Weeks without a visit count as zero spend. A member whose weekly spend swings widely falls below
    30 % of their usual rate in some quarter by chance alone, which the churn label counts.
    """
    week = np.floor(v.days_before / 7.0).astype(np.int64)
    stride = int(week.max(initial=0)) + 1
    keys, inverse = np.unique(v.member * stride + week, return_inverse=True)
    weekly = np.bincount(inverse, weights=v.amount)
    member = keys // stride
    total = np.bincount(member, weights=weekly, minlength=n_members)
    squares = np.bincount(member, weights=weekly**2, minlength=n_members)
    n_weeks = np.floor(oldest / 7.0) + 1.0
    mean = total / n_weeks
    variance = np.clip(squares / n_weeks - mean**2, 0.0, None)
    return np.divide(np.sqrt(variance), mean, out=np.zeros(n_members), where=mean > 0)


def _trends(v: _Visits, n_members: int, oldest: np.ndarray, trend_days: int) -> dict[str, np.ndarray]:
    """Last-``trend_days`` rates versus the member's earlier rates, as r / (1 + r) in [0, 1].

    Refunds are negative amounts: a period's NET spend can fall below zero, which is no spend at
    all for a trend (a ratio below 0 has no meaning and r / (1 + r) would leave [0, 1]), so each
    period's net spend is floored at 0.
    """
    recent = v.days_before <= trend_days
    earlier_days = oldest - trend_days
    comparable = earlier_days >= _MIN_HISTORY_DAYS
    out: dict[str, np.ndarray] = {}
    for name, weights in (("spend_trend", v.amount), ("visit_trend", np.ones_like(v.amount))):
        recent_total = np.bincount(v.member[recent], weights=weights[recent], minlength=n_members)
        recent_rate = np.maximum(recent_total, 0.0) / trend_days
        earlier_total = np.maximum(
            np.bincount(v.member[~recent], weights=weights[~recent], minlength=n_members), 0.0
        )
        earlier_rate = np.divide(earlier_total, earlier_days, out=np.zeros(n_members), where=comparable)
        ratio = np.divide(recent_rate, earlier_rate, out=np.full(n_members, np.inf), where=earlier_rate > 0)
        ratio = np.where(comparable, ratio, _NEUTRAL_TREND)
        ratio = np.where(comparable & (earlier_rate == 0) & (recent_rate == 0), _NEUTRAL_TREND, ratio)
        out[name] = _ratio_to_unit(ratio)
    weeks = np.floor((v.days_before[recent] - 1e-12) / 7.0).astype(np.int64)
    n_weeks = max(1, trend_days // 7)
    pairs = np.unique(v.member[recent] * (n_weeks + 1) + np.minimum(weeks, n_weeks - 1))
    out["active_weeks_recent"] = np.bincount(pairs // (n_weeks + 1), minlength=n_members) / n_weeks
    return out


def _tier(spend_per_year: np.ndarray, thresholds: tuple[float, float, float]) -> np.ndarray:
    """0 Ordinary, 1 Silver, 2 Gold, 3 Diamond: a member AT a threshold has reached that tier.

    Both sides are compared in whole cents, so summing many small amounts cannot leave a member a
    rounding error short of a threshold they reached.
    """
    cents = np.round(spend_per_year * 100.0)
    return np.searchsorted(np.round(np.asarray(thresholds) * 100.0), cents, side="right").astype(np.float64)


def _ratio_to_unit(ratio: np.ndarray) -> np.ndarray:
    """Map a non-negative ratio onto [0, 1] with r / (1 + r): 0 -> 0, 1 -> 0.5, inf -> 1."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(ratio), 1.0, ratio / (1.0 + ratio))


def _group_extreme(
    codes: np.ndarray, values: np.ndarray, n: int, ufunc: np.ufunc, *, fill: float
) -> np.ndarray:
    """Per-member maximum or minimum of ``values`` (``fill`` for members without values)."""
    out = np.full(n, -np.inf if ufunc is np.maximum else np.inf)
    ufunc.at(out, codes, values)
    return np.where(np.isfinite(out), out, fill)


def _tenure_days(joined_at: pd.Series, as_of: pd.Timestamp) -> np.ndarray:
    joined = pd.to_datetime(joined_at, errors="coerce")
    days = (as_of - joined).dt.total_seconds().to_numpy(dtype=np.float64) / 86_400.0
    return np.clip(np.nan_to_num(days, nan=0.0), 0.0, None)


def _discount_share(tx: pd.DataFrame, n_members: int) -> np.ndarray:
    """Share of the undiscounted price paid by discounts; the sign convention of the source is ignored."""
    if "discount" not in tx.columns:
        return np.zeros(n_members)
    codes = tx["code"].to_numpy()
    discount = np.abs(pd.to_numeric(tx["discount"], errors="coerce").fillna(0.0).to_numpy(dtype=np.float64))
    paid = np.bincount(codes, weights=tx["amount"].to_numpy(dtype=np.float64), minlength=n_members)
    saved = np.bincount(codes, weights=discount, minlength=n_members)
    total = paid + saved
    return np.divide(saved, total, out=np.zeros(n_members), where=total > 0)


def _distinct_per_member(tx: pd.DataFrame, column: str, n_members: int) -> np.ndarray:
    """Distinct non-empty values of an optional column per member; a missing or blank value (an
    online order without a store, say) names no store and is not counted."""
    if column not in tx.columns:
        return np.zeros(n_members)
    raw_code, uniques = pd.factorize(tx[column])  # missing values get -1
    # Values compare as trimmed text (1 and "1" are one store); the few distinct values, not every
    # row, are converted.
    text = [str(u).strip() for u in uniques]
    merged, _ = pd.factorize(np.asarray(text, dtype=object))
    known = raw_code >= 0
    blank = np.asarray([not t for t in text], dtype=bool)
    known[known] = ~blank[raw_code[known]]
    codes = tx["code"].to_numpy()[known]
    value_code = merged[raw_code[known]] if len(text) else np.zeros(0, dtype=np.int64)
    width = int(value_code.max(initial=0)) + 1
    pairs = np.unique(codes * width + value_code)
    return np.bincount(pairs // width, minlength=n_members).astype(np.float64)


def _campaign_history(
    campaigns: pd.DataFrame | None, index: pd.Index, as_of: pd.Timestamp
) -> dict[str, np.ndarray]:
    """Campaigns redeemed before ``as_of`` and the share of those received that were (coupon sensitivity).

    The count is the frequency of the propensity task's own target event, as the visit count is
    the churn task's (an RFM of the target: Hughes 1994); the share alone cannot tell a member who
    redeemed 1 of 1 campaigns from one who redeemed 6 of 6.
    """
    n = len(index)
    if campaigns is None or len(campaigns) == 0:
        return {"coupons_redeemed": np.zeros(n), "coupon_redemption_rate": np.zeros(n)}
    require_columns(campaigns, ("member_id", "campaign_id", "start_date"), frame_name="campaigns")
    start = pd.to_datetime(campaigns["start_date"])
    code = index.get_indexer(campaigns["member_id"].astype(str))
    keep = (start < as_of).to_numpy() & (code >= 0)
    received = np.bincount(code[keep], minlength=n).astype(np.float64)
    if "redeemed_at" in campaigns.columns:
        redeemed_at = pd.to_datetime(campaigns["redeemed_at"], errors="coerce")
        hit = keep & (redeemed_at < as_of).to_numpy()
        redeemed = np.bincount(code[hit], minlength=n).astype(np.float64)
    else:
        redeemed = np.zeros(n)
    rate = np.divide(redeemed, received, out=np.zeros(n), where=received > 0)
    return {"coupons_redeemed": redeemed, "coupon_redemption_rate": rate}


def _category_shares(tx: pd.DataFrame, n_members: int, schema: FeatureSchema) -> dict[str, np.ndarray]:
    """Share of each member's spend per vocabulary category; anything unseen counts as "other"."""
    names = [f"category_share_{c}" for c in schema.all_categories]
    if not names:
        return {}
    if "category" not in tx.columns:
        return {name: np.zeros(n_members) for name in names}
    vocabulary = pd.Index(schema.all_categories)
    normalised = tx["category"].astype(str).str.strip().str.casefold()
    slot = vocabulary.get_indexer(normalised)
    slot = np.where(slot < 0, vocabulary.get_loc(OTHER_CATEGORY), slot)
    k = len(vocabulary)
    amount = tx["amount"].to_numpy(dtype=np.float64)
    counts = np.bincount(tx["code"].to_numpy() * k + slot, weights=amount, minlength=n_members * k)
    spend = counts.astype(np.float64).reshape(n_members, k)  # bincount of nothing is int64
    total = spend.sum(axis=1, keepdims=True)
    shares = np.divide(spend, total, out=np.zeros_like(spend), where=total > 0)
    return {name: shares[:, i] for i, name in enumerate(names)}
