"""The node's supervisor keeps a real Flower SuperNode running and stops its whole process group."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from participant_node.prompt_supernode import CappedSleep, set_heartbeat_interval
from participant_node.supernode_supervisor import SuperNodeLaunch, SuperNodeSupervisor, node_config_arg
from pki import create_federation_ca, create_supernode_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_node_config_is_flowers_key_value_syntax() -> None:
    config = {"partner-id": "freshmart-north", "local-url": "http://127.0.0.1:8801"}
    assert node_config_arg(config) == 'partner-id="freshmart-north" local-url="http://127.0.0.1:8801"'
    with pytest.raises(ValueError, match="may not contain quotes"):
        node_config_arg({"partner-id": 'x" other="y'})


def test_a_supernode_that_dies_is_restarted_and_stop_ends_it(tmp_path: Path) -> None:
    keys = create_supernode_key(tmp_path / "keys")
    create_federation_ca(tmp_path / "ca")  # no SuperLink answers: the SuperNode keeps retrying
    launch = SuperNodeLaunch(
        superlink_address=f"127.0.0.1:{_free_port()}",
        root_certificate=tmp_path / "ca" / "ca.crt",
        auth_private_key=keys.private_key,
        node_config={"partner-id": "freshmart-north"},
        runtime_port=_free_port(),
        log_file=tmp_path / "supernode.log",
    )
    supervisor = SuperNodeSupervisor(launch)
    supervisor.start()
    try:
        first = supervisor.pid
        assert first is not None and supervisor.running
        os.kill(first, signal.SIGKILL)  # a crash
        assert _wait(lambda: supervisor.restarts == 1 and supervisor.running, timeout=30)
        assert supervisor.pid != first and supervisor.last_exit_code == -signal.SIGKILL
    finally:
        supervisor.stop()
    assert not supervisor.running
    second = supervisor.pid
    assert second is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(second, 0)  # the whole group is gone


def test_the_node_runs_flowers_supernode_with_a_capped_idle_wait() -> None:
    launch = SuperNodeLaunch(
        superlink_address="127.0.0.1:1",
        root_certificate=Path("ca.crt"),
        auth_private_key=Path("node.key"),
        node_config={"partner-id": "p"},
        runtime_port=1,
        log_file=Path("supernode.log"),
    )
    assert launch.command()[1:4] == ["-m", "participant_node.prompt_supernode", "--pull-interval-s"]
    assert launch.command()[5:7] == ["--superlink", "127.0.0.1:1"]
    flowers = SuperNodeLaunch(**{**launch.__dict__, "pull_interval_s": None})
    assert flowers.command()[0] == str(launch.executable)
    slept: list[float] = []

    class Clock:
        def sleep(self, seconds: float) -> None:
            slept.append(seconds)

        def monotonic(self) -> float:
            return 7.0

    capped = CappedSleep(1.0, clock=Clock())  # type: ignore[arg-type]
    capped.sleep(3)  # Flower's idle wait between pulls
    capped.sleep(0.5)  # its shorter waits are kept
    assert slept == [1.0, 0.5] and capped.monotonic() == 7.0
    with pytest.raises(ValueError, match="> 0"):
        CappedSleep(0)


def test_the_node_sets_flowers_heartbeat_interval_where_the_supernode_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flwr.supercore import heartbeat
    from flwr.supernode import fleet_http_connection

    for module in (heartbeat, fleet_http_connection):  # restored after the test
        monkeypatch.setattr(module, "HEARTBEAT_DEFAULT_INTERVAL", module.HEARTBEAT_DEFAULT_INTERVAL)
    set_heartbeat_interval(10.0)
    # What the SuperNode announces (ActivateNode, SendNodeHeartbeat) and how long its sender waits.
    assert fleet_http_connection.HEARTBEAT_DEFAULT_INTERVAL == heartbeat.HEARTBEAT_DEFAULT_INTERVAL == 10.0
    with pytest.raises(ValueError, match=r"\[10, 1800\] s"):
        set_heartbeat_interval(5.0)  # the SuperLink would refuse the node
    assert heartbeat.HEARTBEAT_DEFAULT_INTERVAL == 10.0
