"""Retention purge (default 3 years) and the fideslang-derived taxonomy."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from policies.purpose import Purpose
from policies.retention import apply_retention, retention_cutoff
from policies.taxonomy import COLUMN_CATEGORIES, DATA_USES, category_of, data_use, is_sensitive


def test_retention_purges_rows_older_than_three_years_by_default() -> None:
    frame = pd.DataFrame(
        {"timestamp": pd.to_datetime(["2020-01-01", "2021-06-02", "2024-01-01", None]).astype("M8[us]")}
    )
    result = apply_retention(frame, "timestamp", now=datetime(2024, 6, 1))
    assert result.purged == 1
    assert len(result.kept) == 3
    assert result.cutoff == datetime(2021, 6, 2)


def test_retention_days_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        retention_cutoff(datetime(2024, 1, 1), 0)


def test_every_purpose_is_a_data_use_under_a_fideslang_parent() -> None:
    for purpose in Purpose:
        use = data_use(purpose.value)
        assert use.parent in DATA_USES
    assert data_use(Purpose.CROSS_BRAND_MATCHING.value).shares_with_other_handler


def test_every_contract_column_has_a_category() -> None:
    for table, columns in COLUMN_CATEGORIES.items():
        for column in columns:
            assert category_of(table, column).startswith("user.")
    with pytest.raises(ValueError, match="no data category"):
        category_of("members", "favourite_colour")


def test_sensitive_categories_include_demographics_and_health() -> None:
    assert is_sensitive(category_of("members", "gender"))
    assert is_sensitive("user.health_and_medical.genetic")
    assert not is_sensitive(category_of("transactions", "amount"))
