"""Peak memory of `loyalfed data validate` against the size of the file it checks (CSV and Parquet).

Builds one partner folder per format whose transactions file is at least ``--size-mb`` MB
(default 512), then runs the real command (``python -m loyalfed.cli``-style entry point, one fresh
process per run) several times and reports the median peak resident set size. The reference,
measured in the same run, is the same command on a tiny folder: what the interpreter and its
libraries take before any data is read. Prints JSON:

    {"csv": {"file_bytes", "folder_bytes", "peak_rss_bytes", "ratio_to_file", "ratio_to_file_net", ...},
     "parquet": {...}, "baseline_rss_bytes", "runs", "target_ratio": 2.0, "ok"}

``ratio_to_file`` is peak RSS / transactions file size (the interpreter included); ``_net`` takes
the tiny-folder baseline off first.

    timeout 3600 .venv/bin/python bench/validate_memory.py --size-mb 512 --runs 3
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

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

TARGET_RATIO = 2.0
_MEMBERS = 200_000
_CHUNK_ROWS = 1_000_000
_START = np.datetime64("2017-01-01T00:00:00", "us")
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
    "print(done.returncode, peak)\n"
)


def _member_ids(count: int) -> list[str]:
    return [f"M-{n:08d}" for n in range(count)]


def _write_small_files(folder: Path, members: int) -> None:
    ids = _member_ids(members)
    table = pa.table(
        {
            "member_id": ids,
            "phone": [f"+86138{n:08d}" for n in range(members)],
            "joined_at": pa.array(np.full(members, _START - np.timedelta64(400, "D")), pa.timestamp("us")),
        }
    )
    pa_csv.write_csv(table, folder / "members.csv")
    consents = pa.table(
        {
            "member_id": ids,
            "purpose": ["analytics.churn_model"] * members,
            "granted_at": pa.array(np.full(members, _START - np.timedelta64(300, "D")), pa.timestamp("us")),
        }
    )
    pa_csv.write_csv(consents, folder / "consents.csv")


def _transactions(rng: np.random.Generator, rows: int, members: int) -> pa.Table:
    member = rng.integers(0, members, rows)
    seconds = rng.integers(0, 3 * 365 * 86_400, rows).astype("timedelta64[s]")
    amount = np.round(np.exp(rng.normal(3.0, 0.8, rows)), 2)
    return pa.table(
        {
            "member_id": pa.array(np.char.add("M-", np.char.zfill(member.astype("U8"), 8))),
            "timestamp": pa.array(_START + seconds.astype("timedelta64[us]"), pa.timestamp("us")),
            "amount": amount,
            "quantity": rng.integers(1, 5, rows).astype("float64"),
            "store_id": pa.array(np.char.add("S", rng.integers(1, 400, rows).astype("U3"))),
            "category": pa.array(
                rng.choice(np.array(["GROCERY", "PRODUCE", "MEAT", "DRUG GM", "DELI"]), rows)
            ),
        }
    )


def build_folder(root: Path, fmt: str, size_bytes: int, *, seed: int = 7) -> Path:
    """A partner folder whose transactions file (CSV or Parquet) is at least ``size_bytes`` long."""
    folder = root / f"partner-{fmt}"
    folder.mkdir(parents=True)
    _write_small_files(folder, _MEMBERS)
    rng = np.random.default_rng(seed)
    path = folder / f"transactions.{fmt}"
    if fmt == "csv":
        with pa_csv.CSVWriter(path, _transactions(rng, 1, _MEMBERS).schema) as writer:
            while path.stat().st_size < size_bytes:
                writer.write_table(_transactions(rng, _CHUNK_ROWS, _MEMBERS))
    else:
        with pq.ParquetWriter(path, _transactions(rng, 1, _MEMBERS).schema) as writer:
            while path.stat().st_size < size_bytes:
                writer.write_table(_transactions(rng, _CHUNK_ROWS, _MEMBERS), row_group_size=_CHUNK_ROWS)
    return folder


def peak_rss(folder: Path) -> tuple[int, float]:
    """Peak RSS (bytes) and seconds of one fresh `loyalfed data validate FOLDER --json` process."""
    command = [
        sys.executable,
        "-c",
        "from loyalfed.cli import main; main()",
        "data",
        "validate",
        str(folder),
        "--json",
    ]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - started
    code, peak = done.stdout.split()
    if int(code) not in (0, 1):  # 1: some rows unusable; 2 would mean the file could not be read
        raise RuntimeError(f"validate exited {code} on {folder}")
    return int(peak), seconds


def _median_run(folder: Path, runs: int) -> tuple[int, float]:
    measured = [peak_rss(folder) for _ in range(runs)]
    return int(statistics.median(m[0] for m in measured)), statistics.median(m[1] for m in measured)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512, help="Smallest transactions file, MB.")
    parser.add_argument("--runs", type=int, default=3, help="Runs per format (median reported).")
    parser.add_argument("--formats", default="csv,parquet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="validate-memory-") as tmp:
        root = Path(tmp)
        tiny = root / "tiny"
        tiny.mkdir()
        _write_small_files(tiny, 100)
        pa_csv.write_csv(_transactions(np.random.default_rng(1), 100, 100), tiny / "transactions.csv")
        baseline, _ = _median_run(tiny, args.runs)
        result: dict[str, object] = {
            "baseline_rss_bytes": baseline,
            "runs": args.runs,
            "target_ratio": TARGET_RATIO,
        }
        ok = True
        for fmt in args.formats.split(","):
            folder = build_folder(root, fmt, args.size_mb * 1_000_000)
            file_bytes = (folder / f"transactions.{fmt}").stat().st_size
            folder_bytes = sum(p.stat().st_size for p in folder.iterdir())
            peak, seconds = _median_run(folder, args.runs)
            rows = (
                pq.ParquetFile(folder / "transactions.parquet").metadata.num_rows
                if fmt == "parquet"
                else None
            )
            result[fmt] = {
                "file_bytes": file_bytes,
                "folder_bytes": folder_bytes,
                "transaction_rows": rows,
                "peak_rss_bytes": peak,
                "ratio_to_file": round(peak / file_bytes, 3),
                "ratio_to_file_net": round((peak - baseline) / file_bytes, 3),
                "ratio_to_folder": round(peak / folder_bytes, 3),
                "median_seconds": round(seconds, 1),
            }
            ok = ok and peak / file_bytes <= TARGET_RATIO
            for path in folder.iterdir():
                path.unlink()
        result["ok"] = ok
        _ = resource  # the measuring child process uses it; imported here so the bench fails fast without it
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
