"""Time limits as laws and programme terms write them: days, months, working days."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from policies.errors import PolicyError
from policies.jurisdiction import Jurisdiction
from policies.retention import ErasureRules, load_erasure_rules
from policies.time_limit import LimitUnit, TimeLimit


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("30 days", TimeLimit(30, LimitUnit.DAYS)),
        ("one month", TimeLimit(1, LimitUnit.MONTHS)),
        ("15 Working Days", TimeLimit(15, LimitUnit.WORKING_DAYS)),
        ("7 business days", TimeLimit(7, LimitUnit.WORKING_DAYS)),
        ("10 calendar days", TimeLimit(10, LimitUnit.DAYS)),
    ],
)
def test_parse(text: str, limit: TimeLimit) -> None:
    assert TimeLimit.parse(text) == limit


@pytest.mark.parametrize("text", ["", "soon", "0 days", "-3 days", "3 weeks", "30"])
def test_parse_refuses_what_is_not_a_limit(text: str) -> None:
    with pytest.raises(ValueError):
        TimeLimit.parse(text)


@pytest.mark.parametrize(
    ("limit", "received", "due"),
    [
        # Regulation 1182/71 Art. 3(2)(c): a month after 31 January is the last day of February.
        ("1 month", datetime(2024, 1, 31, 9), datetime(2024, 2, 29, 9)),
        ("1 month", datetime(2024, 12, 15), datetime(2025, 1, 15)),
        ("30 days", datetime(2024, 3, 10), datetime(2024, 4, 9)),
        # Friday 10:00 + 1 working day is Monday 10:00; a Saturday receipt counts from Monday.
        ("1 working day", datetime(2024, 5, 31, 10), datetime(2024, 6, 3, 10)),
        ("1 working day", datetime(2024, 6, 1, 12), datetime(2024, 6, 3, 12)),
        ("15 working days", datetime(2024, 6, 3), datetime(2024, 6, 24)),
    ],
)
def test_due(limit: str, received: datetime, due: datetime) -> None:
    assert TimeLimit.parse(limit).due(received) == due


def test_holidays_are_not_working_days() -> None:
    limit = TimeLimit.parse("2 working days")
    assert limit.due(datetime(2024, 9, 30), holidays={date(2024, 10, 1)}) == datetime(2024, 10, 3)


def test_rules_from_toml_tighten_per_jurisdiction_and_programme(tmp_path: Path) -> None:
    path = tmp_path / "erasure_rules.toml"
    path.write_text(
        'programme_promise = "7 working days"\nholidays = [2024-10-01]\n\n'
        '[jurisdiction_limits]\nCN = "3 working days"\n'
    )
    rules = load_erasure_rules(path)
    deadline = rules.deadline(datetime(2024, 9, 30), frozenset({Jurisdiction.CN}))
    assert (deadline.due, deadline.rule) == (datetime(2024, 10, 4), "jurisdiction.cn")
    assert (deadline.legal_due, deadline.legal_rule) == (datetime(2024, 10, 30), "pipl.art47.gbt35273")
    eu = rules.deadline(datetime(2024, 9, 30), frozenset({Jurisdiction.EU}))
    assert (eu.due, eu.rule) == (datetime(2024, 10, 10), "programme.promise")


def test_bad_rules_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "erasure_rules.toml"
    path.write_text('programme_promise = "whenever"\n')
    with pytest.raises(PolicyError, match=r"erasure_rules\.toml: programme_promise"):
        load_erasure_rules(path)
    path.write_text('[jurisdiction_limits]\nUS = "30 days"\n')
    with pytest.raises(PolicyError, match=r"jurisdiction_limits\.US"):
        load_erasure_rules(path)


def test_no_rules_is_the_law() -> None:
    deadline = ErasureRules().deadline(datetime(2024, 1, 31), frozenset(Jurisdiction))
    assert (deadline.due, deadline.rule) == (datetime(2024, 2, 29), "gdpr.art12.3")
