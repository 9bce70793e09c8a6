"""The ledger's invariants, recomputed from the immutable transfers alone.

1. Every balance row equals the sums of its account's transfers (posted: single and post;
   pending: reservations no post, void or expiry has resolved).
2. No member account below zero, pending debits included.
3. Every resolution (post, void, expire) resolves a pending transfer, once, for its exact amount.
4. Double entry: the balances of all accounts sum to zero (each transfer's two legs cancel).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from participant_node.points.ledger_rules import AccountFlags
from participant_node.points.store_schema import TABLES

__all__ = ["LedgerCheck", "check_ledger"]


@dataclass(frozen=True)
class LedgerCheck:
    """``verify``'s findings: empty ``problems`` means every invariant holds."""

    transfers: int
    pending: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _recomputed(conn: Connection) -> tuple[dict[str, list[int]], int, int, list[str]]:
    t = TABLES["points_transfers"]
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # dp, dpo, cp, cpo
    pendings: dict[str, tuple[str, str, int]] = {}
    resolved: dict[str, tuple[str, int]] = {}
    problems: list[str] = []
    count = 0
    for row in conn.execute(
        select(t.c.id, t.c.kind, t.c.debit_account, t.c.credit_account, t.c.amount, t.c.pending_id).order_by(
            t.c.seq
        )
    ):
        count += 1
        if row.kind == "single":
            sums[row.debit_account][1] += row.amount
            sums[row.credit_account][3] += row.amount
        elif row.kind == "pending":
            pendings[row.id] = (row.debit_account, row.credit_account, row.amount)
        else:
            if row.pending_id in resolved:
                problems.append(f"pending transfer {row.pending_id} resolved twice")
            resolved[row.pending_id] = (row.kind, row.amount)
    for pending_id, (debit, credit, amount) in pendings.items():
        kind, resolved_amount = resolved.get(pending_id, ("", amount))
        if resolved_amount != amount:
            problems.append(f"resolution of {pending_id} moves {resolved_amount}, reserved {amount}")
        column = {"post": (1, 3), "": (0, 2)}.get(kind)
        if column is not None:
            sums[debit][column[0]] += amount
            sums[credit][column[1]] += amount
    problems += [f"resolution of unknown pending transfer {p}" for p in set(resolved) - set(pendings)]
    open_count = sum(1 for p in pendings if p not in resolved)
    return sums, count, open_count, problems


def check_ledger(conn: Connection) -> LedgerCheck:
    sums, count, open_count, problems = _recomputed(conn)
    b = TABLES["points_balances"]
    net = 0
    for row in conn.execute(select(b)):
        stored = [row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted]
        expected = sums.pop(row.account, [0, 0, 0, 0])
        if stored != expected:
            problems.append(f"balance of {row.account} is {stored}, its transfers sum to {expected}")
        if row.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
            row.credits_posted < row.debits_posted + row.debits_pending
        ):
            problems.append(f"account {row.account} is below zero")
        net += row.credits_posted - row.debits_posted
    problems += [f"transfers name unknown account {account}" for account in sums]
    if net != 0:
        problems.append(f"posted balances sum to {net}, not 0")
    total = conn.execute(select(func.count()).select_from(TABLES["points_transfers"])).scalar_one()
    if total != count:
        problems.append("transfer count changed while verifying")
    return LedgerCheck(transfers=count, pending=open_count, problems=tuple(problems))
