"""`build_features` on hand-built frames with answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import build_features, default_feature_schema
from models.feature_schema import FeatureSchema, FeatureSpec, Transform, plain_rfm_schema
from models.frame_contract import MissingColumnError

AS_OF = pd.Timestamp("2017-09-01")
SCHEMA = default_feature_schema(category_mix=True)


def _raw(schema: FeatureSchema, name: str, scaled: float) -> float:
    """Invert a feature's scaling (test-side) to read the raw value back."""
    spec = schema.spec(name)
    if spec.transform is Transform.LOG1P:
        return float(np.expm1(scaled * (np.log1p(spec.high) - np.log1p(spec.low)) + np.log1p(spec.low)))
    return scaled * (spec.high - spec.low) + spec.low


def _members(*ids: str) -> pd.DataFrame:
    return pd.DataFrame({"member_id": list(ids), "joined_at": pd.to_datetime(["2016-09-01"] * len(ids))})


def _tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "member_id": [r[0] for r in rows],
            "timestamp": pd.to_datetime([r[1] for r in rows], format="ISO8601"),
            "amount": [r[2] for r in rows],
        }
    )


def test_rfm_known_answers_with_required_columns_only() -> None:
    # m1: visits 100 and 10 days before as_of, $60 + $40; history 100 days.
    tx = _tx([("m1", "2017-05-24", 60.0), ("m1", "2017-08-22", 40.0), ("m1", "2017-09-01", 999.0)])
    X = build_features(_members("m1", "m2"), tx, as_of=AS_OF, schema=SCHEMA)
    assert list(X.columns) == list(SCHEMA.names)
    assert X.dtypes.unique().tolist() == [np.float32]
    m1 = X.loc["m1"]
    assert _raw(SCHEMA, "recency_log", m1["recency_log"]) == pytest.approx(10.0, rel=1e-4)
    assert _raw(SCHEMA, "history_log", m1["history_log"]) == pytest.approx(100.0, rel=1e-4)
    assert _raw(SCHEMA, "visit_count", m1["visit_count"]) == pytest.approx(2.0, rel=1e-4)
    assert _raw(SCHEMA, "spend_total", m1["spend_total"]) == pytest.approx(100.0, rel=1e-4)
    assert _raw(SCHEMA, "tenure_days", m1["tenure_days"]) == pytest.approx(365.0, rel=1e-4)
    # Optional columns absent: their features are exactly 0.
    for name in ("basket_items", "discount_share", "stores_visited", "coupons_redeemed"):
        assert m1[name] == 0.0
    assert (X.filter(like="category_share_") == 0).all().all()
    # m2 never bought: recency at its bound, nothing else.
    assert X.loc["m2", "recency_log"] == 1.0
    assert X.loc["m2", "visit_count"] == 0.0


def test_transactions_on_or_after_as_of_are_ignored() -> None:
    before = build_features(_members("m1"), _tx([("m1", "2017-08-01", 10.0)]), as_of=AS_OF, schema=SCHEMA)
    after = build_features(
        _members("m1"),
        _tx([("m1", "2017-08-01", 10.0), ("m1", "2017-09-01 00:00:00", 500.0), ("m1", "2017-12-01", 5.0)]),
        as_of=AS_OF,
        schema=SCHEMA,
    )
    pd.testing.assert_frame_equal(before, after)


@pytest.mark.parametrize("rate", [1.0, 6.76, 110.0, 16_000.0])
def test_a_change_of_currency_only_shifts_the_money_columns(rate: float) -> None:
    # Log columns with bounds no retailer reaches: amounts times a rate move spend by log(rate) (log1p
    # is log up to 1 / amount, a few per cent of a cent for these amounts) and
    # leave every other column as it was, so the pooled standardisation removes the currency.
    tx = _tx([("m1", "2017-05-24", 60.0), ("m1", "2017-08-22", 40.0), ("m2", "2017-08-30", 300.0)])
    usd = build_features(_members("m1", "m2"), tx, as_of=AS_OF, schema=SCHEMA)
    other = build_features(
        _members("m1", "m2"), tx.assign(amount=tx["amount"] * rate), as_of=AS_OF, schema=SCHEMA
    )
    money = ["spend_total", "basket_value"]
    for name in money:
        spec = SCHEMA.spec(name)
        shift = other[name] - usd[name]
        span = np.log1p(spec.high) - np.log1p(spec.low)
        assert shift.to_numpy() == pytest.approx(np.log(rate) / span, abs=2e-3), name
    pd.testing.assert_frame_equal(usd.drop(columns=money), other.drop(columns=money))


def test_one_purchase_member_gets_exact_rfm_values() -> None:
    X = build_features(_members("m1"), _tx([("m1", "2017-08-22", 40.0)]), as_of=AS_OF, schema=SCHEMA)
    assert _raw(SCHEMA, "visit_count", X.loc["m1", "visit_count"]) == pytest.approx(1.0, rel=1e-4)
    assert _raw(SCHEMA, "recency_log", X.loc["m1", "recency_log"]) == pytest.approx(10.0, rel=1e-4)
    assert _raw(SCHEMA, "history_log", X.loc["m1", "history_log"]) == pytest.approx(10.0, rel=1e-4)


def test_history_beyond_one_year_is_kept() -> None:
    tx = _tx([("m1", "2014-09-01", 10.0), ("m1", "2017-08-01", 10.0)])
    X = build_features(_members("m1"), tx, as_of=AS_OF, schema=SCHEMA)
    days = (AS_OF - pd.Timestamp("2014-09-01")).days
    assert _raw(SCHEMA, "history_log", X.loc["m1", "history_log"]) == pytest.approx(days, rel=1e-4)


def test_plain_rfm_schema_has_the_four_classic_columns() -> None:
    assert plain_rfm_schema().names == ("recency_days", "history_days", "visit_count", "spend_total")


def test_category_mix_sends_unseen_categories_to_other() -> None:
    tx = _tx([("m1", "2017-08-01", 30.0), ("m1", "2017-08-02", 10.0), ("m1", "2017-08-03", 60.0)])
    tx["category"] = ["  GROCERY ", "Produce", "space tourism"]
    X = build_features(_members("m1"), tx, as_of=AS_OF, schema=SCHEMA)
    assert X.loc["m1", "category_share_grocery"] == pytest.approx(0.3)
    assert X.loc["m1", "category_share_produce"] == pytest.approx(0.1)
    assert X.loc["m1", "category_share_other"] == pytest.approx(0.6)
    assert X.filter(like="category_share_").loc["m1"].sum() == pytest.approx(1.0)


def test_optional_columns_baskets_stores_discounts_and_coupons() -> None:
    tx = _tx([("m1", "2017-08-01 10:00", 8.0), ("m1", "2017-08-01 10:01", 12.0), ("m1", "2017-08-10", 20.0)])
    tx["basket_id"] = ["b1", "b1", "b2"]
    tx["store_id"] = ["s1", "s1", "s2"]
    tx["quantity"] = [1.0, 3.0, 2.0]
    tx["discount"] = [-2.0, -3.0, -5.0]  # sign convention of the source does not matter
    campaigns = pd.DataFrame(
        {
            "member_id": ["m1", "m1", "m1"],
            "campaign_id": ["c1", "c2", "c3"],
            "start_date": pd.to_datetime(["2017-03-01", "2017-05-01", "2017-09-01"]),
            "end_date": pd.to_datetime(["2017-04-01", "2017-06-01", "2017-10-01"]),
            "redeemed_at": pd.to_datetime(["2017-03-05", None, "2017-09-02"]),
        }
    )
    X = build_features(_members("m1"), tx, as_of=AS_OF, schema=SCHEMA, campaigns=campaigns)
    m1 = X.loc["m1"]
    assert _raw(SCHEMA, "visit_count", m1["visit_count"]) == pytest.approx(2.0, rel=1e-4)  # 2 baskets
    assert _raw(SCHEMA, "basket_items", m1["basket_items"]) == pytest.approx(3.0, rel=1e-4)
    assert _raw(SCHEMA, "stores_visited", m1["stores_visited"]) == pytest.approx(2.0, rel=1e-4)
    assert m1["discount_share"] == pytest.approx(10 / 50)
    # c3 starts on as_of (not history): of c1 and c2, c1 was redeemed.
    assert _raw(SCHEMA, "coupons_redeemed", m1["coupons_redeemed"]) == pytest.approx(1.0, rel=1e-4)
    assert m1["coupon_redemption_rate"] == pytest.approx(0.5)


def test_trend_compares_last_eight_weeks_with_history() -> None:
    # $10 a week for 20 weeks before the last 8, then $30 a week: r = 3 => 3/4.
    weeks = pd.date_range(end=AS_OF - pd.Timedelta(days=3), periods=28, freq="7D")
    tx = pd.DataFrame({"member_id": "m1", "timestamp": weeks, "amount": [10.0] * 20 + [30.0] * 8})
    X = build_features(_members("m1"), tx, as_of=AS_OF, schema=SCHEMA)
    # earlier period = history (27 weeks + 3 days) minus 56 days
    history = (AS_OF - weeks[0]).days
    earlier_rate = 200.0 / (history - 56)
    ratio = (240.0 / 56) / earlier_rate
    assert X.loc["m1", "spend_trend"] == pytest.approx(ratio / (1 + ratio), rel=1e-5)
    assert X.loc["m1", "active_weeks_recent"] == pytest.approx(1.0)
    # Last 14 days: the visits 3 and 10 days before as_of, $60 over 14 days, against the member's
    # daily rate over the whole history.
    last_ratio = (60.0 / 14) / (440.0 / history)
    assert X.loc["m1", "spend_last_2w_ratio"] == pytest.approx(last_ratio / (1 + last_ratio), rel=1e-5)


def test_weekly_spend_volatility() -> None:
    # $30 in weeks 0 and 2 before as_of and nothing in weeks 1 and 3 (history = 4 weeks):
    # weekly mean 15, standard deviation 15, c = 1 => 1/2. A steady $10 every week => 0.
    swing = _tx([("m1", "2017-08-29", 30.0), ("m1", "2017-08-15", 30.0), ("m1", "2017-08-05", 0.0)])
    weeks = pd.date_range(end="2017-08-29", periods=6, freq="7D")
    steady = _tx([("m2", d.strftime("%Y-%m-%d"), 10.0) for d in weeks])
    X = build_features(_members("m1", "m2"), pd.concat([swing, steady]), as_of=AS_OF, schema=SCHEMA)
    assert X.loc["m1", "spend_volatility"] == pytest.approx(0.5, rel=1e-5)
    assert X.loc["m2", "spend_volatility"] == pytest.approx(0.0, abs=1e-6)


def test_public_bounds_keep_extreme_values_in_unit_interval() -> None:
    tx = _tx([("m1", "2017-08-31", 1e9), ("m2", "1990-01-01", 5.0)])
    tx["quantity"] = [1e6, 1.0]
    tx["discount"] = [1e12, 0.0]
    members = _members("m1", "m2", "m3").assign(joined_at=pd.to_datetime(["1900-01-01", "2030-01-01", None]))
    X = build_features(members, tx, as_of=AS_OF, schema=SCHEMA)
    values = X.to_numpy()
    assert np.isfinite(values).all()
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_missing_required_column_names_frame_and_column() -> None:
    with pytest.raises(MissingColumnError, match=r"transactions: required column 'amount'"):
        build_features(_members("m1"), _tx([]).drop(columns="amount"), as_of=AS_OF, schema=SCHEMA)


def test_schema_validates_and_fingerprint_is_stable() -> None:
    assert default_feature_schema(category_mix=True).fingerprint == SCHEMA.fingerprint
    # v6: one representation per quantity -- days since the last and first purchase only as logs;
    # v7: no rate annualised over the member's own history (it divides by days for a newcomer).
    assert SCHEMA.version == "loyalfed-features-v7" and len(SCHEMA.features) == 17
    assert not {"recency_days", "history_days", "visits_per_year", "spend_per_year"} & set(SCHEMA.names)
    assert len(SCHEMA.names) == SCHEMA.n_features
    with pytest.raises(ValueError, match="high must exceed low"):
        FeatureSpec(name="x", low=1.0, high=1.0)
    changed = SCHEMA.model_copy(update={"window_days": 300})
    assert changed.fingerprint != SCHEMA.fingerprint


def test_one_million_transactions_build_one_row_per_member() -> None:
    # Its speed (a few seconds for 10^6 rows) is a benchmark's to measure, not a timed unit test's.
    rng = np.random.default_rng(0)
    n, members = 1_000_000, 20_000
    ids = np.array([f"m{i}" for i in range(members)], dtype=object)
    tx = pd.DataFrame(
        {
            "member_id": ids[rng.integers(0, members, n)],
            "timestamp": AS_OF - pd.to_timedelta(rng.integers(1, 300 * 86_400, n), unit="s"),
            "amount": rng.gamma(2.0, 5.0, n),
            "basket_id": rng.integers(0, 200_000, n).astype(str),
            "category": rng.choice(["grocery", "produce", "x"], n),
        }
    )
    X = build_features(_members(*ids), tx, as_of=AS_OF, schema=SCHEMA)
    assert X.shape == (members, SCHEMA.n_features)
    assert np.isfinite(X.to_numpy(dtype=float)).all()


def test_no_transactions_at_all_gives_rows_of_valid_features() -> None:
    empty = _tx([]).assign(basket_id="", category="", store_id="", quantity=0.0, discount=0.0).iloc[:0]
    X = build_features(_members("m1", "m2"), empty, as_of=AS_OF, schema=SCHEMA)
    assert X.shape == (2, SCHEMA.n_features)
    assert (X["recency_log"] == 1.0).all() and (X.filter(like="category_share_") == 0).all().all()


def test_without_category_mix_there_are_no_share_columns() -> None:
    compact = default_feature_schema()
    assert compact.all_categories == () and compact.fingerprint != SCHEMA.fingerprint
    assert compact.n_features == len(compact.features) == SCHEMA.n_features - len(SCHEMA.all_categories)
    tx = _tx([("m1", "2017-03-01", 10.0)]).assign(category="GROCERY")
    X = build_features(_members("m1"), tx, as_of=AS_OF, schema=compact)
    assert list(X.columns) == list(compact.names) and not X.filter(like="category_share_").columns.size


def test_refunds_never_push_trends_out_of_the_unit_interval() -> None:
    # m1's net spend in the last eight weeks (and two weeks) is negative: a refund of an earlier
    # purchase. Its trend is "spend fell to nothing" (0), never a negative or inflated ratio.
    tx = _tx(
        [
            ("m1", "2017-01-01", 50.0),
            ("m1", "2017-02-01", 50.0),
            ("m1", "2017-08-01", -80.0),
            ("m1", "2017-08-25", -5.0),
        ]
    )
    X = build_features(_members("m1", "m2"), tx, as_of=AS_OF, schema=SCHEMA)
    assert ((X.to_numpy() >= 0) & (X.to_numpy() <= 1)).all()
    assert X.loc["m1", "spend_trend"] == 0.0 and X.loc["m1", "spend_last_2w_ratio"] == 0.0


@pytest.mark.parametrize("store", [[None, None], ["", " "], [np.nan, np.nan], ["s1", None]])
def test_blank_or_missing_store_ids_name_no_store(store: list[object]) -> None:
    tx = _tx([("m1", "2017-05-01", 10.0), ("m1", "2017-08-01", 30.0)]).assign(store_id=store)
    X = build_features(_members("m1", "m2"), tx, as_of=AS_OF, schema=SCHEMA)
    expected = sum(1 for s in store if isinstance(s, str) and s.strip())
    assert _raw(SCHEMA, "stores_visited", X.loc["m1", "stores_visited"]) == pytest.approx(expected, abs=1e-4)
