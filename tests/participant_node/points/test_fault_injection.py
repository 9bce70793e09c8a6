"""Two node processes, 10,000 transfers, many at once, under a seeded fault plan, with the receiver
killed (SIGKILL) and restarted: afterwards nothing is lost, nothing applied twice, nothing pending,
and the settlement statements equal the ledger sums on both sides.

The plan faults both nodes' messages in both directions: the source's reserves and decisions and
the destination's answers to them, and the destination's recovery queries and the source's answers
to those (dropped, duplicated, delivered late in place of a newer answer). Each node logs every
fault it injects, so the count survives the receiver's restarts.

Replay a run with ``LOYALFED_FAULT_SEED=<seed>``: the plan faults the same messages the same way
(which transfer meets which fault is a function of the seed and the message).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from loyalfed.points_cluster import PointsCluster
from loyalfed.points_federation import prepare_synthetic_pair
from participant_node.points.ledger import Ledger
from participant_node.points.settlement import compute_statement
from participant_node.points.store_schema import TABLES

SEED = int(os.environ.get("LOYALFED_FAULT_SEED", "20261206"))
TRANSFERS = 10_000
THREADS = 8
BATCH = 50  # per request: many requests, so many reserve and post messages meet the plan
A, B = "freshmart", "careplus"
WIDE = (datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC))


def _totals(url: str) -> dict[str, int]:
    ledger = Ledger(url, synchronous="NORMAL")
    try:
        balances = {
            kind: ledger.totals(kind).credits_posted - ledger.totals(kind).debits_posted
            for kind in ("member", "clearing", "fee", "issuance", "expiry")
        }
        check = ledger.verify()
        assert check.ok, check.problems[:5]
        balances["pending"] = check.pending
        return balances
    finally:
        ledger.close()


def _rows(url: str) -> dict[str, Any]:
    ledger = Ledger(url, synchronous="NORMAL")
    t = TABLES["points_interchange"]
    try:
        with ledger.reading() as conn:
            return {r.transfer_id: r for r in conn.execute(select(t))}
    finally:
        ledger.close()


def _submit(cluster: PointsCluster, jobs: list[tuple[str, str]], receipts: dict[str, str]) -> None:
    rng = random.Random(f"{SEED}-{jobs[0][0]}")
    for start in range(0, len(jobs), BATCH):
        part = jobs[start : start + BATCH]
        items = [{"member_id": m, "to": B, "points": 250, "transfer_id": t} for t, m in part]
        for attempt in range(50):  # the client retries with the same ids until the node answers
            try:
                response = cluster.client(A).post(
                    "/points/v1/transfers/batch", json={"items": items}, timeout=60
                )
                if response.status_code == 200:
                    break
            except Exception:
                pass
            time.sleep(0.2 * (attempt + 1))
        else:
            raise AssertionError("the source node stopped answering")
        for receipt in response.json()["receipts"]:
            receipts[receipt["transfer_id"]] = receipt["state"]
        if rng.random() < 0.1:  # a client that did not see the answer sends the same batch again
            with contextlib.suppress(Exception):  # a lost repeat is as good as none
                cluster.client(A).post("/points/v1/transfers/batch", json={"items": items}, timeout=60)


def _kill_receiver(
    cluster: PointsCluster, done: threading.Event, receipts: dict[str, str], kills: list[float]
) -> None:
    """SIGKILL the receiver when the clients have their answers for 20 % and 55 % of the transfers
    (seeded jitter), restart it after a seeded pause: transfers are in flight both times."""
    rng = random.Random(SEED)
    for share in (0.2 + rng.uniform(0, 0.05), 0.55 + rng.uniform(0, 0.05)):
        while len(receipts) < share * TRANSFERS:
            if done.wait(0.05):
                return
        cluster.kill(B)
        kills.append(time.monotonic())
        time.sleep(rng.uniform(0.2, 1.0))
        cluster.start(B, wait_s=180)


_FAULT_LINE = re.compile(r"fault plan: (\w+) on (\w+)")


def _faults_logged(log: Path) -> dict[tuple[str, str], int]:
    """(fault, endpoint) -> how many times the node's plan injected it (over all its restarts)."""
    counts: dict[tuple[str, str], int] = {}
    for fault, endpoint in _FAULT_LINE.findall(log.read_text(encoding="utf-8", errors="replace")):
        counts[(fault, endpoint)] = counts.get((fault, endpoint), 0) + 1
    return counts


def _drain(cluster: PointsCluster, deadline_s: float = 300.0) -> None:
    """Recovery passes on both nodes until nothing is reserved or queued (each node also runs them
    by itself; a pass that outlasts the client's patience is simply asked again)."""
    if B not in cluster.processes:
        cluster.start(B, wait_s=180)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for partner in (A, B):
            with contextlib.suppress(httpx.TimeoutException):
                cluster.client(partner).post("/points/v1/recover", timeout=120)
        sa, sb = cluster.call(A, "GET", "/points/v1/status"), cluster.call(B, "GET", "/points/v1/status")
        if not (sa.get("source_reserved") or sb.get("destination_reserved") or sa["outbox"] or sb["outbox"]):
            return
        time.sleep(0.5)
    raise AssertionError("transfers still in flight after the recovery passes")


@pytest.mark.slow
def test_ten_thousand_transfers_survive_faults_and_a_killed_receiver(tmp_path: Path) -> None:
    # Batches of at most 250 (the node allows 1,000): 10,000 transfers must cross in enough
    # reserve and post messages for every kind of fault in the plan to meet them.
    pair = prepare_synthetic_pair(
        tmp_path,
        members=1_300,
        shared=1_100,
        fault_seed=SEED,
        fault_rate=0.06,
        audit=False,
        transfers_per_batch=250,
    )
    urls = {p: s.database_url for p, s in pair.settings.items()}
    before = {p: _totals(u) for p, u in urls.items()}
    rng = random.Random(SEED)
    members = [f"FM-{n:07d}" for n in range(200, 1_300)]
    jobs = [(f"{rng.getrandbits(128):032x}", members[k % len(members)]) for k in range(TRANSFERS)]
    receipts: dict[str, str] = {}
    kills: list[float] = []
    with PointsCluster(pair, log_dir=tmp_path / "logs") as cluster:
        cluster.start(A, wait_s=180)
        cluster.start(B, wait_s=180)
        assert cluster.call(A, "POST", "/points/v1/links", json={"peer": B})["linked"] == 1_100
        done = threading.Event()
        killer = threading.Thread(target=_kill_receiver, args=(cluster, done, receipts, kills))
        killer.start()
        workers = [
            threading.Thread(target=_submit, args=(cluster, jobs[k::THREADS], receipts))
            for k in range(THREADS)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        killer.join()
        _drain(cluster)
    after = {p: _totals(u) for p, u in urls.items()}
    rows = {p: _rows(u) for p, u in urls.items()}
    _check(before, after, rows, receipts, urls, pair.agreement)
    assert len(kills) == 2, "the receiver was not killed twice"
    faults = {p: _faults_logged(tmp_path / "logs" / f"{p}.log") for p in (A, B)}
    kinds = ("drop_request", "drop_response", "duplicate", "delay", "duplicate_reply", "delay_reply")
    for kind in kinds:  # every kind of fault, on the source's messages and on the answers to them
        on_source = faults[A].get((kind, "reserve"), 0) + faults[A].get((kind, "resolve"), 0)
        assert on_source > 0, f"no {kind} on the source's reserves or posts (seed {SEED}): {faults[A]}"
    # The receiver's recovery queries meet the same plan, but how many it sends depends on where the
    # kills land (a run can need none), so whether one of them is faulted is not fixed by the seed:
    # test_fault_plan's recovery-query tests fault them deterministically.


def _check(before: dict, after: dict, rows: dict, receipts: dict, urls: dict, agreement: Any) -> None:
    assert len(receipts) == TRANSFERS
    source, destination = rows[A], rows[B]
    posted_a = {t for t, r in source.items() if r.state == "posted"}
    posted_b = {t for t, r in destination.items() if r.state == "posted"}
    assert posted_a == posted_b, "a transfer posted on one side only"
    from collections import Counter

    outcomes = Counter((r.state, r.reason) for r in source.values())
    # Liveness, loosely: transfers in flight while the receiver is down past their timeout are
    # voided (presumed abort), more of them the slower the machine restarts it.
    assert len(posted_a) >= TRANSFERS // 10, outcomes
    assert all(r.state in ("posted", "voided", "refused") for r in source.values())
    assert all(r.state in ("posted", "voided", "refused") for r in destination.values())
    assert after[A]["pending"] == after[B]["pending"] == 0
    points = sum(source[t].points for t in posted_a)
    fees = sum(source[t].fee for t in posted_a)
    credited = sum(destination[t].credited for t in posted_b)
    assert credited == sum(source[t].credited for t in posted_a)
    # Conservation: each ledger's members lost (or gained) exactly what its clearing and fee accounts
    # hold; nothing was issued; every posted credit was applied exactly once.
    # Points whose expiry passed during the run went to each node's expiry account.
    lapsed = {p: after[p]["expiry"] - before[p]["expiry"] for p in (A, B)}
    assert after[A]["member"] == before[A]["member"] - points - fees - lapsed[A]
    assert (after[A]["clearing"], after[A]["fee"]) == (points, fees)
    assert after[B]["member"] == before[B]["member"] + credited - lapsed[B]
    assert after[B]["clearing"] == -credited
    assert after[A]["issuance"] == before[A]["issuance"] and after[B]["issuance"] == before[B]["issuance"]
    statements = {}
    for partner, url in urls.items():
        ledger = Ledger(url, synchronous="NORMAL")
        with ledger.reading() as conn:
            statements[partner] = compute_statement(
                conn, agreement, issuer=partner, start=WIDE[0], end=WIDE[1]
            )
        ledger.close()
    assert statements[A].differences(statements[B]) == []
    out = next(d for d in statements[A].directions if d.source == A)
    assert (out.transfers, out.points, out.credited) == (len(posted_a), points, credited)
