"""The seeded fault plan: the same seed faults the same messages the same way; an answer held back
by the plan arrives in place of a newer one, and the node refuses an answer about transfers it
did not ask about (the two-node fault-injection test runs the plan for real)."""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest

from participant_node.points.errors import PeerError
from participant_node.points.fault_plan import Fault, FaultPlan, FaultyTransport
from participant_node.points.peer_client import PeerClient
from participant_node.points.wire import (
    POINTS_WIRE_VERSION,
    DecisionRequest,
    LinkOpening,
    ReserveItem,
    ReserveRequest,
    opening_digest,
)

TOKEN = "ab" * 32


def _faults(plan: FaultPlan) -> list[Fault]:
    return [plan.fault(f"message-{n}".encode(), attempt) for n in range(400) for attempt in (0, 1, 2)]


def test_the_seed_fixes_every_fault_and_retries_get_through() -> None:
    faults = _faults(FaultPlan.uniform(7, 0.1))
    assert faults == _faults(FaultPlan.uniform(7, 0.1)) != _faults(FaultPlan.uniform(8, 0.1))
    assert {f for f in faults} == set(Fault)  # every kind, requests and answers
    assert all(f is Fault.NONE for f in faults[2::3])  # the third attempt is never faulted


def _peer(request: httpx.Request) -> httpx.Response:
    """A destination that reserves whatever it is asked (answers name the transfer ids asked)."""
    items = json.loads(request.content)["items"]
    return httpx.Response(
        200,
        json={
            "version": POINTS_WIRE_VERSION,
            "results": [{"transfer_id": i["transfer_id"], "status": "reserved"} for i in items],
        },
    )


def _reserve(transfer_id: str) -> ReserveRequest:
    item = ReserveItem(transfer_id=transfer_id, link_token=TOKEN, points=250, credited=200)
    return ReserveRequest(agreement_id="fm-cp", agreement_hash="cd" * 32, epoch=1, items=(item,))


def test_a_duplicated_answer_lands_on_a_newer_message_and_is_refused() -> None:
    plan = FaultPlan(1, 0, 0, 0, 0, duplicate_reply=0.99, delay_reply=0)
    transport = FaultyTransport(httpx.MockTransport(_peer), plan)
    client = PeerClient(httpx.Client(base_url="https://careplus.test", transport=transport), peer="careplus")
    first = client.reserve(_reserve("t-0001aa"))
    assert [r.transfer_id for r in first.results] == ["t-0001aa"]
    with pytest.raises(PeerError, match="answered another message"):
        client.reserve(_reserve("t-0002aa"))  # the copy of the first answer arrived instead
    assert transport.injected["reserve:duplicate_reply"] == 2


def test_a_delayed_answer_arrives_late_in_place_of_the_retry_s_own() -> None:
    plan = FaultPlan(3, 0, 0, 0, 0, duplicate_reply=0, delay_reply=0.99)
    transport = FaultyTransport(httpx.MockTransport(_peer), plan)
    client = PeerClient(httpx.Client(base_url="https://careplus.test", transport=transport), peer="careplus")
    with pytest.raises(PeerError, match="unreachable"):
        client.reserve(_reserve("t-0003aa"))  # answer held back: the caller saw a timeout
    with pytest.raises(PeerError, match="unreachable"):
        client.reserve(_reserve("t-0003aa"))  # the retry's answer held back too (second attempt)
    late = client.reserve(_reserve("t-0003aa"))  # third attempt: the first answer arrives now
    assert [r.transfer_id for r in late.results] == ["t-0003aa"]


def _source(request: httpx.Request) -> httpx.Response:
    """A source that answers a recovery query with a decision per transfer id asked."""
    asked = json.loads(request.content)["transfer_ids"]
    decisions = [{"transfer_id": t, "status": "posted"} for t in asked]
    return httpx.Response(
        200,
        json={"version": POINTS_WIRE_VERSION, "decisions": decisions, "decided_at_us": [1_000] * len(asked)},
    )


def test_an_old_answer_to_a_recovery_query_is_refused_for_a_newer_query() -> None:
    plan = FaultPlan(1, 0, 0, 0, 0, duplicate_reply=0.99, delay_reply=0)
    transport = FaultyTransport(httpx.MockTransport(_source), plan)
    http = httpx.Client(base_url="https://freshmart.test", transport=transport)
    client = PeerClient(http, peer="freshmart")
    first = client.decisions(DecisionRequest(transfer_ids=("t-0004aa",)))
    assert [d.transfer_id for d in first.decisions] == ["t-0004aa"]
    with pytest.raises(PeerError, match="answered another message"):
        client.decisions(DecisionRequest(transfer_ids=("t-0005aa",)))  # the first answer's copy
    assert transport.injected["decisions:duplicate_reply"] == 2


def _responder(request: httpx.Request) -> httpx.Response:
    """A responder that opens a session per link opening it receives, naming the opening it answers."""
    elements = json.loads(request.content)["elements"]
    answer = {"session_id": secrets.token_hex(16), "double": elements, "elements": elements}
    return httpx.Response(
        200, json={"version": POINTS_WIRE_VERSION, "opening_digest": opening_digest(elements)} | answer
    )


def _opening(elements: bytes) -> LinkOpening:
    text = base64.b64encode(elements).decode("ascii")
    return LinkOpening(agreement_id="fm-cp", agreement_hash="cd" * 32, epoch=1, elements=text)


def test_an_old_link_answer_is_discarded_and_the_opening_asked_again() -> None:
    plan = FaultPlan(1, 0, 0, 0, 0, duplicate_reply=0.99, delay_reply=0)
    transport = FaultyTransport(httpx.MockTransport(_responder), plan)
    client = PeerClient(httpx.Client(base_url="https://careplus.test", transport=transport), peer="careplus")
    first, second = _opening(b"first opening"), _opening(b"second opening")
    assert client.link_open(first).opening_digest == opening_digest(first.elements)
    # The copy of the first answer arrives in place of the second opening's own: it is set aside
    # and the same opening sent again, whose answer (its own, held by the plan) then arrives.
    answer = client.link_open(second)
    assert answer.opening_digest == opening_digest(second.elements)
    assert transport.injected["link:duplicate_reply"] == 3


def test_an_answer_in_another_wire_version_is_refused_naming_both_versions() -> None:
    def old_peer(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["items"]
        results = [{"transfer_id": i["transfer_id"], "status": "reserved"} for i in items]
        return httpx.Response(200, json={"version": 1, "results": results})

    http = httpx.Client(base_url="https://careplus.test", transport=httpx.MockTransport(old_peer))
    client = PeerClient(http, peer="careplus")
    expected = (
        f"careplus answered in points wire version 1 unsupported \\(this node: {POINTS_WIRE_VERSION}\\)"
    )
    with pytest.raises(PeerError, match=expected):
        client.reserve(_reserve("t-0006aa"))
