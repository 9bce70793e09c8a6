"""A throwaway PostgreSQL server for the store contract tests.

The server binaries (PostgreSQL 15 on Debian) refuse to run as root, so the cluster is created and
started as the unprivileged ``postgres`` user in a temporary directory, listening on a free loopback
port only. Where no server can be started (no binaries, no such user, not root and not that user),
the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresUnavailable", "find_server_binaries", "fresh_database", "running_postgres"]

_BINARY_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
_SERVER_USER = "postgres"
_DATABASE = "loyalfed_test"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


@dataclass(frozen=True)
class _Runner:
    """Runs the server's commands as the unprivileged user (root) or as ourselves (that user)."""

    prefix: tuple[str, ...]
    uid: int
    gid: int

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=120, check=False)


def find_server_binaries() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``, from ``LOYALFED_PG_BIN`` or Debian's layout."""
    candidates = [os.environ["LOYALFED_PG_BIN"]] if os.environ.get("LOYALFED_PG_BIN") else []
    candidates += list(_BINARY_DIRS)
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise PostgresUnavailable(f"no PostgreSQL server binaries (initdb, pg_ctl) in {', '.join(candidates)}")


def _runner() -> _Runner:
    try:
        user = pwd.getpwnam(_SERVER_USER)
    except KeyError as err:
        raise PostgresUnavailable(f"no '{_SERVER_USER}' user to run the server as") from err
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable("running as root without 'runuser' to drop to the postgres user")
        return _Runner((runuser, "-u", _SERVER_USER, "--"), user.pw_uid, user.pw_gid)
    if os.geteuid() == user.pw_uid:
        return _Runner((), user.pw_uid, user.pw_gid)
    raise PostgresUnavailable(
        f"PostgreSQL must run as '{_SERVER_USER}'; this process is neither root nor that user"
    )


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_ready(bin_dir: Path, runner: _Runner, port: int, *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        probe = runner.run(str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q")
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    raise PostgresUnavailable(f"the server on 127.0.0.1:{port} did not become ready in {timeout_s:.0f} s")


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a fresh cluster on a free loopback port; yield its SQLAlchemy URL; stop and delete it."""
    bin_dir = find_server_binaries()
    runner = _runner()
    root = Path(tempfile.mkdtemp(prefix="loyalfed-pg-"))
    os.chown(root, runner.uid, runner.gid)
    data_dir = root / "data"
    port = _free_loopback_port()
    init = runner.run(
        str(bin_dir / "initdb"),
        "-D",
        str(data_dir),
        "-U",
        _SERVER_USER,
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-sync",
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    options = f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off"
    start = runner.run(
        str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(root / "log"), "-w", "start"
    )
    try:
        if start.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl start failed: {start.stderr.strip()[-300:]}")
        _wait_until_ready(bin_dir, runner, port)
        created = runner.run(
            str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", _SERVER_USER, _DATABASE
        )
        if created.returncode != 0:
            raise PostgresUnavailable(f"createdb failed: {created.stderr.strip()[-300:]}")
        yield f"postgresql+psycopg://{_SERVER_USER}@127.0.0.1:{port}/{_DATABASE}"
    finally:
        runner.run(str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """Create an empty database with a unique name on the server at ``server_url``; return its URL.

    Each test of a store contract gets its own database, so tests never see each other's rows.
    """
    import uuid

    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:16]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"
