"""A warm parent for the node's ClientApp processes: Flower's runtime imported once, forked per message.

Flower's SuperExec starts a fresh ``flwr-clientapp`` process for every message (a job of a dozen
messages at four nodes: a hundred processes), and each spent 1.2–1.7 CPU seconds importing Flower's
ClientApp runtime (its HTTP stack, FastAPI, pydantic, gRPC) before it did a millisecond of work.
The zygote, started by the node's SuperNode program beside the SuperNode, imports that runtime and
the node's approving launcher once, then waits on a Unix socket (0600, in the node's launcher
folder). The ``flwr-clientapp`` that SuperExec starts is a stdlib-only client of it
(``client_main``, run with ``python -S``): it sends its arguments, environment, working folder and
standard streams; the zygote forks a child that takes them on and runs the approving launcher's
``main`` unchanged — Flower's ``run_clientapp`` with the node's FAB check in front of the
installation, one fresh process per message as before, with its own token and environment — and
reports the child's exit code, which the client exits with. A client that dies takes its child
with it (SIGTERM); a SIGTERM to the client is passed on to the child.

Where no zygote answers (not started yet, restarting, or gone) the client runs the approving
launcher itself (``python -m participant_node.approved_apps``): slower, never less checked.
The zygote forks from one thread only (a selector loop over the socket and each child's pidfd),
as ``fork`` requires.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
from typing import Any

__all__ = ["SOCKET_ENV", "client_main", "serve"]

SOCKET_ENV = "LOYALFED_CLIENTAPP_ZYGOTE"  # the zygote's socket path, in the SuperNode's environment
_MAX_REQUEST = 1 << 20  # arguments and environment of one ClientApp: a few kilobytes
_STREAMS = 3  # stdin, stdout, stderr


# the client: what SuperExec starts as ``flwr-clientapp`` (standard library only) ------------------
def client_main(argv: list[str] | None = None) -> None:
    """Have the zygote run ``flwr-clientapp ARGS``; exit with its code (or run it here if none answers)."""
    args = sys.argv[1:] if argv is None else argv
    path = os.environ.get(SOCKET_ENV, "")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        request = json.dumps({"argv": args, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
        # A length first: the connection stays open both ways (its end tells the zygote we died).
        socket.send_fds(conn, [len(request).to_bytes(8, "big") + request], list(range(_STREAMS)))
        child = int(_read_line(conn))
    except (OSError, ValueError):
        conn.close()
        _run_here(args)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    try:
        code = int(_read_line(conn) or "1")
    except (OSError, ValueError):
        code = 1
    sys.exit(code)


def _read_line(conn: socket.socket) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            break
        data += chunk
    return data.decode("ascii").strip()


def _run_here(args: list[str]) -> None:
    python = sys.executable
    os.execv(python, [python, "-m", "participant_node.approved_apps", *args])


# the zygote -----------------------------------------------------------------------------------
def _preload() -> None:
    """What every ClientApp process imports: Flower's ClientApp runtime and the node's launcher.

    The run's app itself (the FAB's ClientApp module) is not imported here: each child loads it
    after the launcher approved the FAB's hash, as before.
    """
    import flwr.clientapp
    import flwr.common.args
    import flwr.common.serde
    import flwr.supercore.tls
    import flwr.supernode.runtime.run_clientapp  # noqa: F401

    import participant_node.approved_apps
    import participant_node.forwarding_client_app  # noqa: F401


def serve(socket_path: str, parent_pid: int) -> None:
    """Serve ClientApp launches on ``socket_path`` until SIGTERM or until ``parent_pid`` ends."""
    _die_with(parent_pid)
    _preload()
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)  # the socket is the node's own: mode 0600
    try:
        listener.bind(socket_path)
    finally:
        os.umask(old_mask)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"clientapp zygote: serving on {socket_path}", file=sys.stderr, flush=True)
    forks = 0
    try:
        while True:
            for key, _ in selector.select():
                if key.data is None:
                    forks += _accept(listener, selector)
                else:
                    _child_event(selector, key)
    finally:
        os.unlink(socket_path)
        print(f"clientapp zygote: ran {forks} ClientApp processes", file=sys.stderr, flush=True)


def _die_with(parent_pid: int) -> None:
    """SIGTERM this process when ``parent_pid`` (the SuperNode program) ends: Linux PR_SET_PDEATHSIG."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent_pid:  # it ended before the request took effect
        sys.exit(0)


def _accept(listener: socket.socket, selector: selectors.BaseSelector) -> int:
    """Fork a ClientApp for one launch request; the number of processes started (0 or 1)."""
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        message, fds, _flags, _addr = socket.recv_fds(conn, _MAX_REQUEST, _STREAMS)
        size = int.from_bytes(message[:8], "big")
        if len(fds) != _STREAMS or size > _MAX_REQUEST:
            raise ValueError(f"expected {_STREAMS} streams and <= {_MAX_REQUEST} bytes")
        while len(message) < size + 8:  # a large environment arrives in more than one read
            chunk = conn.recv(_MAX_REQUEST)
            if not chunk:
                raise ValueError("the request ended early")
            message += chunk
        request = json.loads(message[8:])
    except (OSError, ValueError) as err:
        print(f"clientapp zygote: bad launch request: {err}", file=sys.stderr, flush=True)
        for fd in fds:
            os.close(fd)
        conn.close()
        return 0
    pid = os.fork()
    if pid == 0:
        _become_clientapp(request, fds, listener, selector, conn)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    selector.register(pidfd, selectors.EVENT_READ, ("child", pid, conn))
    try:
        conn.sendall(f"{pid}\n".encode())
        selector.register(conn, selectors.EVENT_READ, ("client", pid, pidfd))
    except OSError:  # the client is already gone: so must its child be
        _signal(pid, signal.SIGTERM)
    return 1


def _child_event(selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
    kind, pid, conn = key.data
    if kind == "client":  # the client closed or died before its child ended: end the child
        selector.unregister(key.fileobj)
        _signal(pid, signal.SIGTERM)
        return
    _, status = os.waitpid(pid, 0)
    selector.unregister(key.fd)
    os.close(key.fd)
    with contextlib.suppress(KeyError, ValueError):  # the client's end may be unregistered already
        selector.unregister(conn)
    with contextlib.suppress(OSError):  # the client may be gone
        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    conn.close()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _become_clientapp(
    request: dict[str, Any],
    fds: list[int],
    listener: socket.socket,
    selector: selectors.BaseSelector,
    conn: socket.socket,
) -> None:
    """In the forked child: take on the client's streams, environment and arguments; run the launcher."""
    code = 1
    try:
        # None of the zygote's sockets or other children's pidfds stay open in a ClientApp.
        for key in list(selector.get_map().values()):
            if isinstance(key.fileobj, int):
                os.close(key.fileobj)  # another child's pidfd
            else:
                key.fileobj.close()  # type: ignore[attr-defined]
        selector.close()
        listener.close()
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in dict(request["env"]).items()})
        os.chdir(str(request["cwd"]))
        sys.argv = ["flwr-clientapp", *[str(a) for a in request["argv"]]]
        from participant_node.approved_apps import main

        main()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # the child's last word: a traceback on the client's stderr, exit 1
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
