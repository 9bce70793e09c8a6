"""Which members may take part in points interchange with a partner, from the node's consent gate.

PIPL Art. 23: providing a member's data to another handler (crediting brand B for brand A's member)
needs that member's separate consent naming B. The set comes from the node's consent gate for PSI
(``participant_node.matching.member_set.gated_matching_set``: the node gate's purpose, recipient
scope, withdrawal and erasure, retention and minimisation rules), so linking and crediting follow
the same rules as every other use of member data. The set is recomputed when the consent store or
the day changes, so a withdrawal or an erasure recorded by ``loyalfed consent …`` takes effect for
the next transfer.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from participant_node.consent import store_path
from participant_node.data import PartnerData, load_partner
from participant_node.matching.member_set import MatchingSet, gated_matching_set
from policies.purpose import Purpose

__all__ = ["MemberDirectory", "PooledDirectory"]


@dataclass(frozen=True)
class _Cached:
    version: tuple[float, str]
    matching: MatchingSet
    members: frozenset[str]


class MemberDirectory:
    """Consented members per peer, for linking (PSI items) and for each transfer (membership)."""

    def __init__(
        self,
        partner_dir: Path,
        *,
        secret: bytes,
        id_column: str = "phone",
        default_region: str = "CN",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        data: PartnerData | None = None,
    ) -> None:
        self.partner_dir = partner_dir
        self._secret, self._id_column, self._region = secret, id_column, default_region
        self._clock = clock
        self._data = data
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def _version(self) -> tuple[float, str]:
        """The consent store's modification time (0 while there is none) and today's date: the
        cached consent sets are rebuilt when either changes. Asked on every reserve batch, so
        it is one ``stat`` call (``Path.exists`` then ``Path.stat`` made two)."""
        try:
            mtime = os.stat(store_path(self.partner_dir)).st_mtime
        except (FileNotFoundError, NotADirectoryError):
            mtime = 0.0
        return mtime, self._clock().date().isoformat()

    def _load(self, peer: str) -> _Cached:
        version = self._version()
        with self._lock:
            cached = self._cache.get(peer)
            if cached is not None and cached.version == version:
                return cached
            if self._data is None:
                self._data = load_partner(self.partner_dir)
            matching = gated_matching_set(
                self._data,
                purpose=Purpose.POINTS_INTERCHANGE,
                recipient=peer,
                at=self._clock().replace(tzinfo=None),
                id_column=self._id_column,
                secret=self._secret,
                default_region=self._region,
            )
            cached = _Cached(version, matching, frozenset(matching.member_ids))
            self._cache[peer] = cached
            return cached

    def matching_set(self, peer: str) -> MatchingSet:
        """PSI items of the members consented to interchange with ``peer`` (member ids node-local)."""
        return self._load(peer).matching

    def consented(self, peer: str) -> frozenset[str]:
        return self._load(peer).members

    def all_members(self) -> list[str]:
        if self._data is None:
            self._data = load_partner(self.partner_dir)
        return self._data.members["member_id"].astype(str).tolist()


class PooledDirectory:
    """One programme's members held in several partner folders (a retailer's store groups), each
    gated with its own consent store; member ids must be distinct across the folders."""

    def __init__(self, parts: list[MemberDirectory]) -> None:
        self.parts = parts

    def matching_set(self, peer: str) -> MatchingSet:
        sets = [part.matching_set(peer) for part in self.parts]
        items: list[bytes] = []
        members: list[str] = []
        seen: set[bytes] = set()
        for matching in sets:
            for item, member in zip(matching.items, matching.member_ids, strict=True):
                if item not in seen:  # a person registered at two store groups is linked once
                    seen.add(item)
                    items.append(item)
                    members.append(member)
        snapshot = hashlib.sha256("".join(m.consent_snapshot_hash for m in sets).encode()).hexdigest()
        return MatchingSet(
            items=items,
            member_ids=members,
            consented=sum(m.consented for m in sets),
            excluded_by_consent=sum(m.excluded_by_consent for m in sets),
            unusable_identifiers=sum(m.unusable_identifiers for m in sets),
            duplicates=sum(m.duplicates + len(m.items) for m in sets) - len(items),
            consent_snapshot_hash=snapshot,
        )

    def consented(self, peer: str) -> frozenset[str]:
        return frozenset().union(*(part.consented(peer) for part in self.parts))
