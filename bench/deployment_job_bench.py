"""Deployment engine vs simulation: the wall time of one 4-node churn job, measured in the same run.

Deployment: a loopback federation (``loyalfed.demo.loopback_federation``) — a coordinator with its
supervised SuperLink and one node per FreshMart store group with its own SuperNode, each a separate
process, TLS on every hop, SuperNode authentication on — is started once; every data officer signs
the churn policy with their own key; then each run submits the job through the API and times it
from submission to ``finished`` (the services are warm, as they are in production).

Simulation: the same job (same task, ε, rounds, local steps, seed, nodes) through
``loyalfed.federated_run.run_federated_job`` — Flower's simulation engine, started for the job as
``loyalfed train`` starts it — timed around that call.

Runs alternate (simulation, deployment, …) so that a change in the machine's load hits both. Prints
one JSON object (medians over ``--runs``, every run's time, the federation's start-up, the load
average and the CPU seconds of the whole benchmark) and writes it to ``--out`` for
``bench/control_plane_bench.py --deployment-report FILE``.

    .venv/bin/python bench/deployment_job_bench.py [--runs 3] [--rounds 8] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loyalfed.demo.job_policies import training_policy_document
from loyalfed.demo.loopback_federation import LoopbackFederation, PartnerSeat
from loyalfed.federated_run import JobPolicies, experiment_policies, run_federated_job
from policies.purpose import Purpose
from protocol import JobSpec

PARTNERS = ("freshmart-east", "freshmart-north", "freshmart-south", "freshmart-west")
TARGET_RATIO = 2.0
_POLICY_REFS = {"policy_id": "policy_id", "policy_version": "version", "policy_hash": "hash"}
# Each run spends ε at every node: the nodes' yearly cap (10 by default) must hold every run.
EPSILON = 1.0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _job_fields(rounds: int, seed: int) -> dict[str, Any]:
    return {
        "task": "churn",
        "epsilon": EPSILON,
        "delta": 1e-5,
        "rounds": rounds,
        "min_nodes": len(PARTNERS),
        "seed": seed,
        "round_timeout_s": 300.0,
    }


def _federation(work: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    from loyalfed.datasets.complete_journey import build_complete_journey_federation

    _say("building the Complete Journey federation (seed 7)")
    build_complete_journey_federation(work / "federation", seed=7)
    return work / "federation"


def _copy_partners(federation: Path, into: Path) -> Path:
    """A private copy of the federation: the runs' accountants and consent stores stay out of the source."""
    shutil.copytree(federation, into)
    return into


def _simulation_run(federation: Path, job: JobSpec, policies: JobPolicies) -> float:
    started = time.perf_counter()
    run_federated_job(federation, job, policies=policies, partner_ids=list(PARTNERS))
    return time.perf_counter() - started


def _deployment_run(federation: LoopbackFederation, policy: dict[str, Any], fields: dict[str, Any]) -> float:
    refs = {
        "policy_id": policy["policy_id"],
        "policy_version": policy["version"],
        "policy_hash": policy["hash"],
    }
    started = time.perf_counter()
    job_id = federation.submit({**fields, **refs})
    job = federation.wait_job(job_id, states={"finished", "failed", "stopped"}, timeout_s=900)
    seconds = time.perf_counter() - started
    if job["state"] != "finished":
        raise RuntimeError(f"deployment job {job_id} {job['state']}: {job.get('reason')}")
    return seconds


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    source = _federation(work, args.federation)
    simulation_dir = _copy_partners(source, work / "simulation-federation")
    deployment_dir = _copy_partners(source, work / "deployment-federation")
    fields = _job_fields(args.rounds, args.seed)
    load_before = os.getloadavg()
    seats = [PartnerSeat(p, deployment_dir / p) for p in PARTNERS]
    jobs = [JobSpec.model_validate({**fields, "job_id": f"bench-simulation-{i}"}) for i in range(args.runs)]
    # Every partner's officer approves the churn policy, as the deployment's officers sign theirs.
    approved = experiment_policies(
        simulation_dir, jobs, registry=work / "registry.sqlite", partner_ids=list(PARTNERS)
    )
    simulation_s, deployment_s = [], []
    with LoopbackFederation(work / "platform", seats, progress=_say) as federation:
        started = time.perf_counter()
        federation.start(timeout_s=300)
        start_up_s = time.perf_counter() - started
        policy = federation.draft_policy(training_policy_document(Purpose.CHURN_MODEL, PARTNERS))
        for partner in PARTNERS:
            federation.decide(partner, policy)
        for index in range(args.runs):
            simulation_s.append(_simulation_run(simulation_dir, jobs[index], approved))
            _say(f"run {index + 1}/{args.runs}: simulation {simulation_s[-1]:.1f} s")
            deployment_s.append(_deployment_run(federation, policy, fields))
            _say(f"run {index + 1}/{args.runs}: deployment {deployment_s[-1]:.1f} s")
    deployment, simulation = statistics.median(deployment_s), statistics.median(simulation_s)
    return {
        "benchmark": "deployment_vs_simulation",
        "job": fields,
        "nodes": len(PARTNERS),
        "runs": args.runs,
        "deployment_s": round(deployment, 2),
        "simulation_s": round(simulation, 2),
        "ratio": round(deployment / simulation, 2),
        "target_ratio": TARGET_RATIO,
        "meets_target": deployment / simulation <= TARGET_RATIO,
        "deployment_runs_s": [round(s, 2) for s in deployment_s],
        "simulation_runs_s": [round(s, 2) for s in simulation_s],
        "deployment_start_up_s": round(start_up_s, 2),
        "cpu_count": os.cpu_count(),
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        # This process and the processes it waited for (the federation's, after it stopped them).
        "benchmark_cpu_s": round(_cpu_seconds(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=8, help="training rounds of the job (the demo's 8)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--federation", type=Path, default=None, help="a built federation (default: build one)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory(prefix="deployment-bench-") as scratch:
        result = run(args, Path(scratch))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
