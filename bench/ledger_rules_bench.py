"""CPU of the ledger's pure state machine (``ledger_rules.apply``) per transfer leg; prints JSON.

The workload is the source node's share of interchange transfers, in memory (no database): batches
of ``--batch`` transfers, each a linked pair of pending legs (member -> clearing with the three
usage caps of ``interchange_rows.caps``: member day, member month, partner day; member -> fee
account), as ``source_side._legs`` builds them, applied to a ``LedgerState`` shaped as
``LedgerTx._load`` builds it; then the batch's post resolutions (``source_side._resolution``) on a
state holding those pending transfers. Only ``apply`` is timed, not the building of the states.

Times are the process's CPU time (other processes on the machine take wall time, not ours). This
VM's speed drifts by about 20 % from minute to minute, so each run also times a fixed
pure-Python reference workload right after its batches, and reports its cost per leg as a ratio to
that reference, timed between the batches (``ratio``: microseconds per leg / median microseconds
per reference unit). Medians over ``--runs``.

    PYTHONPATH=$PWD python bench/ledger_rules_bench.py [--runs 7] [--batches 8] [--batch 250]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from participant_node.points.ledger_rules import (
    AccountFlags,
    Balance,
    LedgerState,
    Outcome,
    PendingRecord,
    Transfer,
    TransferKind,
    UsageLimit,
    apply,
)

_NOW_US = 1_796_601_600_000_000  # 2026-12-07T00:00:00Z
_TIMEOUT_US = 600_000_000
_CLEARING = "clearing:peer-b"
_FEE = "fee"
_DIRECTION = "agreement-ab:a>b"
_REFERENCE_LOOPS = 1_000  # one reference unit: this many iterations of the loop below
_REFERENCE_UNITS_PER_BATCH = 50


def _reference_units(units: int) -> list[float]:
    """Seconds for each of ``units`` reference units (a fixed pure-Python loop)."""
    times = []
    for _ in range(units):
        started = time.process_time()
        total = 0
        for i in range(_REFERENCE_LOOPS):
            total += i % 7
        times.append(time.process_time() - started)
    return times


def _member(batch: int, n: int) -> str:
    return f"member:m{batch:03d}-{n:04d}"


def _reserve_legs(batch: int, size: int) -> list[Transfer]:
    """What ``source_side._legs`` builds for ``size`` transfers of 100 points with a fee of 2."""
    legs = []
    for n in range(size):
        who = _member(batch, n)
        key = f"tr-{batch:03d}-{n:04d}"
        limits = (
            UsageLimit(f"{_DIRECTION}:{who}:d20261207", 5_000, 100),
            UsageLimit(f"{_DIRECTION}:{who}:m202612", 50_000, 100),
            UsageLimit(f"{_DIRECTION}:d20261207", 10_000_000, 100),
        )
        link = hashlib.sha256(key.encode()).hexdigest()
        legs.append(
            Transfer(
                f"{key}:debit",
                who,
                _CLEARING,
                100,
                kind=TransferKind.PENDING,
                timeout_us=_TIMEOUT_US,
                code="interchange_out",
                agreement_id="agreement-ab",
                link_hash=link,
                limits=limits,
                linked=True,
            )
        )
        legs.append(
            Transfer(
                f"{key}:fee",
                who,
                _FEE,
                2,
                kind=TransferKind.PENDING,
                timeout_us=_TIMEOUT_US,
                code="interchange_fee",
                agreement_id="agreement-ab",
            )
        )
    return legs


def _post_legs(reserve: list[Transfer]) -> list[Transfer]:
    """What ``source_side._resolution`` builds to post ``reserve``'s pairs."""
    kind = TransferKind.POST
    return [Transfer(f"{leg.id}:{kind}", kind=kind, pending_id=leg.id, linked=leg.linked) for leg in reserve]


def _balances(members: list[str]) -> dict[str, Balance]:
    flags = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    balances = {m: Balance(credits_posted=10_000, flags=flags) for m in members}
    balances[_CLEARING] = Balance()
    balances[_FEE] = Balance()
    return balances


def _reserve_state(legs: list[Transfer]) -> LedgerState:
    members = sorted({leg.debit_account for leg in legs})
    usage = {u.key: 0 for leg in legs for u in leg.limits}
    return LedgerState(balances=_balances(members), usage=usage, pendings={}, known={}, now_us=_NOW_US)


def _post_state(legs: list[Transfer]) -> LedgerState:
    """The state ``LedgerTx._load`` builds to post ``legs``: their pending records, no usage keys."""
    pendings = {
        leg.id: PendingRecord(
            leg.debit_account,
            leg.credit_account,
            leg.amount,
            _NOW_US + _TIMEOUT_US,
            leg.limits,
            code=leg.code,
            agreement_id=leg.agreement_id,
            link_hash=leg.link_hash,
        )
        for leg in legs
    }
    members = sorted({leg.debit_account for leg in legs})
    balances = _balances(members)
    for leg in legs:
        balances[leg.debit_account].debits_pending += leg.amount
        balances[leg.credit_account].credits_pending += leg.amount
    return LedgerState(balances=balances, usage={}, pendings=pendings, known={}, now_us=_NOW_US + 1)


def _timed(requests: list[Transfer], state: LedgerState) -> tuple[float, list[Outcome]]:
    started = time.process_time()
    outcomes = apply(requests, state)
    return time.process_time() - started, outcomes


def run_once(batches: int, size: int) -> dict[str, float]:
    """Microseconds per leg for reserving and for posting ``batches`` batches, and the reference."""
    reserve_s = post_s = 0.0
    legs = 0
    reference: list[float] = []
    gc.collect()
    for batch in range(batches):
        # Interleaved with the batches, so that the reference sees the machine the batches saw.
        reference += _reference_units(_REFERENCE_UNITS_PER_BATCH)
        reserve = _reserve_legs(batch, size)
        seconds, outcomes = _timed(reserve, _reserve_state(reserve))
        if not all(o.ok for o in outcomes):
            raise SystemExit(f"reserve batch {batch}: a leg was refused ({outcomes})")
        reserve_s += seconds
        post = _post_legs(reserve)
        seconds, outcomes = _timed(post, _post_state(reserve))
        if not all(o.ok for o in outcomes):
            raise SystemExit(f"post batch {batch}: a leg was refused ({outcomes})")
        post_s += seconds
        legs += len(reserve)
    reserve_us, post_us = reserve_s * 1e6 / legs, post_s * 1e6 / legs
    unit_us = statistics.median(reference) * 1e6
    return {
        "reserve_us_per_leg": round(reserve_us, 2),
        "post_us_per_leg": round(post_us, 2),
        "reference_unit_us": round(unit_us, 2),
        "reserve_ratio": round(reserve_us / unit_us, 3),
        "post_ratio": round(post_us / unit_us, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=250, help="transfers per batch (2 legs each)")
    args = parser.parse_args()
    if min(args.runs, args.batches, args.batch) < 1:
        parser.error("--runs, --batches and --batch must be >= 1")
    runs = [run_once(args.batches, args.batch) for _ in range(args.runs)]
    report: dict[str, Any] = {
        "workload": (
            f"{args.batches} batches x {args.batch} transfers (2 linked pending legs each, 3 caps on "
            "the debit leg), then their post legs; ledger_rules.apply only, in memory"
        ),
        "reference_unit": f"{_REFERENCE_LOOPS} iterations of 'total += i % 7'",
        "runs": runs,
        "median": {key: statistics.median(r[key] for r in runs) for key in runs[0]},
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
