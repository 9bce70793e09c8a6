"""An agreement's own expiry rule for moved points (``moved_points_expiry_months``), between two real
nodes over mutual TLS: a posted credit joins the member's lots expiring that many months after it
posts, instead of the expiry it was sent with."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from loyalfed.points_federation import prepare_synthetic_pair
from participant_node.points.service import PointsService
from participant_node.points.source_side import TransferRequest
from policies.loyalty_programme import add_months
from tests.participant_node.points.served_nodes import serving

A, B = "freshmart", "careplus"
MONTHS = 12


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PointsService]]:
    root = tmp_path_factory.mktemp("points-own-rule")
    pair = prepare_synthetic_pair(
        root, members=60, shared=40, min_link_set_size=20, moved_points_expiry_months=MONTHS
    )
    nodes = {p: PointsService(pair.settings[p]) for p in (A, B)}
    with serving(pair, nodes):
        assert nodes[A].link(B).linked == 40
        yield nodes


def _lots(service: PointsService, member: str) -> dict[str, int]:
    return {e["expires_at"]: e["points"] for e in service.balance(member)["expiring"]}


def test_posted_credits_expire_by_the_agreement_rule(services: dict[str, PointsService]) -> None:
    """Three credits of one batch (two to one member) join lots expiring MONTHS after they post;
    each member's lots still sum to the available balance."""
    fm, cp = services[A], services[B]
    members = {"CP-0000030": 800 + 400, "CP-0000031": 800}
    before = {m: _lots(cp, m) for m in members}
    start = datetime.now(UTC)
    receipts = fm.transfer(
        [
            TransferRequest("ownrule-a1b2c3d4", "FM-0000030", B, 1_000),
            TransferRequest("ownrule-b2c3d4e5", "FM-0000030", B, 500),
            TransferRequest("ownrule-c3d4e5f6", "FM-0000031", B, 1_000),
        ]
    )
    assert [r.state for r in receipts] == ["posted"] * 3, receipts
    assert fm.recover().outbox_left == 0  # the posts have reached CarePlus
    end = datetime.now(UTC)
    earliest, latest = add_months(start, MONTHS).isoformat(), add_months(end, MONTHS).isoformat()
    for member, credited in members.items():
        after = _lots(cp, member)
        gained = {
            e: after[e] - before[member].get(e, 0) for e in after if after[e] != before[member].get(e, 0)
        }
        assert sum(gained.values()) == credited, gained
        assert all(earliest <= e <= latest for e in gained), (gained, earliest, latest)
        assert sum(after.values()) == cp.balance(member)["available"]
    assert cp.ledger.verify().ok and cp.ledger.verify().pending == 0
