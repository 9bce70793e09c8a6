"""A time limit as laws and programme terms write it: "30 days", "one month", "15 working days".

Calendar months follow Regulation (EEC, Euratom) No 1182/71 Art. 3(2)(c), which fixes how EU law
counts periods: a period of months ends on the same day of the last month, or on that month's last
day when it is shorter (31 January + one month = 28/29 February). Working days are Monday to
Friday minus the holidays given; the day of receipt does not count, and the limit ends at the same
time of day as the receipt (a request received on Friday 10:00 with one working day is due on
Monday 10:00).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

__all__ = ["LimitUnit", "TimeLimit"]

_SATURDAY = 5
_TEXT = re.compile(
    r"^\s*(?P<amount>\d{1,4}|one)\s+(?P<unit>working\s+days?|business\s+days?|calendar\s+days?|days?|months?)\s*$",
    re.IGNORECASE,
)


class LimitUnit(StrEnum):
    DAYS = "days"
    WORKING_DAYS = "working_days"
    MONTHS = "months"


@dataclass(frozen=True)
class TimeLimit:
    """``amount`` units after a moment; ``due(moment)`` is when the limit runs out."""

    amount: int
    unit: LimitUnit

    def __post_init__(self) -> None:
        if not 1 <= self.amount <= 3660:
            raise ValueError(f"a time limit must be 1 to 3660 {self.unit.value}, got {self.amount}")

    @classmethod
    def parse(cls, text: str) -> TimeLimit:
        """Read "30 days", "1 month", "15 working days" (also "business days", "calendar days")."""
        match = _TEXT.match(text)
        if match is None:
            raise ValueError(
                f"not a time limit: {text!r}; write e.g. '30 days', '1 month' or '15 working days'"
            )
        amount = 1 if match["amount"].lower() == "one" else int(match["amount"])
        word = match["unit"].lower()
        if word.startswith(("working", "business")):
            return cls(amount, LimitUnit.WORKING_DAYS)
        return cls(amount, LimitUnit.MONTHS if word.startswith("month") else LimitUnit.DAYS)

    def due(self, moment: datetime, *, holidays: Collection[date] = ()) -> datetime:
        """The moment the limit runs out for something received at ``moment``."""
        if self.unit is LimitUnit.DAYS:
            return moment + timedelta(days=self.amount)
        if self.unit is LimitUnit.MONTHS:
            return _add_months(moment, self.amount)
        return _add_working_days(moment, self.amount, holidays)

    def __str__(self) -> str:
        noun = {LimitUnit.DAYS: "day", LimitUnit.WORKING_DAYS: "working day", LimitUnit.MONTHS: "month"}
        return f"{self.amount} {noun[self.unit]}{'s' if self.amount != 1 else ''}"


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _add_working_days(moment: datetime, days: int, holidays: Collection[date]) -> datetime:
    current, counted = moment, 0
    while counted < days:
        current += timedelta(days=1)
        if current.weekday() < _SATURDAY and current.date() not in holidays:
            counted += 1
    return current
