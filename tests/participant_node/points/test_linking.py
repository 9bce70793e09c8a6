"""Link tokens from the doubly blinded element: equal on both sides, only for shared members,
pairwise (another agreement, epoch or pair gives other tokens), and a forged reveal is refused."""

from __future__ import annotations

import pytest

from participant_node.points.errors import LinkError
from participant_node.points.linking import LinkContext, LinkInitiator, LinkResponder, link_hash
from psi.group_engine import GroupEngine

CONTEXT = LinkContext("fm-cp-2026", 1, ("freshmart", "careplus"))


def run(
    a: list[bytes], b: list[bytes], context: LinkContext = CONTEXT
) -> tuple[dict[int, str], dict[int, str]]:
    with GroupEngine(1) as engine:
        initiator = LinkInitiator(a, context, engine=engine)
        responder = LinkResponder(b, context, engine=engine)
        double, own = responder.answer(initiator.blinded())
        tokens_a, reveal = initiator.finish(double, own)
        return tokens_a, responder.finish(reveal)


def test_both_sides_derive_the_same_token_for_shared_members_only() -> None:
    a = [f"id-{i}".encode() for i in range(0, 30)]
    b = [f"id-{i}".encode() for i in range(20, 60)]
    tokens_a, tokens_b = run(a, b)
    assert {a[i] for i in tokens_a} == {b[j] for j in tokens_b} == set(a) & set(b)
    by_item_a = {a[i]: t for i, t in tokens_a.items()}
    assert all(by_item_a[b[j]] == t for j, t in tokens_b.items())
    assert len(set(tokens_a.values())) == 10 and all(len(t) == 64 for t in tokens_a.values())
    assert link_hash(next(iter(tokens_a.values()))) not in tokens_a.values()


def test_tokens_are_pairwise_and_fresh_per_session() -> None:
    items = [b"alice", b"bob", b"carol"]
    first, _ = run(items, items)
    again, _ = run(items, items)
    other, _ = run(items, items, LinkContext("fm-fg-2026", 1, ("freshmart", "fuelgo")))
    assert set(first.values()).isdisjoint(again.values())  # fresh blinding keys per session
    assert set(first.values()).isdisjoint(other.values())


def test_a_reveal_of_elements_the_responder_never_computed_is_refused() -> None:
    with GroupEngine(1) as engine:
        initiator = LinkInitiator([b"x", b"y"], CONTEXT, engine=engine)
        responder = LinkResponder([b"x", b"z"], CONTEXT, engine=engine)
        double, own = responder.answer(initiator.blinded())
        _, reveal = initiator.finish(double, own)
        with pytest.raises(LinkError):
            responder.finish([(reveal[0][0], bytes(32))])
        with pytest.raises(LinkError):
            responder.finish([(5, reveal[0][1])])
        with pytest.raises(LinkError):
            responder.finish([reveal[0], reveal[0]])
