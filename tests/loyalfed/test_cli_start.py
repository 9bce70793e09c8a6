"""Starting the command line: quiet, and without the training stack for commands that do not train."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The console script's own start: import the CLI, run `pki --help`, report which heavy modules
# the start pulled in. torch and Opacus cost seconds; a key or consent command must not pay them.
PROBE = """
import sys
from loyalfed.cli import main
sys.argv = ["loyalfed", "pki", "--help"]
try:
    main()
except SystemExit as exit:
    code = exit.code
print("exit", code, file=sys.stderr)
print("heavy", sorted(m for m in ("torch", "opacus", "flwr.simulation") if m in sys.modules), file=sys.stderr)
"""


def test_a_command_starts_without_protobuf_warnings_and_without_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    lines = done.stderr.splitlines()
    assert lines == ["exit 0", "heavy []"], done.stderr
    assert "init-ca" in done.stdout
