"""Audit-log benchmark: sustained batched append, whole-log verification, inclusion proofs.

Prints one JSON object (medians over ``--runs``) and compares it with the issue-6 targets:
append >= 20,000 events/s, verification of 10^6 events <= 10 s, one inclusion proof <= 1 ms.

    .venv/bin/python bench/audit_bench.py [--runs 3] [--verify-events 1000000] [--append-events 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from audit.audit_log import AuditLog, default_key_path
from audit.lineage_event import LineageEvent
from audit.log_verification import verify_log
from audit.merkle_tree import verify_inclusion
from audit.tree_head import load_or_create_signing_key

TARGETS = {"append_events_per_s": 20_000, "verify_1e6_seconds": 10.0, "inclusion_proof_ms": 1.0}
_T0 = datetime(2026, 3, 1, tzinfo=UTC)
_TYPES = ("job.round", "budget.charged", "psi.run", "consent.imported")


def _record(i: int) -> dict:
    return {
        "event_type": _TYPES[i % 4],
        "time": _T0 + timedelta(milliseconds=i),
        "actor": "coordinator",
        "role": "coordinator",
        "job_id": f"job-{i // 1000}",
        "partner": ("freshmart-north", "careplus", "fuelgo")[i % 3],
        "policy_hash": f"{i % 97:02x}" * 32,
        "inputs": [{"partner": "careplus", "fingerprint": f"{i % 251:02x}" * 32}],
        "epsilon": 0.01 * (i % 7),
        "details": {"round": i % 50, "clients": 6},
    }


def _events(count: int) -> list[LineageEvent]:
    return [LineageEvent.model_validate(_record(i)) for i in range(count)]


def bench_append(
    workdir: Path, events: list[LineageEvent], batch: int, *, validate: bool
) -> tuple[float, float]:
    """Events per wall second and per CPU second, appended in batches of ``batch`` (one transaction,
    one fsync and one signed tree head per batch)."""
    path = workdir / f"append-{time.perf_counter_ns()}.sqlite"
    records = [_record(i) for i in range(len(events))] if validate else []
    with AuditLog.open(path) as log:
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(events), batch):
            chunk = (
                [LineageEvent.model_validate(r) for r in records[start : start + batch]]
                if validate
                else events[start : start + batch]
            )
            log.append_batch(chunk)
        return len(events) / (time.perf_counter() - started), len(events) / (time.process_time() - cpu)


def build_big_log(path: Path, count: int) -> None:
    template = _events(1000)
    with AuditLog.open(path) as log:
        for start in range(log.size, count, 10_000):
            log.append_batch([template[(start + j) % 1000] for j in range(min(10_000, count - start))])


def bench_proofs(path: Path, samples: int, rng: random.Random) -> tuple[float, float]:
    """Median ms to produce one inclusion proof, and to produce + verify it."""
    with AuditLog.open(path) as log:
        head = log.tree_head()
        produce, both = [], []
        for _ in range(samples):
            seq = rng.randrange(head.tree_size)
            t0 = time.perf_counter()
            proof = log.inclusion_proof(seq)
            t1 = time.perf_counter()
            assert verify_inclusion(log.entry(seq)[1], seq, head.tree_size, proof, head.root)
            t2 = time.perf_counter()
            produce.append((t1 - t0) * 1e3)
            both.append((t1 - t0 + t2 - t1) * 1e3)
    return statistics.median(produce), statistics.median(both)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--append-events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    parser.add_argument("--proof-samples", type=int, default=1000)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="Where to put the logs (default: a temp dir)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        events = _events(args.append_events)
        append = [bench_append(workdir, events, args.batch, validate=False) for _ in range(args.runs)]
        validated = [bench_append(workdir, events, args.batch, validate=True) for _ in range(args.runs)]
        big = workdir / "big.sqlite"
        started = time.perf_counter()
        build_big_log(big, args.verify_events)
        build_seconds = time.perf_counter() - started
        verify_times, verify_cpu = [], []
        for _ in range(args.runs):
            t0, c0 = time.perf_counter(), time.process_time()
            key = load_or_create_signing_key(default_key_path(big)).public_key()  # the writer's key
            report = verify_log(big, public_key=key)
            verify_times.append(time.perf_counter() - t0)
            verify_cpu.append(time.process_time() - c0)
            assert report.ok and report.tree_size == args.verify_events, report.as_dict()
        proofs = [bench_proofs(big, args.proof_samples, random.Random(run)) for run in range(args.runs)]
    result = {
        "runs": args.runs,
        "load_average_1m_at_end": None,  # filled below: the machine is shared, wall times are noisy
        "batch": args.batch,
        "append_events": args.append_events,
        "append_events_per_s": round(statistics.median(w for w, _ in append)),
        "append_events_per_cpu_s": round(statistics.median(c for _, c in append)),
        "append_events_per_s_including_validation": round(statistics.median(w for w, _ in validated)),
        "append_events_per_cpu_s_including_validation": round(statistics.median(c for _, c in validated)),
        "verify_events": args.verify_events,
        "verify_seconds": round(statistics.median(verify_times), 3),
        "verify_cpu_seconds": round(statistics.median(verify_cpu), 3),
        "build_verify_log_events_per_s": round(args.verify_events / build_seconds),
        "inclusion_proof_ms": round(statistics.median(p for p, _ in proofs), 4),
        "inclusion_proof_and_verify_ms": round(statistics.median(b for _, b in proofs), 4),
        "all_runs": {
            "append_events_per_s": [round(w) for w, _ in append],
            "append_events_per_s_including_validation": [round(w) for w, _ in validated],
            "verify_seconds": [round(x, 3) for x in verify_times],
        },
    }
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    scale = args.verify_events / 1_000_000
    result["targets"] = {
        "append_events_per_s >= 20000": bool(result["append_events_per_s"] >= TARGETS["append_events_per_s"]),
        "verify 1e6 events <= 10 s": scale == 1 and result["verify_seconds"] <= TARGETS["verify_1e6_seconds"],
        "inclusion proof <= 1 ms": result["inclusion_proof_ms"] <= TARGETS["inclusion_proof_ms"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
