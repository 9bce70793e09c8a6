"""Benchmark: Flower's simulation engine with 10, 100 and 1,000 store-group nodes over 10^6 members.

    python bench/scale_bench.py [--members 1000000] [--nodes 10 100 1000] [--rounds 2]
        [--work /tmp/scale-bench] [--out bench/results/scale_bench.json] [--reserve-gb 3] [--resume]
        [--fixed-split 1000]

One synthetic federation of ``--members`` members (``loyalfed.datasets.synthetic``, 10 store groups,
no member enrolled twice) is built once under ``--work`` (reused when it is there), then for each
node count N the *same* members are re-partitioned into N store-group folders (each member, with
their transactions, consents and campaigns, goes to one group). Each N runs in a fresh process: one
churn job of ``--rounds`` rounds through ``loyalfed.federated_run.run_federated_job`` — the
simulation engine (Ray, 2 CPUs), every node's real gate and Opacus DP-SGD, officer-approved policy —
so the figures are the product's, not a mock's.

With ``--fixed-split S`` each N runs instead on the first N store groups of the S-way split (members
per node fixed at members/S, the federation growing with N): how the cost grows with the nodes
alone, on the same folders the S-node run uses.

Measured per N: each round's wall time (the job's own round report: from sending the round's train
messages to aggregating the last reply) and CPU seconds (the whole process tree's — driver, Ray's
GCS, raylet and workers — sampled every second from /proc, over the round's window), the nodes'
DP-SGD CPU seconds per round (summed over nodes, as the nodes report them: the private steps, not
the data loading), the whole job's wall and CPU time, and the peak resident memory of the process
tree (every descendant's RSS summed, sampled every 0.5 s). ``seconds_per_round`` is the median over
the rounds (each does the same work). ``limits`` says, per N, where a round's CPU went: DP-SGD (the
same members at every N) against the rest, per node. A run is stopped (its process group
killed, reported as ``stopped``) when the machine's available memory falls below ``--reserve-gb``.

Prints JSON; writes it to ``--out`` and a plot beside it (same name, ``.png``): seconds per round and
peak memory against nodes, with the linear-growth reference from 100 nodes and the 24 GB target.
Targets: 1,000 nodes complete a round within 24 GB, and per-round time grows no worse than linearly
from 100 to 1,000 nodes (``growth_exponent_100_to_1000`` = log(t1000/t100)/log(10) <= 1, from the
medians of this invocation: measure both counts in one run, ``--nodes 100 1000``, so that both see
the same machine).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

TARGET_MEMORY_GB = 24.0
BASE_PARTNERS = 10
_KINDS = ("members", "transactions", "consents", "campaigns")


def build_base(work: Path, members: int, seed: int) -> Path:
    """The 10-store-group federation of ``members`` members (reused when already built)."""
    from loyalfed.datasets.synthetic import SynthConfig, generate_synthetic_federation

    base = work / f"base-{members}-{seed}"
    if (base / "synthetic_build.json").exists():
        return base
    config = SynthConfig(members=members, partners=BASE_PARTNERS, cross_enrolled_share=0.0, seed=seed)
    generate_synthetic_federation(base, config, on_progress=lambda done: _progress(f"synth {done:,}"))
    return base


def split_federation(base: Path, nodes: int) -> Path:
    """The base federation's members re-partitioned into ``nodes`` store groups (round robin)."""
    import pyarrow.parquet as pq

    if nodes % BASE_PARTNERS:
        raise ValueError(f"--nodes must be multiples of {BASE_PARTNERS}, got {nodes}")
    out = base.parent / f"{base.name}-{nodes}-nodes"
    if (out / "split.json").exists():
        return out
    per_base = nodes // BASE_PARTNERS
    for b, partner in enumerate(sorted(p for p in base.iterdir() if p.is_dir())):
        folders = [out / f"store-{b * per_base + g + 1:04d}" for g in range(per_base)]
        if all((f / f"{_KINDS[-1]}.parquet").exists() for f in folders):
            continue  # split by an earlier, interrupted run (the last kind is written last)
        members = pq.read_table(partner / "members.parquet", columns=["member_id"])["member_id"]
        for kind in _KINDS:
            if (partner / f"{kind}.parquet").exists():
                for g, part in _groups(pq.read_table(partner / f"{kind}.parquet"), members, per_base):
                    folder = out / f"store-{b * per_base + g + 1:04d}"
                    folder.mkdir(parents=True, exist_ok=True)
                    pq.write_table(part, folder / f"{kind}.parquet")
        _progress(f"split {partner.name} into {per_base}")
    (out / "split.json").write_text(json.dumps({"base": str(base), "nodes": nodes}) + "\n")
    return out


def _groups(table: Any, members: Any, groups: int) -> Any:
    """(group, rows) of ``table``: a member's rows go to group (member's position mod ``groups``)."""
    import pyarrow.compute as pc

    group = pc.cast(pc.index_in(table["member_id"], value_set=members), "int64")
    group = pc.subtract(group, pc.multiply(pc.divide(group, groups), groups))  # integer mod
    order = pc.sort_indices(group)
    ordered, keys = table.take(order), group.take(order)
    bounds = pc.value_counts(keys).to_pylist()
    start = 0
    for entry in sorted(bounds, key=lambda e: e["values"]):
        yield int(entry["values"]), ordered.slice(start, entry["counts"])
        start += entry["counts"]


def _progress(text: str) -> None:
    print(f"[scale-bench] {text}", file=sys.stderr, flush=True)


def run_one(federation: Path, nodes: int, rounds: int, result: Path, *, first_only: bool = False) -> None:
    """In this (fresh) process: one churn job over every store group (or the first ``nodes``)."""
    from coordinator.job_outcome import RoundReport
    from loyalfed.federated_run import experiment_policies, run_federated_job
    from protocol import JobSpec

    # A fresh job id every run: each node keeps the replies it released and the ε it charged per job
    # (its round replies and accountant, in the partner folder), so running job "scale-N" again over
    # the same folders would be answered from the kept replies, or refused over its ε cap.
    job_id = f"scale-{nodes}-{time.strftime('%Y%m%dT%H%M%S')}"
    job = JobSpec(job_id=job_id, rounds=rounds, min_nodes=nodes, round_timeout_s=7200.0)
    chosen = sorted(p.name for p in federation.iterdir() if p.is_dir())[:nodes] if first_only else None
    with tempfile.TemporaryDirectory(prefix="scale-registry-") as registry:
        policies = experiment_policies(
            federation, [job], registry=Path(registry) / "policies.sqlite", partner_ids=chosen
        )
        reports: list[RoundReport] = []
        trace = _CpuTrace()
        round_cpu: list[float] = []

        def on_round(report: RoundReport) -> None:
            reports.append(report)
            end = time.monotonic()
            round_cpu.append(trace.between(end - report.seconds, end))
            _progress(f"{nodes} nodes: round {report.server_round} in {report.seconds:.1f} s")

        started = time.perf_counter()
        run = run_federated_job(federation, job, policies=policies, on_round=on_round, partner_ids=chosen)
        seconds = time.perf_counter() - started
        trace.stop()
    result.write_text(
        json.dumps(
            {
                "job_seconds": round(seconds, 1),
                "rounds": [
                    {
                        "round": r.server_round,
                        "seconds": round(r.seconds, 2),
                        "nodes_ok": r.nodes_ok,
                        "nodes_failed": r.nodes_failed,
                        "node_cpu_seconds": round(r.node_cpu_seconds, 1),
                        "cpu_seconds": round(cpu, 1),
                    }
                    for r, cpu in zip(reports, round_cpu, strict=True)
                ],
                "card_nodes": len(run.outcome.nodes),
            }
        )
    )


class _CpuTrace:
    """CPU seconds of this process and its descendants (Ray's GCS, raylet, workers), sampled every
    second on a thread, so that a round's CPU is the difference across its window."""

    def __init__(self, period_s: float = 1.0) -> None:
        self._samples: list[tuple[float, float]] = []
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.is_set():
            self._seen.update(_tree_sample(os.getpid())[1])
            self._samples.append((time.monotonic(), sum(self._seen.values())))
            self._stop.wait(period_s)

    def between(self, start: float, end: float) -> float:
        """CPU seconds used between two ``time.monotonic()`` moments (interpolated between samples)."""
        import numpy as np

        if not self._samples:
            return 0.0
        times, totals = zip(*self._samples, strict=True)
        return float(np.interp(end, times, totals) - np.interp(start, times, totals))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _tree_sample(root: int) -> tuple[int, dict[int, float]]:
    """RSS of ``root`` and all its descendants, and each one's CPU seconds so far, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    rss, cpu, stack = 0, {}, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime (proc(5))
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, cpu


_TICKS = os.sysconf("SC_CLK_TCK")


def _load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def measure(
    federation: Path, nodes: int, rounds: int, *, reserve_gb: float, timeout_s: float, first_only: bool
) -> dict[str, Any]:
    """Run ``run_one`` in a child process group; sample its tree's memory until it ends."""
    with tempfile.TemporaryDirectory(prefix="scale-result-") as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, __file__, "--one", str(nodes), "--federation", str(federation),
                   "--rounds", str(rounds), "--result", str(result)]  # fmt: skip
        command += ["--first-only"] if first_only else []
        child = subprocess.Popen(command, start_new_session=True)
        peak, status, started = 0, "finished", time.monotonic()
        cpu: dict[int, float] = {}  # the last CPU seconds seen of every process of the tree
        while child.poll() is None:
            rss, now = _tree_sample(child.pid)
            peak = max(peak, rss)
            cpu.update(now)
            if _available_bytes() < reserve_gb * 2**30:
                status = "stopped: the machine's available memory fell below the reserve"
            elif time.monotonic() - started > timeout_s:
                status = f"stopped: over {timeout_s:.0f} s"
            if status != "finished":
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                break
            time.sleep(0.5)
        if status == "finished" and child.returncode != 0:
            status = f"failed: exit code {child.returncode}"
        figures: dict[str, Any] = json.loads(result.read_text()) if result.exists() else {}
    round_figures = figures.get("rounds", [])
    cpu_per_round = [r["cpu_seconds"] for r in round_figures]
    # Every training round does the same work (each node loads, gates and trains on its members),
    # so the median is over all of them; the workers' one-off start-up falls in the rounds before.
    seconds = [r["seconds"] for r in round_figures]
    dp_sgd = [r["node_cpu_seconds"] for r in round_figures]
    return {
        "nodes": nodes,
        "members_per_node": None,
        "status": status,
        "peak_rss_gb": round(peak / 2**30, 2),
        "round_seconds": seconds,
        "seconds_per_round": round(statistics.median(seconds), 2) if seconds else None,
        "dp_sgd_cpu_seconds_per_round": round(statistics.median(dp_sgd), 1) if dp_sgd else None,
        "cpu_seconds_per_round": round(statistics.median(cpu_per_round), 1) if cpu_per_round else None,
        "cpu_seconds": round(sum(cpu.values()), 1),
        **{k: v for k, v in figures.items() if k != "card_nodes"},
    }


def _growth(by_nodes: dict[int, dict[str, Any]], low: int, high: int) -> float | None:
    a, b = by_nodes.get(low, {}).get("seconds_per_round"), by_nodes.get(high, {}).get("seconds_per_round")
    return round(math.log(b / a) / math.log(high / low), 3) if a and b else None


def _limits(results: list[dict[str, Any]]) -> dict[str, str]:
    """Where each measured count's round goes: the DP-SGD steps (the same members every count, so
    the same CPU in total) and the rest, per node (loading, gate, features, messages, Ray)."""
    out = {}
    for r in results:
        cpu, dp_sgd, wall = (
            r.get("cpu_seconds_per_round"),
            r.get("dp_sgd_cpu_seconds_per_round"),
            r["seconds_per_round"],
        )
        if cpu and wall and dp_sgd is not None:
            out[str(r["nodes"])] = (
                f"{cpu:.0f} CPU s per round over {wall:.0f} s ({cpu / wall:.1f} cores busy): "
                f"{dp_sgd / cpu:.0%} DP-SGD, {(cpu - dp_sgd) / r['nodes']:.2f} CPU s per node besides"
            )
    return out


def _memory_target_met(figures: dict[str, Any] | None) -> bool | None:
    """1,000 nodes completed a round within 24 GB (None: not measured)."""
    if figures is None or not figures["round_seconds"]:
        return None
    return bool(figures["peak_rss_gb"] <= TARGET_MEMORY_GB)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in results if r["seconds_per_round"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog([r["nodes"] for r in done], [r["seconds_per_round"] for r in done], "o-", label="measured")
    ref = next((r for r in done if r["nodes"] == 100), done[0] if done else None)
    if ref is not None:
        xs = [r["nodes"] for r in done]
        left.loglog(xs, [ref["seconds_per_round"] * x / ref["nodes"] for x in xs], "--", label="linear")
    left.set(xlabel="store-group nodes", ylabel="seconds per round", title="Round wall time")
    left.legend()
    right.semilogx([r["nodes"] for r in results], [r["peak_rss_gb"] for r in results], "o-")
    right.axhline(TARGET_MEMORY_GB, color="red", linestyle="--", label="24 GB target")
    right.set(xlabel="store-group nodes", ylabel="peak RSS of the process tree (GB)", title="Peak memory")
    right.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "scale-bench")
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale_bench.json"))
    parser.add_argument("--reserve-gb", type=float, default=3.0)
    parser.add_argument("--timeout-s", type=float, default=5400.0, help="per node count")
    parser.add_argument(
        "--resume", action="store_true", help="keep --out's figures for node counts not run again"
    )
    parser.add_argument(
        "--fixed-split", type=int, help="run each --nodes count on the first N groups of this split"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--first-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--federation", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        run_one(args.federation, args.one, args.rounds, args.result, first_only=args.first_only)
        return
    started, load_at_start = time.perf_counter(), _load_average()
    base = build_base(args.work, args.members, args.seed)
    results = _kept_results(args.out, args.nodes) if args.resume else []
    for nodes in args.nodes:
        federation = split_federation(base, args.fixed_split or nodes)
        _progress(f"{nodes} nodes: running {args.rounds} rounds")
        load = _load_average()
        figures = measure(
            federation,
            nodes,
            args.rounds,
            reserve_gb=args.reserve_gb,
            timeout_s=args.timeout_s,
            first_only=args.fixed_split is not None,
        )
        figures["members_per_node"] = args.members // (args.fixed_split or nodes)
        figures["load_average_before"], figures["load_average_after"] = load, _load_average()
        results.append(figures)
        _progress(json.dumps(figures))
        # After every node count: a stopped bench keeps its figures.
        write_report(args, results, started, load_at_start)


def _kept_results(out: Path, rerun: list[int]) -> list[dict[str, Any]]:
    """The figures an earlier run wrote to ``out`` for node counts this run does not measure again."""
    if not out.exists():
        return []
    return [r for r in json.loads(out.read_text())["results"] if r["nodes"] not in rerun]


def write_report(
    args: argparse.Namespace, results: list[dict[str, Any]], started: float, load_at_start: float
) -> None:
    """Print the JSON report and write it, with its plot, beside ``--out``."""
    results = sorted(results, key=lambda r: int(r["nodes"]))
    by_nodes = {r["nodes"]: r for r in results}
    report = {
        "benchmark": "scale_bench",
        "members": args.members,
        "fixed_split": args.fixed_split,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "load_average_at_end": _load_average(),
        "results": results,
        "growth_exponent_100_to_1000": _growth(by_nodes, 100, 1000),
        # Between consecutive node counts measured: 1 is linear.
        "growth_exponents": {
            f"{a}-{b}": _growth(by_nodes, a, b) for a, b in itertools.pairwise(sorted(by_nodes))
        },
        "load_average_at_start": load_at_start,
        "limits": _limits(results),
        "target_memory_gb": TARGET_MEMORY_GB,
        "memory_target_met": _memory_target_met(by_nodes.get(1000)),
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(report, indent=2), flush=True)


if __name__ == "__main__":
    main()
