"""Unbalanced PSI with the holder's set encrypted once per epoch and reused across partners."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from psi.cached_set import CachedSetHolder, CachedSetMatcher, CachedSetMessage, EpochTags
from psi.errors import InvalidElementError, PsiError, PsiProtocolError
from psi.group_engine import GroupEngine


def test_one_encryption_serves_many_partners() -> None:
    big = [b"member-%d" % i for i in range(3000)]
    partners = {
        "careplus": [b"member-%d" % i for i in range(2900, 3100)],
        "fuelgo": [b"x-%d" % i for i in range(50)],
    }
    with GroupEngine(2) as engine:
        holder, published = CachedSetHolder.encrypt(big, epoch="2026-11-22", engine=engine)
        assert published.count == len(big)
        for items in partners.values():
            matcher = CachedSetMatcher(items, published, engine=engine)
            found = {items[i] for i in matcher.matches(holder.answer(matcher.query()))}
            assert found == set(items) & set(big)


def test_both_sides_resume_from_files_between_steps() -> None:
    """Holder and partner in separate steps (processes, organisations): only bytes in between."""
    big = [b"m%d" % i for i in range(500)]
    small = [b"m%d" % i for i in range(450, 520)]
    with GroupEngine(1) as engine:
        holder, tags = CachedSetHolder.encrypt(big, epoch="week-47", engine=engine, tag_bytes=10)
        holder_key, tags_file = holder.key, tags.encode()
        matcher = CachedSetMatcher(small, EpochTags.decode(tags_file), engine=engine)
        partner_key, query_file = matcher.key, matcher.query().encode()
        resumed = CachedSetHolder(holder_key, epoch="week-47", engine=engine)
        answer_file = resumed.answer(CachedSetMessage.decode(query_file, "query")).encode()
        again = CachedSetMatcher(small, EpochTags.decode(tags_file), engine=engine, key=partner_key)
        found = again.matches(CachedSetMessage.decode(answer_file, "answer"))
    assert [small[i] for i in found] == [b"m%d" % i for i in range(450, 500)]
    assert b"m450" not in query_file + answer_file + tags_file


@settings(max_examples=25, deadline=None)
@given(
    big=st.sets(st.binary(min_size=0, max_size=12), max_size=40),
    small=st.sets(st.binary(min_size=0, max_size=12), max_size=20),
)
def test_cached_set_psi_is_set_intersection(big: set[bytes], small: set[bytes]) -> None:
    items = sorted(small)
    with GroupEngine(1) as engine:
        holder, tags = CachedSetHolder.encrypt(sorted(big), epoch="e", engine=engine)
        matcher = CachedSetMatcher(items, tags, engine=engine)
        found = {items[i] for i in matcher.matches(holder.answer(matcher.query()))}
    assert found == small & big


def test_the_holder_validates_queries_and_epochs() -> None:
    with GroupEngine(1) as engine:
        holder, tags = CachedSetHolder.encrypt([b"a", b"b"], epoch="e", engine=engine)
        with pytest.raises(InvalidElementError, match="CACHED_SET_QUERY"):
            holder.answer(CachedSetMessage("query", "e", bytes(32)))
        with pytest.raises(PsiProtocolError, match="expected a query for epoch 'e'"):
            holder.answer(CachedSetMessage("query", "other", bytes(32)))
        matcher = CachedSetMatcher([b"a"], tags, engine=engine)
        with pytest.raises(PsiProtocolError, match="element count differs"):
            matcher.matches(CachedSetMessage("answer", "e", b""))
        with pytest.raises(PsiError, match="distinct"):
            CachedSetHolder.encrypt([b"a", b"a"], epoch="e", engine=engine)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: data[:-1],  # truncated
        lambda data: b"not a tags file",
        lambda data: data.replace(b'"version": 1', b'"version": 9'),
        lambda data: data.replace(b'"kind": "tags"', b'"kind": "query"'),
    ],
)
def test_damaged_tag_files_are_refused(mangle) -> None:
    data = EpochTags("e", 12, bytes(range(24))).encode()
    with pytest.raises(PsiProtocolError):
        EpochTags.decode(mangle(data))
