"""bench/psi_unbalanced_bench.py at a small size: correct against plain sets, honest JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "psi_unbalanced_bench.py"


def test_small_unbalanced_bench_is_correct_and_reports_both_protocols(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("psi_unbalanced_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "unbalanced.json"
    args = ["--big", "3000", "--partners", "200", "500", "--repeat", "2", "--workers", "1", "--out", str(out)]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert report["big"] == 3000 and "nothing extrapolated" in report["big_note"]
    assert report["epoch"]["tags_bytes"] == 3000 * 12 and report["epoch"]["bytes_per_member"] == 12
    assert "joined or left" in report["key_reuse_trade_off"]
    for row, size in zip(report["partners"], (200, 500), strict=True):
        assert row["size"] == size and row["shared"] == size // 2
        assert row["cached"]["correct"] and row["balanced"]["correct"]
        # Per session only the partner's elements cross, 32 bytes each way (plus a header).
        assert 64 <= row["cached"]["bytes_per_partner_item"] < 66
        assert row["balanced"]["bytes_to_initiator"] > 3000 * 32
