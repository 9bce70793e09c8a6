"""The data contract of DESIGN.md: which files a partner drops into its node and their columns.

Only the required columns may be assumed; optional columns that a file lacks are added as
empty columns when the file is loaded, so code downstream can rely on every name below.

Timestamps must fall in [1900-01-01, 2200-01-01): years such as 0001 or 9999 are export
placeholders for "unknown", not moments, and the frames hold nanosecond timestamps (pandas'
datetime64[ns] ends in 2262). Amounts are decimals in the partner's own currency; a negative
amount is a refund or reversal. What is usable but implausible (future dates, outsized amounts,
refunds beyond purchases) is reported as a warning: see `participant_node.data.plausibility`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "CONTRACT",
    "IDENTIFIER_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "TIMESTAMP_MAX",
    "TIMESTAMP_MIN",
    "ColumnSpec",
    "ColumnType",
    "FileKind",
    "FileSpec",
]


class FileKind(StrEnum):
    """The files of a partner folder (file stem, without suffix)."""

    MEMBERS = "members"
    TRANSACTIONS = "transactions"
    CONSENTS = "consents"
    CAMPAIGNS = "campaigns"


class ColumnType(StrEnum):
    """How a column's text is parsed and which pandas dtype it is loaded as."""

    STRING = "string"  # pandas "str"
    TIMESTAMP = "timestamp"  # ISO 8601, loaded as tz-naive UTC datetime64[ns]
    AMOUNT = "amount"  # finite decimal in the partner's currency (negative: a refund), float64
    DECIMAL = "decimal"  # any finite decimal, float64
    INTEGER = "integer"  # nullable Int64
    BOOLEAN = "boolean"  # true/false/1/0/yes/no, nullable boolean
    PURPOSE = "purpose"  # a `policies.purpose.Purpose` value, loaded as "str"


TIMESTAMP_MIN = datetime(1900, 1, 1)
TIMESTAMP_MAX = datetime(2200, 1, 1)  # exclusive


@dataclass(frozen=True)
class ColumnSpec:
    """One column. ``past``: an event that has happened, so a date in the future is suspicious."""

    name: str
    type: ColumnType
    required: bool = False
    past: bool = False


@dataclass(frozen=True)
class FileSpec:
    """One file of the contract. ``one_of``: at least one of these columns must exist and be filled."""

    kind: FileKind
    columns: tuple[ColumnSpec, ...]
    required_file: bool = True
    one_of: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec:
        return next(c for c in self.columns if c.name == name)


_S, _T, _A = ColumnType.STRING, ColumnType.TIMESTAMP, ColumnType.AMOUNT

CONTRACT: dict[FileKind, FileSpec] = {
    FileKind.MEMBERS: FileSpec(
        FileKind.MEMBERS,
        (
            ColumnSpec("member_id", _S, required=True),
            ColumnSpec("phone", _S),
            ColumnSpec("email", _S),
            ColumnSpec("joined_at", _T, required=True, past=True),
            ColumnSpec("tier", _S),
            ColumnSpec("points_balance", ColumnType.INTEGER),
            ColumnSpec("age_band", _S),
            ColumnSpec("gender", _S),
            ColumnSpec("income_band", _S),
            ColumnSpec("birth_date", _T),
        ),
        one_of=("phone", "email"),
    ),
    FileKind.TRANSACTIONS: FileSpec(
        FileKind.TRANSACTIONS,
        (
            ColumnSpec("member_id", _S, required=True),
            ColumnSpec("timestamp", _T, required=True, past=True),
            ColumnSpec("amount", _A, required=True),
            ColumnSpec("quantity", ColumnType.DECIMAL),
            ColumnSpec("store_id", _S),
            ColumnSpec("category", _S),
            ColumnSpec("discount", _A),
            ColumnSpec("basket_id", _S),
        ),
    ),
    FileKind.CONSENTS: FileSpec(
        FileKind.CONSENTS,
        (
            ColumnSpec("member_id", _S, required=True),
            ColumnSpec("purpose", ColumnType.PURPOSE, required=True),
            ColumnSpec("granted_at", _T, required=True, past=True),
            ColumnSpec("expires_at", _T),
            ColumnSpec("withdrawn_at", _T),
            ColumnSpec("lawful_basis", _S),
            ColumnSpec("scope", _S),
            ColumnSpec("cross_border", ColumnType.BOOLEAN),
            # PIPL Art. 29 / GDPR Art. 9(2)(a): the separate consent to sensitive data (read for
            # fairness evaluation only); absent means not given.
            ColumnSpec("sensitive", ColumnType.BOOLEAN),
        ),
    ),
    FileKind.CAMPAIGNS: FileSpec(
        FileKind.CAMPAIGNS,
        (
            ColumnSpec("member_id", _S, required=True),
            ColumnSpec("campaign_id", _S, required=True),
            ColumnSpec("start_date", _T, required=True),
            ColumnSpec("end_date", _T, required=True),
            ColumnSpec("campaign_type", _S),
            ColumnSpec("redeemed_at", _T, past=True),
        ),
        required_file=False,
    ),
}

# Columns whose values identify a member: never quoted in messages or reports.
IDENTIFIER_COLUMNS = frozenset({"member_id", "phone", "email", "birth_date"})

# Parquet first: it is what the builders write and it keeps types.
SUPPORTED_SUFFIXES = (".parquet", ".csv")
