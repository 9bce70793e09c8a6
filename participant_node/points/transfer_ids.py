"""New transfer ids: time-ordered, as TigerBeetle recommends for its own ids.

A transfer id keys the ledger's transfer rows (their unique id index) and the protocol's rows at
both nodes. A random id (UUID version 4) lands anywhere in those B-trees, so each insert reads and
dirties a page of its own and the pages a batch touches grow with the ledger; an id that begins
with the moment it was minted lands at the end of the index, where the batch's other inserts are.
TigerBeetle's data-modeling guide recommends time-based identifiers (ULID, UUIDv7) for the same
reason in its LSM trees (https://docs.tigerbeetle.com/coding/data-modeling/, "TigerBeetle
Time-Based Identifiers"). A client may send any id the wire allows; this is what the node and the
CLI mint when a request names none, and what clients should mint.

Layout (ULID's, written in hex): 48 bits of milliseconds since the Unix epoch, then 80 random bits,
as 32 lowercase hex digits: a machine-minted id for ``wire.check_transfer_id``.
"""

from __future__ import annotations

import secrets
import time

__all__ = ["new_transfer_id"]


def new_transfer_id() -> str:
    """A new time-ordered transfer id (32 hex digits)."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"
