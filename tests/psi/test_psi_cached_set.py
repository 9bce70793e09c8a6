"""Unbalanced PSI with the holder's set encrypted once per epoch and reused across partners."""

from __future__ import annotations

import pytest

from psi.cached_set import CachedSetHolder, CachedSetMatcher
from psi.errors import InvalidElementError
from psi.group_engine import GroupEngine


def test_one_encryption_serves_many_partners() -> None:
    big = [b"member-%d" % i for i in range(3000)]
    partners = {
        "careplus": [b"member-%d" % i for i in range(2900, 3100)],
        "fuelgo": [b"x-%d" % i for i in range(50)],
    }
    with GroupEngine(2) as engine:
        holder = CachedSetHolder(big, epoch="2026-11-22", engine=engine)
        assert holder.published.count == len(big)
        for items in partners.values():
            matcher = CachedSetMatcher(items, holder.published, engine=engine)
            found = {items[i] for i in matcher.matches(holder.answer(matcher.query()))}
            assert found == set(items) & set(big)


def test_the_holder_validates_queries() -> None:
    with GroupEngine(1) as engine:
        holder = CachedSetHolder([b"a", b"b"], epoch="e", engine=engine)
        with pytest.raises(InvalidElementError, match="CACHED_SET_QUERY"):
            holder.answer(bytes(32))
