"""The node-local map ``member_id ↔ link token`` per agreement and epoch (never sent anywhere).

A link session replaces the links of its agreement and epoch as a whole (the previous session's
tokens are revoked: they came from other blinding keys); a new epoch starts from nothing, so tokens
rotate with the agreement. Withdrawal or erasure revokes a member's links (``revoke_members``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, func, select

from participant_node.points.bulk_statements import select_in
from participant_node.points.store_schema import TABLES

__all__ = ["active_links", "member_of", "replace_links", "revoke_members", "token_of", "tokens_of"]

_LINKS = TABLES["points_links"]
_CHUNK = 400


def replace_links(
    conn: Connection, agreement_id: str, epoch: int, tokens: Mapping[str, str], *, at_us: int
) -> int:
    """Make ``tokens`` (member id -> token) the links of ``agreement_id``; revoke every other one."""
    conn.execute(
        _LINKS.update()
        .where(_LINKS.c.agreement_id == agreement_id, _LINKS.c.revoked_at_us.is_(None))
        .values(revoked_at_us=at_us)
    )
    rows = [
        {
            "agreement_id": agreement_id,
            "epoch": epoch,
            "token": token,
            "member_id": member,
            "linked_at_us": at_us,
            "revoked_at_us": None,
        }
        for member, token in tokens.items()
    ]
    if rows:
        conn.execute(
            _LINKS.delete().where(
                _LINKS.c.agreement_id == agreement_id,
                _LINKS.c.epoch == epoch,
                _LINKS.c.token.in_([r["token"] for r in rows]),
            )
        )
        conn.execute(_LINKS.insert(), rows)
    return len(rows)


def token_of(conn: Connection, member_id: str, agreement_id: str, epoch: int) -> str | None:
    """The member's active link token, if any."""
    # Through tokens_of (by member and agreement): with "member_id = ? AND agreement_id = ? AND
    # epoch = ?" in the SQL, SQLite's planner (no statistics) searched the primary key's
    # (agreement_id, epoch) prefix, every link of the agreement, for one member.
    return tokens_of(conn, [member_id], agreement_id, epoch).get(member_id)


def tokens_of(conn: Connection, members: Iterable[str], agreement_id: str, epoch: int) -> dict[str, str]:
    """Active links of ``members``: member id -> token."""
    # By member and agreement (the points_links_member index), the epoch and revocation checked
    # here: with "AND epoch = ?" in the SQL, SQLite's planner (no statistics) searched the primary
    # key's (agreement_id, epoch) prefix instead, reading every link of the agreement per batch
    # (https://www.sqlite.org/queryplanner.html, "Choosing between multiple indexes").
    rows = select_in(
        conn,
        _LINKS,
        "member_id",
        members,
        columns=("member_id", "token", "epoch", "revoked_at_us"),
        equal={"agreement_id": agreement_id},
    )
    return {row.member_id: row.token for row in rows if row.epoch == epoch and row.revoked_at_us is None}


def member_of(conn: Connection, tokens: Iterable[str], agreement_id: str, epoch: int) -> dict[str, str]:
    """Active links among ``tokens``: token -> member id."""
    rows = select_in(
        conn,
        _LINKS,
        "token",
        tokens,
        columns=("token", "member_id"),
        equal={"agreement_id": agreement_id, "epoch": epoch},
        also="revoked_at_us IS NULL",
    )
    return {row.token: row.member_id for row in rows}


def active_links(conn: Connection, agreement_id: str, epoch: int) -> dict[str, str]:
    """member id -> token of every active link of the agreement's epoch."""
    query = select(_LINKS.c.member_id, _LINKS.c.token).where(
        _LINKS.c.agreement_id == agreement_id, _LINKS.c.epoch == epoch, _LINKS.c.revoked_at_us.is_(None)
    )
    return {row.member_id: row.token for row in conn.execute(query)}


def revoke_members(conn: Connection, members: Iterable[str], agreement_id: str, *, at_us: int) -> int:
    """Unlink ``members`` (withdrawn or erased); returns how many links were revoked."""
    wanted = sorted(set(members))
    revoked = 0
    for start in range(0, len(wanted), _CHUNK):
        result = conn.execute(
            _LINKS.update()
            .where(
                _LINKS.c.member_id.in_(wanted[start : start + _CHUNK]),
                _LINKS.c.agreement_id == agreement_id,
                _LINKS.c.revoked_at_us.is_(None),
            )
            .values(revoked_at_us=at_us)
        )
        revoked += result.rowcount
    return revoked


def count_links(conn: Connection, agreement_id: str) -> int:
    query = select(func.count()).where(
        _LINKS.c.agreement_id == agreement_id, _LINKS.c.revoked_at_us.is_(None)
    )
    return int(conn.execute(query).scalar_one())
