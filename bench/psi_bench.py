"""PSI throughput, bytes on the wire and peak memory, side by side with openmined-psi (RAW).

10^4, 10^5 and 10^6 items per side with 50% overlap by default; each party of each implementation
runs in its own process (see ``psi.benchmark``). Prints one JSON object and writes it to
bench/results/psi_bench.json. openmined-psi at 10^6 takes several minutes: ``--openmined-max``
caps the sizes it runs at.

    .venv/bin/python bench/psi_bench.py [--sizes 10000 100000 1000000] [--openmined-max 1000000]
        [--group x25519|ristretto255]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from psi.benchmark import run_benchmark
from psi.wire import DEFAULT_GROUP, PsiGroup

GROUPS = {"x25519": PsiGroup.X25519, "ristretto255": PsiGroup.RISTRETTO255}

RESULTS = Path(__file__).resolve().parent / "results" / "psi_bench.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--openmined-max", type=int, default=None, help="largest size to run openmined at")
    parser.add_argument("--no-openmined", action="store_true")
    default_group = next(name for name, group in GROUPS.items() if group == DEFAULT_GROUP)
    parser.add_argument("--group", choices=sorted(GROUPS), default=default_group, help="PSI group backend")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    report: dict = {}
    for size in args.sizes:  # one size at a time, the JSON rewritten after each: long runs keep partials
        part = run_benchmark(
            [size],
            overlap_fraction=args.overlap,
            compare_openmined=not args.no_openmined,
            openmined_max_size=args.openmined_max,
            progress=lambda text: print(text, file=sys.stderr, flush=True),
            group=GROUPS[args.group].value,
        )
        report = {**part, "results": report.get("results", []) + part["results"]}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
