"""Points interchange throughput between two nodes on loopback over mTLS; prints JSON.

Two node processes (``participant_node.points.runner``), synthetic partners with linked members and
accrued opening balances. A client submits conversions to the source node through its operator
endpoint, from many threads at once, each with an id minted as the node's docs ask of clients
(``transfer_ids.new_transfer_id``: time-ordered):

- ``single``: one transfer per request (each request waits for its own outcome);
- ``batched``: ``--batch`` transfers per request, each thread sending at least
  ``--batches-per-thread`` full batches (so at least threads x batch x batches-per-thread
  transfers: a run of one partial batch per thread measures start-up, not batching);
- ``faults``: single requests again, with the seeded fault plan dropping, duplicating and
  reordering the nodes' messages to each other.

A transfer counts as committed when the source posted it and the destination's ledger has posted
the credit too (the clock stops when both nodes have nothing pending and nothing in their outbox).
Each mode runs ``--runs`` times on fresh nodes; the medians are reported with every run.

    python bench/points_bench.py [--transfers 3000] [--runs 3] [--threads 32] [--batch 100]
                                 [--batches-per-thread 4] [--synchronous FULL|NORMAL]
                                 [--transfers-in-flight N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loyalfed.points_cluster import PointsCluster
from loyalfed.points_federation import LOOPBACK, prepare_synthetic_pair
from participant_node.points.node_settings import PointsNodeSettings
from participant_node.points.transfer_ids import new_transfer_id

TARGETS = {"single": 500.0, "batched": 2_000.0}
_DEFAULT_IN_FLIGHT = PointsNodeSettings.model_fields["transfers_in_flight"].default


def _drained(cluster: PointsCluster, a: str, b: str) -> bool:
    sa, sb = cluster.call(a, "GET", "/points/v1/status"), cluster.call(b, "GET", "/points/v1/status")
    busy = (
        sa.get("outbox", 0)
        + sb.get("outbox", 0)
        + sa.get("source_reserved", 0)
        + sb.get("destination_reserved", 0)
    )
    return busy == 0


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_cpu_s(cluster: PointsCluster, a: str, b: str) -> dict[str, float | None]:
    """CPU seconds so far of the client (this process: its submitting threads), the source node
    and the destination node."""
    return {
        "client": time.process_time(),
        "source": _cpu_s(cluster.processes[a].pid),
        "destination": _cpu_s(cluster.processes[b].pid),
    }


def _ms_per_transfer(
    before: dict[str, float | None], after: dict[str, float | None], committed: int
) -> dict[str, float | None]:
    used: dict[str, float | None] = {}
    for name, start in before.items():
        end = after[name]
        used[name] = (
            None if start is None or end is None else round((end - start) * 1000 / max(committed, 1), 3)
        )
    parts = [v for v in used.values() if v is not None]
    used["total"] = round(sum(parts), 3) if len(parts) == len(before) else None
    return used


def _projected_quiet_per_s(cpu_ms: dict[str, float | None]) -> float | None:
    """A projection, not a measurement: the rate if this machine's cores did nothing else and CPU
    were the only limit (cores / CPU seconds per committed transfer, all three processes)."""
    total = cpu_ms.get("total")
    return round((os.cpu_count() or 1) * 1000 / total, 1) if total else None


def _load() -> list[float]:
    """``uptime``'s load averages (1, 5, 15 minutes)."""
    return [round(v, 2) for v in os.getloadavg()]


class _OperatorConnection:
    """One submitting thread's keep-alive HTTPS connection to the source node, presenting the
    operator's certificate (mutual TLS, verified against the federation CA): the standard
    library's ``http.client``, whose per-request cost is a fraction of httpx's, so the client's
    share of the 2 cores stays small. Its CPU is counted (the client row)."""

    def __init__(self, cluster: PointsCluster, partner: str) -> None:
        port = cluster.pair.ports[partner]
        self._conn = http.client.HTTPSConnection(
            LOOPBACK, port, context=cluster.tls_context(partner), timeout=120
        )

    def post(self, path: str, body: Any) -> Any:
        payload = json.dumps(body).encode()
        self._conn.request("POST", path, payload, {"content-type": "application/json"})
        response = self._conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {response.status} {data[:200]!r}")
        return json.loads(data)

    def close(self) -> None:
        self._conn.close()


def _submit(
    cluster: PointsCluster, a: str, b: str, members: list[str], jobs: list[int], batch: int, mode: str
) -> int:
    posted = 0
    client = _OperatorConnection(cluster, a)
    try:
        for start in range(0, len(jobs), batch):
            part = jobs[start : start + batch]
            items = [
                {
                    "member_id": members[j % len(members)],
                    "to": b,
                    "points": 250,
                    "transfer_id": new_transfer_id(),
                }
                for j in part
            ]
            if batch == 1:
                receipts = [client.post("/points/v1/transfers", items[0])]
            else:
                receipts = client.post("/points/v1/transfers/batch", {"items": items})["receipts"]
            posted += sum(r["state"] == "posted" for r in receipts)
    finally:
        client.close()
    return posted


def run_once(
    mode: str,
    *,
    transfers: int,
    threads: int,
    batch: int,
    seed: int,
    synchronous: str,
    in_flight: int | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="points-bench-") as tmp:
        root = Path(tmp)
        pair = prepare_synthetic_pair(
            root,
            members=2_000,
            shared=1_500,
            synchronous=synchronous,
            fault_seed=seed if mode == "faults" else None,
            audit=True,
            transfers_in_flight=in_flight,
        )
        a, b = pair.agreement.partners
        with PointsCluster(pair, log_dir=root / "logs") as cluster:
            cluster.start(a, wait_s=300)  # a loaded machine starts processes slowly
            cluster.start(b, wait_s=300)
            linked = cluster.call(a, "POST", "/points/v1/links", json={"peer": b})["linked"]
            members = [f"FM-{i:07d}" for i in range(500, 2_000)]
            size = batch if mode == "batched" else 1
            shares = [list(range(t, transfers, threads)) for t in range(threads)]
            results = [0] * threads

            def work(k: int) -> None:
                results[k] = _submit(cluster, a, b, members, shares[k], size, mode)

            load_before = _load()
            cpu_before = _process_cpu_s(cluster, a, b)
            started = time.perf_counter()
            workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            while not _drained(cluster, a, b):
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            cpu_after = _process_cpu_s(cluster, a, b)
            status = cluster.call(b, "GET", "/points/v1/status")
    committed = status.get("destination_posted", 0)
    cpu_ms = _ms_per_transfer(cpu_before, cpu_after, committed)
    nodes = (cpu_ms["source"] or 0) + (cpu_ms["destination"] or 0)
    return {
        "mode": mode,
        "linked": linked,
        "submitted": transfers,
        "committed": committed,
        "posted_at_source": sum(results),
        "seconds": round(seconds, 3),
        "committed_per_s": round(committed / seconds, 1),
        # CPU per committed transfer in each process: what the protocol costs, whatever else the
        # machine is running (the rate above is what a loaded machine left us).
        "cpu_ms_per_transfer": cpu_ms,
        "nodes_cpu_ms_per_transfer": round(nodes, 3),
        "projected_quiet_per_s": _projected_quiet_per_s(cpu_ms),
        "load_before": load_before,
        "load_after": _load(),
    }


def _cpu_reference_s() -> float:
    """Seconds for a fixed pure-Python workload in this run: the machine's speed (and load) right now."""
    started = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i % 7
    return round(time.perf_counter() - started, 3)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches-per-thread", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261206)
    # FULL is the nodes' default (a commit survives power loss); NORMAL survives a killed process
    # only (see docs/points_interchange.md, "Durability and throughput").
    parser.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    parser.add_argument("--modes", default="single,batched,faults")
    # The source's batches that may wait on the peer at once (the node setting; its default if absent).
    parser.add_argument("--transfers-in-flight", type=int, default=None)
    args = parser.parse_args()
    if min(args.transfers, args.threads, args.batch, args.batches_per_thread, args.runs) < 1:
        parser.error("--transfers, --threads, --batch, --batches-per-thread and --runs must be >= 1")
    batched_transfers = max(args.transfers, args.threads * args.batch * args.batches_per_thread)
    report: dict[str, Any] = {
        "transfers_per_run": args.transfers,
        "threads": args.threads,
        "batch": args.batch,
        "batched_transfers_per_run": batched_transfers,
        "fault_seed": args.seed,
        "sqlite_synchronous": args.synchronous,
        "transfers_in_flight": args.transfers_in_flight or _DEFAULT_IN_FLIGHT,
        "runs": {},
        "median_committed_per_s": {},
        "median_nodes_cpu_ms_per_transfer": {},
        "median_cpu_ms_per_transfer": {},
        "projected_quiet_per_s": {},
        "projection_note": (
            "projected_quiet_per_s is a projection, not a measurement: cores / CPU seconds per "
            "committed transfer of client + source + destination, as if nothing else ran and CPU "
            "were the only limit (fsync latency and the client's own share of the cores ignored)"
        ),
        "load_at_start": _load(),
    }
    for mode in args.modes.split(","):
        runs = [
            run_once(
                mode,
                transfers=batched_transfers if mode == "batched" else args.transfers,
                threads=args.threads,
                batch=args.batch,
                seed=args.seed + r,
                synchronous=args.synchronous,
                in_flight=args.transfers_in_flight,
            )
            for r in range(args.runs)
        ]
        report["runs"][mode] = runs
        report["median_committed_per_s"][mode] = statistics.median(r["committed_per_s"] for r in runs)
        report["median_nodes_cpu_ms_per_transfer"][mode] = statistics.median(
            r["nodes_cpu_ms_per_transfer"] for r in runs
        )
        report["median_cpu_ms_per_transfer"][mode] = {
            name: _median([r["cpu_ms_per_transfer"][name] for r in runs])
            for name in ("client", "source", "destination", "total")
        }
        report["projected_quiet_per_s"][mode] = _projected_quiet_per_s(
            report["median_cpu_ms_per_transfer"][mode]
        )
        print(f"{mode}: {[r['committed_per_s'] for r in runs]}", file=sys.stderr)
    report["targets_per_s"] = TARGETS
    report["cpu_reference_s"] = _cpu_reference_s()  # compare runs on different or busy machines
    report["load_average_1m"] = round(os.getloadavg()[0], 2)
    report["load_at_end"] = _load()
    report["cpus"] = os.cpu_count()
    report["meets_targets"] = {
        m: report["median_committed_per_s"].get(m, 0) >= t
        for m, t in TARGETS.items()
        if m in report["median_committed_per_s"]
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
