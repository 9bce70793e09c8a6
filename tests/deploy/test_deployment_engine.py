"""Flower's deployment engine on loopback with TLS: a real SuperLink, three real SuperNodes (one per
FreshMart store group), the loyalfed Flower App the package ships (``loyalfed/flower_app``) submitted
with ``flwr run``.

The ServerApp and ClientApp are the very ones the simulation runs; the job must finish and publish a
model with its card. Every process is killed in ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from coordinator.superlink_control import control_client, run_status
from loyalfed.flower_app import flower_app_dir

pytestmark = [pytest.mark.slow(seconds=270), pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODES = ("freshmart-north", "freshmart-south", "freshmart-east")


def reply_json(output: str) -> dict[str, object]:
    """The JSON object a ``flwr … --format json`` command printed (after any log lines)."""
    parsed = json.loads(output[output.index("{") :])
    assert isinstance(parsed, dict), output
    return parsed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    # A new session per process, so the whole tree (SuperExec, app processes) can be killed at once.
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_for_port(port: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def deployment(tmp_path: Path, cj_federation: Path) -> Iterator[tuple[Path, dict[str, str], Path]]:
    certs = tmp_path / "certs"
    subprocess.run(
        [sys.executable, str(REPO / "tests" / "deploy" / "one_machine_certificates.py"), "--out", str(certs)],
        check=True,
        capture_output=True,
    )
    home = tmp_path / "flwr-home"
    home.mkdir()
    port = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{port}"\n'
        f'root-certificates = "{certs / "ca.crt"}"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    processes = [
        _start(
            [
                str(BIN / "flower-superlink"),
                "--ssl-ca-certfile",
                str(certs / "ca.crt"),
                "--ssl-certfile",
                str(certs / "server.pem"),
                "--ssl-keyfile",
                str(certs / "server.key"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--disable-runtime-dependency-installation",
            ],
            tmp_path / "superlink.log",
            env,
        )
    ]
    try:
        _wait_for_port(port, timeout=120)
        for partner in NODES:
            shutil.copytree(cj_federation / partner, tmp_path / "nodes" / partner)
            processes.append(
                _start(
                    [
                        str(BIN / "flower-supernode"),
                        "--superlink",
                        f"127.0.0.1:{port}",
                        "--root-certificates",
                        str(certs / "ca.crt"),
                        "--port",
                        str(_free_port()),
                        "--node-config",
                        f"partner-dir='{tmp_path / 'nodes' / partner}'",
                    ],
                    tmp_path / f"{partner}.log",
                    env,
                )
            )
        yield tmp_path, env, tmp_path / "model"
    finally:
        for process in reversed(processes):
            _kill(process)


def test_a_job_runs_through_superlink_and_three_tls_supernodes(
    deployment: tuple[Path, dict[str, str], Path],
) -> None:
    workdir, env, model = deployment
    # SuperNodes start a fresh ClientApp process (torch, Opacus, data loading) for every message:
    # one round (describe, train, evaluate) keeps the test short; generous timeouts absorb a busy CI.
    overrides = (
        f"out-dir='{model}' rounds=1 local-steps=5 min-nodes=3 expected-nodes=3 job-id='deploy-test' "
        "round-timeout-s=300.0"
    )
    submitted = subprocess.run(
        [
            str(BIN / "flwr"),
            "run",
            str(flower_app_dir()),
            "local",
            "--run-config",
            overrides,
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    # A bound on a hang, not on speed: the job took 7.5 min at load 27 (a shared machine, three
    # pytest workers) against ~2 min in a quiet CI run, and missed a 420 s bound by 29 s.
    deadline = time.monotonic() + 900
    while not (model / "model_card.json").exists() and time.monotonic() < deadline:
        time.sleep(2)
    logs = {p.name: p.read_text(errors="replace")[-3000:] for p in workdir.glob("*.log")}
    assert (model / "model_card.json").exists(), json.dumps(logs, indent=1)
    card = json.loads((model / "model_card.json").read_text())
    assert card["job_id"] == "deploy-test" and card["rounds"] == 1
    assert sorted(n["partner_id"] for n in card["nodes"]) == sorted(NODES)
    assert all(n["steps"] == 5 and n["epsilon"] <= 3.03 for n in card["nodes"])
    assert (model / "model.pt").stat().st_size > 0
    # The nodes' own records: each trained in the round and kept its accountant locally.
    for partner in NODES:
        usage = (
            (workdir / "nodes" / partner / ".loyalfed" / "usage" / "deploy-test.jsonl")
            .read_text()
            .splitlines()
        )
        assert [json.loads(line)["round"] for line in usage] == [1]
        assert (workdir / "nodes" / partner / ".loyalfed" / "privacy_accountant.json").exists()
    _the_control_api_reports_the_run_as_flwr_ls_does(reply_json(submitted.stdout)["run-id"], env)
    # TLS: the SuperLink served HTTPS only.
    assert "running on https://127.0.0.1" in (workdir / "superlink.log").read_text(errors="replace")


def _the_control_api_reports_the_run_as_flwr_ls_does(run_id: object, env: dict[str, str]) -> None:
    """The coordinator's in-process status read (Flower's Control API) gives ``flwr ls``'s text."""
    config = tomllib.loads((Path(env["FLWR_HOME"]) / "config.toml").read_text(encoding="utf-8"))
    local = config["superlink"]["local"]
    client = control_client(local["address"], Path(local["root-certificates"]))
    deadline = time.monotonic() + 120  # the ServerApp ends a moment after it wrote the card
    while (status := run_status(client, str(run_id))) != "finished:completed" and time.monotonic() < deadline:
        time.sleep(1)
    listed = subprocess.run(
        [str(BIN / "flwr"), "ls", "local", "--run-id", str(run_id), "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert status == reply_json(listed.stdout)["runs"][0]["status"] == "finished:completed"  # type: ignore[index]
    assert run_status(client, str(int(str(run_id)) + 1)) is None  # a run the SuperLink does not have
