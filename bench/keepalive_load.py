"""Keep-alive HTTP/1.1 load generator: ``--connections`` asyncio clients for ``--seconds``.

Run as its own process by ``control_plane_bench.py`` so that the client does not share the
server's interpreter (and its GIL). Each connection sends one GET at a time on a persistent
connection (no pipelining), reads the whole response (``Content-Length``), and counts it only when
the status is 200 and the body is non-empty; anything else is counted as an error and reported, so
a refused or broken answer can never pass for throughput. Prints one JSON object:
``{"requests", "errors", "seconds", "requests_per_s", "first_error"}``.

    python bench/keepalive_load.py --url http://127.0.0.1:PORT/api/v1 --path /health --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Tally:
    requests: int = 0
    errors: int = 0
    first_error: str | None = None

    def fail(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message


def _request(host: str, prefix: str, path: str, token: str | None) -> bytes:
    lines = [f"GET {prefix}{path} HTTP/1.1", f"Host: {host}", "Accept: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(host: str, port: int, requests: list[bytes], deadline: float, tally: Tally) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        n = 0
        while time.perf_counter() < deadline:
            writer.write(requests[n % len(requests)])
            status, body = await _read_response(reader)
            n += 1
            if status == 200 and body:
                tally.requests += 1
            else:
                tally.fail(f"status {status}: {body[:120]!r}")
    finally:
        writer.close()


async def run(
    url: str, paths: list[str], token: str | None, connections: int, seconds: float
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(f"{host}:{port}", parts.path.rstrip("/"), path, token) for path in paths]
    tally = Tally()
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_connection(host, port, requests, deadline, tally) for _ in range(connections)))
    elapsed = time.perf_counter() - start
    return {
        "requests": tally.requests,
        "errors": tally.errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(tally.requests / elapsed, 1),
        "first_error": tally.first_error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the API base, e.g. http://127.0.0.1:8700/api/v1")
    parser.add_argument("--path", action="append", required=True, help="a path under --url (repeatable)")
    parser.add_argument("--token-env", default=None, help="the environment variable holding the token")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    token = os.environ[args.token_env] if args.token_env else None
    work = run(args.url, args.path, token, args.connections, args.seconds)
    try:
        import uvloop
    except ImportError:  # the standard event loop measures the same thing, with a slower client
        print(json.dumps(asyncio.run(work)))
    else:
        print(json.dumps(uvloop.run(work)))


if __name__ == "__main__":
    main()
