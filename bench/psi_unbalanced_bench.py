"""Unbalanced PSI: one large holder with a cached encrypted set against many small partners.

The holder (``--big`` members, 10^6 by default; ``--big 10000000`` for the issue's 10^7) pays a
one-off epoch cost: hash, blind and tag its whole set once (``psi.cached_set``), publishing
``tag_bytes`` per member. Each partner (``--partners`` sizes, 10^4 and 10^5 by default) then runs a
session that costs only its own set: it blinds its items, the holder re-blinds them with the epoch
key, the partner un-blinds and looks the tags up. For comparison the same sets run a fresh
balanced session (``psi.local_run.run_local``, both parties in this process over the real wire
encoding), which re-encrypts the big set every time. Both are checked against plain set
intersection.

Both parties run in this one process, one step after the other, so each step's wall and CPU time
(``time.process_time``, all threads) belong to one party. Nothing is extrapolated: the JSON names
the sizes that ran. Every figure is a median over ``--repeat`` runs (the epoch is encrypted once
per repeat).

    .venv/bin/python bench/psi_unbalanced_bench.py [--big 1000000] [--partners 10000 100000]
        [--overlap 0.5] [--repeat 3] [--balanced-group x25519|ristretto255] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from psi.cached_set import KEY_REUSE_TRADE_OFF, CachedSetHolder, CachedSetMatcher
from psi.group_engine import GroupEngine
from psi.local_run import run_local
from psi.ristretto255 import ELEMENT_BYTES
from psi.wire import PsiGroup

RESULTS = Path(__file__).resolve().parent / "results" / "psi_unbalanced_bench.json"
GROUPS = {"x25519": PsiGroup.X25519, "ristretto255": PsiGroup.RISTRETTO255}
T = TypeVar("T")


def holder_items(n: int) -> list[bytes]:
    return [b"holder-member-%010d" % i for i in range(n)]


def partner_items(big: int, n: int, overlap: float, partner: int) -> tuple[list[bytes], set[bytes]]:
    """``n`` items of which ``round(overlap * n)`` are the holder's (spread over its whole set)."""
    shared = min(round(overlap * n), big)
    stride = max(big // max(shared, 1), 1)
    mine = [b"holder-member-%010d" % (i * stride) for i in range(shared)]
    mine += [b"partner-%02d-member-%010d" % (partner, i) for i in range(n - shared)]
    return mine, set(mine[:shared])


def timed(step: Callable[[], T]) -> tuple[T, float, float]:
    """``(result, wall seconds, CPU seconds of this process's threads)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = step()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def cached_session(
    holder: CachedSetHolder, tags: Any, items: list[bytes], engine: GroupEngine
) -> tuple[set[bytes], dict[str, float]]:
    matcher = CachedSetMatcher(items, tags, engine=engine)
    query, q_wall, q_cpu = timed(matcher.query)
    answer, a_wall, a_cpu = timed(lambda: holder.answer(query))
    found, m_wall, m_cpu = timed(lambda: matcher.matches(answer))
    return {items[i] for i in found}, {
        "wall_s": q_wall + a_wall + m_wall,
        "cpu_s": q_cpu + a_cpu + m_cpu,
        "partner_cpu_s": q_cpu + m_cpu,
        "holder_cpu_s": a_cpu,
        "bytes_to_holder": len(query.encode()),
        "bytes_to_partner": len(answer.encode()),
    }


def balanced_session(
    big: list[bytes], items: list[bytes], group: PsiGroup, workers: int | None
) -> tuple[set[bytes], dict[str, float]]:
    run, wall, cpu = timed(lambda: run_local(items, big, group=group, workers=workers))
    found = {items[i] for i in run.initiator.matched_indices or ()}
    return found, {
        "wall_s": wall,
        "cpu_s": cpu,
        "bytes_to_responder": run.wire.to_responder,
        "bytes_to_initiator": run.wire.to_initiator,
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every float field; other fields (counts, flags) from the first run."""
    first = runs[0]
    return {k: statistics.median(r[k] for r in runs) if isinstance(v, float) else v for k, v in first.items()}


def run_once(args: argparse.Namespace, big: list[bytes]) -> dict[str, Any]:
    """One repeat: encrypt the epoch, then each partner's cached and balanced sessions."""
    with GroupEngine(args.workers) as engine:
        (holder, tags), wall, cpu = timed(
            lambda: CachedSetHolder.encrypt(big, epoch="bench", engine=engine, tag_bytes=args.tag_bytes)
        )
        report: dict[str, Any] = {"epoch": {"wall_s": wall, "cpu_s": cpu}, "partners": []}
        for index, size in enumerate(args.partners):
            items, expected = partner_items(len(big), size, args.overlap, index)
            found, cached = cached_session(holder, tags, items, engine)
            row = {"size": size, "shared": len(expected), "cached": {**cached, "correct": found == expected}}
            if not args.no_balanced:
                found_b, balanced = balanced_session(big, items, GROUPS[args.balanced_group], args.workers)
                row["balanced"] = {**balanced, "correct": found_b == expected}
            report["partners"].append(row)
            print(f"  partner {size:,}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return report


def summarise(args: argparse.Namespace, runs: list[dict[str, Any]], tag_count: int) -> dict[str, Any]:
    epoch = _median([r["epoch"] for r in runs])
    tags_bytes = tag_count * args.tag_bytes
    partners = []
    for i, size in enumerate(args.partners):
        row: dict[str, Any] = {"size": size, "shared": runs[0]["partners"][i]["shared"]}
        cached = _median([r["partners"][i]["cached"] for r in runs])
        cached["correct"] = all(r["partners"][i]["cached"]["correct"] for r in runs)
        cached["bytes_per_partner_item"] = (cached["bytes_to_holder"] + cached["bytes_to_partner"]) / size
        row["cached"] = cached
        if not args.no_balanced:
            balanced = _median([r["partners"][i]["balanced"] for r in runs])
            balanced["correct"] = all(r["partners"][i]["balanced"]["correct"] for r in runs)
            balanced["group"] = GROUPS[args.balanced_group].value
            row["balanced"] = balanced
            row["session_speedup_wall"] = balanced["wall_s"] / cached["wall_s"]
            saved = balanced["wall_s"] - cached["wall_s"]
            # Sessions in one epoch after which encrypting once has paid for itself.
            row["break_even_sessions"] = epoch["wall_s"] / saved if saved > 0 else None
        partners.append(row)
    return {
        "big": args.big,
        "big_note": f"measured at {args.big:,} holder members; nothing extrapolated",
        "cached_group": PsiGroup.RISTRETTO255.value,
        "tag_bytes": args.tag_bytes,
        "overlap": args.overlap,
        "repeats": args.repeat,
        "statistic": "median over repeats",
        "workers": args.workers or os.cpu_count(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "key_reuse_trade_off": KEY_REUSE_TRADE_OFF,
        "epoch": {
            **epoch,
            "tags_bytes": tags_bytes,
            "bytes_per_member": tags_bytes / tag_count if tag_count else 0.0,
            "element_bytes_not_sent": ELEMENT_BYTES,
        },
        "partners": partners,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=1_000_000, help="holder members (10^7: 10000000)")
    parser.add_argument("--partners", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--overlap", type=float, default=0.5, help="share of each partner set the holder has")
    parser.add_argument("--tag-bytes", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--balanced-group", choices=sorted(GROUPS), default="x25519")
    parser.add_argument("--no-balanced", action="store_true", help="skip the fresh balanced sessions")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    big = holder_items(args.big)
    runs = []
    for repeat in range(args.repeat):
        print(f"repeat {repeat + 1}/{args.repeat}: epoch of {args.big:,}", file=sys.stderr, flush=True)
        runs.append(run_once(args, big))
    report = summarise(args, runs, len(big))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    correct = [
        p["cached"]["correct"] and p.get("balanced", {}).get("correct", True) for p in report["partners"]
    ]
    return 0 if all(correct) else 1


if __name__ == "__main__":
    raise SystemExit(main())
