"""Benchmark `loyalfed data synth`: wall time and peak memory for 10^6 members (target < 120 s).

    python bench/synth_bench.py [--members 1000000] [--partners 4] [--runs 3]

Each run is a fresh process (so its peak RSS is its own) writing into a temporary folder that
is deleted afterwards. Prints JSON: every run, and the median seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 120.0


def one_run(members: int, partners: int, seed: int) -> dict[str, float | int]:
    """Generate once in this process; peak RSS is this process's maximum resident set size."""
    from loyalfed.datasets.synthetic import SynthConfig, generate_synthetic_federation

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu_before = _cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as folder:
        started = time.perf_counter()
        result = generate_synthetic_federation(
            Path(folder) / "federation", SynthConfig(members=members, partners=partners, seed=seed)
        )
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    rows = sum(sum(c.values()) for c in result.partners.values())
    return {
        "seconds": round(seconds, 2),
        # CPU time of this process (all threads): the work done, less sensitive to other load.
        "cpu_seconds": round(_cpu_seconds() - cpu_before, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mb": round(rss_before, 1),
        "rows_written": rows,
        "transactions": sum(c["transactions"] for c in result.partners.values()),
        "bytes_written": size,
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_average() -> float:
    return (
        round(float(Path("/proc/loadavg").read_text().split()[0]), 2)
        if Path("/proc/loadavg").exists()
        else -1.0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(one_run(args.members, args.partners, args.seed)))
        return
    runs = []
    for _ in range(args.runs):
        command = [sys.executable, __file__, "--single", "--members", str(args.members),
                   "--partners", str(args.partners), "--seed", str(args.seed)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        run = json.loads(done.stdout.strip().splitlines()[-1])
        run["load_average_after"] = _load_average()  # other processes on this (shared) machine
        runs.append(run)
    median_seconds = statistics.median(r["seconds"] for r in runs)
    report = {
        "benchmark": "synthetic federation generation",
        "members": args.members,
        "partners": args.partners,
        "runs": runs,
        "median_seconds": median_seconds,
        "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "median_peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "target_seconds": TARGET_SECONDS,
        "target_met": median_seconds < TARGET_SECONDS,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
