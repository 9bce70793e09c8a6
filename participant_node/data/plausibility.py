"""Rows that are usable but implausible: reported as warnings with counts, never dropped.

The rules assume no currency, because partners report amounts in their own (CNY, JPY, EUR…):

* **Dated in the future**: an event column (``ColumnSpec.past``: a purchase, a join, a grant, a
  redemption) later than the moment of validation plus one day. The day of slack covers exports
  in local time from zones up to UTC+14 read as UTC.
* **Outsized amount**: ``|amount|`` more than 10,000 times the file's median non-zero
  ``|amount|`` (a basket ten thousand times the typical one, whatever the unit), once the file
  has at least 20 non-zero amounts; and, at any size, ``|amount|`` of 2^53 / 1000 (about
  9.0e12) or more, beyond which a float64 no longer holds an amount exactly to the thousandth
  of its unit (ISO 4217 minor units have at most three decimals).
* **Refunds beyond purchases**: a negative amount is a refund or reversal, which is normal; the
  negative rows of a member whose refunds in the file add up to more than their purchases are
  not explained by refunds and are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from participant_node.data.contract import FileKind, FileSpec
from participant_node.data.validation_report import Problem

__all__ = ["FUTURE_SLACK", "OUTSIZED_FACTOR", "PlausibilityCheck"]

FUTURE_SLACK = timedelta(days=1)
OUTSIZED_FACTOR = 10_000.0
_MIN_AMOUNTS_FOR_MEDIAN = 20
_LOG_EXACT_LIMIT = math.log10(2.0**53 / 1000.0)
_EXAMPLES = 5
# Magnitudes are counted in bins of 1/100 of a decade (a 2.3 % step), from 1e-12 to 1e330, so the
# median and the count above the ceiling need a fixed 270 KB however long the file is.
_BIN = 0.01
_LOW = -12.0
_BINS = int((330.0 - _LOW) / _BIN)
_FACTOR_BINS = round(math.log10(OUTSIZED_FACTOR) / _BIN)
_EXACT_BIN = int((_LOG_EXACT_LIMIT - _LOW) / _BIN)
_MARGIN_BINS = 100  # rows within a decade of the ceiling so far are kept as possible examples
_MAX_CANDIDATES = 10_000


@dataclass
class _Count:
    count: int = 0
    rows: list[int] = field(default_factory=list)

    def add(self, indices: np.ndarray) -> None:
        self.count += len(indices)
        self.rows += [int(i) for i in indices[: _EXAMPLES - len(self.rows)]]


@dataclass
class _Magnitudes:
    """A histogram of log10 |amount| and the rows that may be outsized once the median is known."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, dtype=np.int64))
    candidates: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    kept: int = 0

    def add(self, amount: np.ndarray, start: int) -> None:
        magnitude = np.abs(amount)
        nonzero = np.flatnonzero(np.isfinite(magnitude) & (magnitude > 0))
        bins = np.clip(((np.log10(magnitude[nonzero]) - _LOW) / _BIN).astype(np.int64), 0, _BINS - 1)
        self.counts += np.bincount(bins, minlength=_BINS)
        over = bins > self.threshold() - _MARGIN_BINS
        if over.any() and self.kept < _MAX_CANDIDATES:
            rows, found = nonzero[over][: _MAX_CANDIDATES - self.kept] + start, bins[over]
            self.candidates.append((rows, found[: len(rows)]))
            self.kept += len(rows)

    def threshold(self) -> int:
        """The last bin that is not outsized: the median's bin plus four decades, at most the exact limit."""
        total = int(self.counts.sum())
        if total < _MIN_AMOUNTS_FOR_MEDIAN:
            return _EXACT_BIN
        median = int(np.searchsorted(np.cumsum(self.counts), (total + 1) // 2))
        return min(median + _FACTOR_BINS, _EXACT_BIN)

    def outsized(self) -> tuple[_Count, float]:
        threshold = self.threshold()
        count = _Count(count=int(self.counts[threshold + 1 :].sum()))
        if self.candidates:
            rows, bins = (np.concatenate(parts) for parts in zip(*self.candidates, strict=True))
            count.rows = [int(r) for r in np.sort(rows[bins > threshold])[:_EXAMPLES]]
        return count, 10.0 ** (_LOW + (threshold + 1) * _BIN)


@dataclass
class PlausibilityCheck:
    """Warnings of one file, observed chunk by chunk.

    Memory: a fixed histogram of amounts, 8 bytes per member (their purchases) and 16 per refund
    row. Members are numbered (``codes``) by their place among the ``members``
    usable rows of the members file; -1 for a row of no known member.
    """

    spec: FileSpec
    now: datetime
    members: int = 0
    future: dict[str, _Count] = field(default_factory=dict)
    _magnitudes: _Magnitudes = field(default_factory=_Magnitudes)
    _purchases: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _refunds: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)

    def observe(self, frame: pd.DataFrame, usable: np.ndarray, start: int, codes: np.ndarray | None) -> None:
        """Take in one typed chunk whose first row is row ``start`` (0-based) of the file."""
        limit = np.datetime64(self.now + FUTURE_SLACK, "ns")
        for column in (c for c in self.spec.columns if c.past):
            later = (frame[column.name].to_numpy(dtype="M8[ns]") > limit) & usable
            if later.any():
                self.future.setdefault(column.name, _Count()).add(np.flatnonzero(later) + start)
        if self.spec.kind is FileKind.TRANSACTIONS:
            self._observe_amounts(frame, usable, start, codes)

    def _observe_amounts(
        self, frame: pd.DataFrame, usable: np.ndarray, start: int, codes: np.ndarray | None
    ) -> None:
        amount = np.where(usable, frame["amount"].to_numpy(dtype="float64", na_value=np.nan), np.nan)
        self._magnitudes.add(amount, start)
        if codes is None:
            return
        known = codes >= 0
        positive = (amount > 0) & known
        bought = np.bincount(codes[positive], weights=amount[positive], minlength=self.members)
        self._purchases = bought if not len(self._purchases) else self._purchases + bought
        negative = (amount < 0) & known
        if negative.any():
            rows = np.flatnonzero(negative)
            self._refunds.append((codes[rows], amount[rows], rows + start))

    def warnings(self, *, file: str, row_label: str, first_row: int) -> list[Problem]:
        """The warnings found, with row numbers as a person counts them in the file."""

        def problem(column: str, reason: str, count: _Count) -> Problem:
            rows = tuple(r + first_row for r in count.rows)
            return Problem(file, column, reason, count.count, rows, row_label)

        found = [
            problem(name, f"dated in the future (after {self.now:%Y-%m-%d %H:%M} UTC + 1 day)", count)
            for name, count in self.future.items()
        ]
        if self.spec.kind is FileKind.TRANSACTIONS:
            outsized, ceiling = self._magnitudes.outsized()
            if outsized.count:
                found.append(
                    problem("amount", f"implausibly large amount (|amount| >= {ceiling:.3g})", outsized)
                )
            beyond, members = self._refunds_beyond_purchases()
            if beyond.count:
                reason = f"refunds exceed the member's purchases in this file ({members} member(s))"
                found.append(problem("amount", reason, beyond))
        return found

    def _refunds_beyond_purchases(self) -> tuple[_Count, int]:
        count = _Count()
        if not self._refunds:
            return count, 0
        codes, amounts, rows = (np.concatenate(parts) for parts in zip(*self._refunds, strict=True))
        refunded = np.bincount(codes, weights=-amounts, minlength=len(self._purchases))
        purchases = self._purchases if len(self._purchases) else np.zeros_like(refunded)
        beyond = refunded > purchases + 1e-9
        count.add(np.sort(rows[beyond[codes]]))
        return count, int(beyond.sum())
