"""`loyalfed node serve` from a fresh state folder: keys made, then one clear line on what is missing."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from node_service_fixtures import write_consenting_partner

from policies.signed_approval import generate_signing_key, write_key_pair

LOYALFED = Path(sys.executable).with_name("loyalfed")


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LOYALFED), "node", "serve", *args], capture_output=True, text=True, timeout=120
    )


def test_the_first_start_makes_keys_and_asks_for_the_signed_certificate(tmp_path: Path) -> None:
    partner = write_consenting_partner(tmp_path / "freshmart-north")
    _private, public = write_key_pair(generate_signing_key(), tmp_path / "officer")
    state = tmp_path / "state"
    result = _serve(
        "--partner-dir",
        str(partner),
        "--coordinator",
        "https://127.0.0.1:9",
        "--officer-public-key",
        str(public),
        "--state",
        str(state),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    stderr = " ".join(result.stderr.split())  # the console wraps long lines
    assert "no TLS certificate yet: send" in stderr and "to the federation CA (loyalfed pki sign)" in stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "keys" / "supernode").stat().st_mode) == 0o600
    assert (state / "tls" / "node.csr").read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST")


def test_bad_settings_are_one_line_errors(tmp_path: Path) -> None:
    result = _serve(
        "--partner-dir",
        str(tmp_path / "missing"),
        "--coordinator",
        "https://127.0.0.1:9",
        "--officer-public-key",
        str(tmp_path / "officer.pub"),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no such partner folder" in " ".join(result.stderr.split())
