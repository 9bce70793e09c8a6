"""Side-by-side benchmark: this PSI against openmined-psi (RAW), each party in its own process.

Both implementations get the same sets (``n`` items per side, ``overlap`` of them shared) on the
same machine. Each party runs in a spawned process and talks to its peer through a pipe, so the
numbers are honest per party: wall time, CPU time (all threads, ``getrusage``), peak resident
memory (``ru_maxrss``, including the interpreter and the input set) and bytes sent. Results are
checked against the plain set intersection and against each other.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import queue
import resource
import secrets
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["bench_items", "expected_intersection_digest", "run_benchmark"]

_TIMEOUT_S = 3600.0


def bench_items(role: str, n: int, overlap: int) -> list[bytes]:
    """The synthetic identifiers of one side: the responder's first ``overlap`` are shared."""
    start = 0 if role == "initiator" else n - overlap
    return [b"bench-member-%010d" % i for i in range(start, start + n)]


_GROUP_NOTES = {
    "ristretto255_XMD:SHA-512_R255MAP_RO_": "ristretto255 (libsodium via rbcl), hash_to_ristretto255",
    "curve25519_XMD:SHA-512_ELL2_NU_+X25519": (
        "X25519 (libsodium), curve25519 ELL2 NU u-coords; range loops in C (psi._x25519_batch) "
        "when x25519_backend is 'c', else Python over ctypes"
    ),
}


def _digest(numbers: list[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(numbers))).encode()).hexdigest()


def expected_intersection_digest(n: int, overlap: int) -> str:
    """Digest of the sorted initiator indices that the plain set intersection gives."""
    return _digest(list(range(n - overlap, n)))


def _usage(started: float, sent: int) -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall_s": time.perf_counter() - started,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "peak_rss_mb": ru.ru_maxrss / 1024,
        "bytes_sent": sent,
    }


class _Link:
    """A pipe end with a reader thread, so that sending never deadlocks against the peer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sent = 0
        self.inbox: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.conn.recv_bytes()
            except EOFError:
                return
            self.inbox.put(data)

    def send(self, data: bytes) -> None:
        self.sent += len(data)
        self.conn.send_bytes(data)

    def get(self) -> bytes:
        return self.inbox.get(timeout=_TIMEOUT_S)


def _ours(
    role: str, n: int, overlap: int, params_json: str, conn: Connection, barrier: Any, out: Any
) -> None:
    from psi.group_engine import GroupEngine
    from psi.protocol import Initiator, Responder
    from psi.wire import Frame, SessionParams
    from psi.x25519 import BACKEND

    items = bench_items(role, n, overlap)
    params = SessionParams.from_json(params_json)
    link = _Link(conn)
    barrier.wait()
    started = time.perf_counter()
    with GroupEngine() as engine:
        if role == "initiator":
            party = Initiator(items, params, engine=engine)
            for frame in party.element_frames():
                link.send(frame.encode())
            while not party.complete:
                party.receive(Frame.decode(link.get()))
            result = party.result()
            digest = _digest(list(result.matched_indices or ()))
            found = {"matches": result.cardinality, "digest": digest, "x25519_backend": BACKEND.value}
            out.put((role, {**_usage(started, link.sent), **found}))
        else:
            responder = Responder(items, params, engine=engine)
            for frame in responder.element_frames():
                link.send(frame.encode())
            while not responder.answered_all:
                for reply in responder.receive(Frame.decode(link.get())):
                    link.send(reply.encode())
            out.put((role, _usage(started, link.sent)))


def _openmined(role: str, n: int, overlap: int, conn: Connection, barrier: Any, out: Any) -> None:
    import private_set_intersection.python as om

    items = [item.decode() for item in bench_items(role, n, overlap)]
    link = _Link(conn)
    barrier.wait()
    started = time.perf_counter()
    if role == "initiator":  # the openmined client learns the intersection
        client = om.client.CreateWithNewKey(True)
        link.send(client.CreateRequest(items).SerializeToString())
        setup, response = om.ServerSetup(), om.Response()
        setup.ParseFromString(link.get())
        response.ParseFromString(link.get())
        found = list(client.GetIntersection(setup, response))
        usage = _usage(started, link.sent)
        out.put((role, {**usage, "matches": len(found), "digest": _digest(found)}))
    else:
        server = om.server.CreateWithNewKey(True)
        link.send(server.CreateSetupMessage(1e-9, n, items, om.DataStructure.RAW).SerializeToString())
        request = om.Request()
        request.ParseFromString(link.get())
        link.send(server.ProcessRequest(request).SerializeToString())
        out.put((role, _usage(started, link.sent)))


def _run_pair(target: Callable[..., None], extra: tuple[Any, ...], n: int, overlap: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    left, right = ctx.Pipe(duplex=True)
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(role, n, overlap, *extra, conn, barrier, out))
        for role, conn in (("initiator", left), ("responder", right))
    ]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=_TIMEOUT_S)
    started = time.perf_counter()
    parties = dict(out.get(timeout=_TIMEOUT_S) for _ in procs)
    wall = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=30)
    ini, res = parties["initiator"], parties["responder"]
    return {
        "wall_s": round(wall, 3),
        "cpu_s": round(ini["cpu_s"] + res["cpu_s"], 3),
        "bytes_per_element_to_responder": round(ini["bytes_sent"] / max(1, n), 3),
        "bytes_per_element_to_initiator": round(res["bytes_sent"] / max(1, n), 3),
        "peak_rss_mb": {"initiator": round(ini["peak_rss_mb"], 1), "responder": round(res["peak_rss_mb"], 1)},
        "matches": ini["matches"],
        "correct_vs_plain_sets": ini["digest"] == expected_intersection_digest(n, overlap),
        "digest": ini["digest"],
        **({"x25519_backend": ini["x25519_backend"]} if "x25519_backend" in ini else {}),
    }


def _ours_row(n: int, overlap: int, group: str | None) -> dict[str, Any]:
    from psi.wire import DEFAULT_GROUP, PsiGroup, PsiMode, SessionParams

    params = SessionParams(
        session_id=secrets.token_hex(16),
        mode=PsiMode.INTERSECTION,
        initiator_size=n,
        responder_size=n,
        group=PsiGroup(group) if group else DEFAULT_GROUP,
    )
    return _run_pair(_ours, (params.to_json(),), n, overlap)


def run_benchmark(
    sizes: list[int],
    *,
    overlap_fraction: float = 0.5,
    compare_openmined: bool = True,
    openmined_max_size: int | None = None,
    progress: Callable[[str], None] | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """Benchmark both implementations at every size and return a JSON-able report.

    Parameters
    ----------
    sizes
        Items per side.
    overlap_fraction
        Share of each side's items that the other side also has.
    compare_openmined
        Also run openmined-psi (RAW data structure) on the same sets.
    openmined_max_size
        Skip openmined-psi above this size (it takes minutes at 10^6).
    group
        A ``psi.wire.PsiGroup`` value; the default group when None.
    """
    from psi.wire import DEFAULT_GROUP, PsiGroup
    from psi.x25519 import BACKEND

    chosen = PsiGroup(group) if group else DEFAULT_GROUP
    rows = []
    for n in sizes:
        overlap = int(n * overlap_fraction)
        if progress:
            progress(f"loyalfed PSI, {n:,} per side")
        row: dict[str, Any] = {"size": n, "overlap": overlap, "loyalfed": _ours_row(n, overlap, chosen)}
        if compare_openmined and (openmined_max_size is None or n <= openmined_max_size):
            if progress:
                progress(f"openmined-psi RAW, {n:,} per side")
            row["openmined"] = _run_pair(_openmined, (), n, overlap)
            row["agree_with_openmined"] = row["openmined"]["digest"] == row["loyalfed"]["digest"]
            row["speedup_vs_openmined"] = round(row["openmined"]["wall_s"] / row["loyalfed"]["wall_s"], 2)
            row["cpu_ratio_vs_openmined"] = round(row["openmined"]["cpu_s"] / row["loyalfed"]["cpu_s"], 2)
        rows.append(row)
    return {
        "benchmark": "psi",
        "cpus": os.cpu_count(),
        "group": chosen.value,
        "group_implementation": _GROUP_NOTES[chosen],
        # Which implementation of the X25519 range loops ran: "c" (psi._x25519_batch) or "python".
        "x25519_backend": BACKEND.value,
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "baseline": "openmined-psi 2.x, P-256, DataStructure.RAW, reveal_intersection=True",
        "results": rows,
    }
