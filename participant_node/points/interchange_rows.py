"""Shared vocabulary of the two sides of an interchange transfer: states, ledger ids, caps, rows."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import Connection

from participant_node.points.bulk_statements import insert_rows, select_in, update_in
from participant_node.points.ledger import AccountKind, account_id
from participant_node.points.ledger_rules import UsageLimit
from participant_node.points.store_schema import TABLES
from policies.interchange_agreement import ConversionTerms, InterchangeAgreement

__all__ = [
    "FEE_ACCOUNT",
    "ISSUANCE_ACCOUNT",
    "State",
    "caps",
    "clearing",
    "enqueue",
    "fields_hash",
    "inbound_key",
    "load_rows",
    "member_account",
]

ROWS = TABLES["points_interchange"]
OUTBOX = TABLES["points_outbox"]
FEE_ACCOUNT = account_id(AccountKind.FEE)
ISSUANCE_ACCOUNT = account_id(AccountKind.ISSUANCE)


class State(StrEnum):
    RESERVED = "reserved"
    POSTED = "posted"
    VOIDED = "voided"
    REFUSED = "refused"


def member_account(member_id: str) -> str:
    return account_id(AccountKind.MEMBER, member_id)


def clearing(peer: str) -> str:
    return account_id(AccountKind.CLEARING, peer)


def inbound_key(peer: str, transfer_id: str) -> str:
    """Transfer ids are the source's: namespaced by peer at the destination ('/' is not in an id)."""
    return f"{peer}/{transfer_id}"


def fields_hash(*fields: object) -> str:
    """sha256 of the fields as ``json.dumps`` writes a list of their strings (the stored hashes are
    of that text), built without ``json.dumps``'s per-call encoder: the same quoting and escaping
    (``encode_basestring_ascii``, what ``json.dumps`` uses by default), the same separators."""
    text = "[" + ", ".join([encode_basestring_ascii(str(f)) for f in fields]) + "]"
    return hashlib.sha256(text.encode()).hexdigest()


def caps(
    terms: ConversionTerms, agreement: InterchangeAgreement, who: str, points: int, at_us: int
) -> tuple[UsageLimit, ...]:
    """The member's day and month caps and the partner's day cap, in source points (checked at reserve)."""
    day, month = _day_and_month(at_us // _DAY_US)
    direction = f"{agreement.agreement_id}:{terms.source}>{terms.destination}"
    return (
        UsageLimit(f"{direction}:{who}:d{day}", terms.member_daily_cap, points),
        UsageLimit(f"{direction}:{who}:m{month}", terms.member_monthly_cap, points),
        UsageLimit(f"{direction}:d{day}", terms.partner_daily_cap, points),
    )


_DAY_US = 86_400_000_000  # POSIX time: every UTC day is this many microseconds


@lru_cache(maxsize=8)
def _day_and_month(day_number: int) -> tuple[str, str]:
    """``YYYYMMDD`` and ``YYYYMM`` of a UTC day (days since the epoch): the caps' periods."""
    at = datetime.fromtimestamp(day_number * (_DAY_US // 1_000_000), UTC)
    return at.strftime("%Y%m%d"), at.strftime("%Y%m")


def load_rows(conn: Connection, keys: list[str], *, lock: bool = False) -> dict[str, Any]:
    return {row.key: row for row in select_in(conn, ROWS, "key", keys, lock=lock)}


def enqueue(conn: Connection, keys: list[str], peer: str, action: str, at_us: int) -> None:
    insert_rows(
        conn, OUTBOX, [{"key": k, "peer": peer, "action": action, "created_at_us": at_us} for k in keys]
    )


def set_state(conn: Connection, keys: list[str], state: State, at_us: int, **values: Any) -> None:
    update_in(conn, ROWS, "key", keys, {"state": str(state), "updated_at_us": at_us, **values})
