"""The ClientApp zygote: the node's ``flwr-clientapp`` launcher run in a fork of a warm parent.

A real zygote process and the real launcher script; the launcher's own check of the FAB hash runs
in the forked child (a SuperNode end to end, refusing an unapproved app through it, is in
``tests/deploy/test_approved_apps_and_secure_sum.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from participant_node.approved_apps import write_launcher
from participant_node.clientapp_zygote import SOCKET_ENV


@pytest.fixture
def zygote() -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    folder = Path(tempfile.mkdtemp(prefix="lf-zygote-"))  # a Unix socket path has at most 108 bytes
    sock = folder / "zygote.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "participant_node.clientapp_zygote", str(sock), str(os.getpid())],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not sock.exists():
        assert process.poll() is None and time.monotonic() < deadline, "the zygote did not start"
        time.sleep(0.2)
    yield process, sock
    process.terminate()
    process.wait(timeout=30)
    assert not sock.exists()  # it removes its socket on SIGTERM
    shutil.rmtree(folder, ignore_errors=True)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_the_launcher_runs_in_a_fork_of_the_zygote_with_its_own_streams_and_exit_code(
    zygote: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    process, sock = zygote
    launcher = write_launcher(tmp_path / "launcher")
    env = {**os.environ, SOCKET_ENV: str(sock)}
    helped = subprocess.run([launcher, "--help"], env=env, capture_output=True, text=True, timeout=60)
    # The child took on the arguments (``flwr-clientapp``, not the zygote's own) and the streams.
    assert helped.returncode == 0 and helped.stdout.startswith("usage: flwr-clientapp"), helped.stderr
    refused = subprocess.run([launcher, "--bad"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "flwr-clientapp: error" in refused.stderr
    # A client that is killed takes its ClientApp with it (this one would retry an unreachable runtime).
    client = subprocess.Popen(
        [launcher, "--token", "t", "--runtime-api-address", "127.0.0.1:1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not _children(process.pid):
        assert time.monotonic() < deadline, "the zygote did not fork a ClientApp"
        time.sleep(0.1)
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=10)
    deadline = time.monotonic() + 30
    while _children(process.pid):
        assert time.monotonic() < deadline, "the ClientApp outlived its client"
        time.sleep(0.1)
    assert process.poll() is None  # the zygote serves the next message


def test_without_a_zygote_the_launcher_runs_itself(tmp_path: Path) -> None:
    launcher = write_launcher(tmp_path / "launcher")
    env = {**os.environ, SOCKET_ENV: str(tmp_path / "absent.sock")}
    helped = subprocess.run([launcher, "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "usage: approved_apps.py" in helped.stdout, helped.stderr
