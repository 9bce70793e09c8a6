"""A TLS client driven byte by byte, to tamper with what goes on the wire.

``TlsExchange`` runs a real TLS handshake against a server (verifying its certificate against the
federation CA), sends one request, and keeps every byte it put on the wire, so a test can send a
request with one ciphertext byte flipped, or replay a whole recorded session on a new connection.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TlsExchange", "replay"]


@dataclass
class TlsExchange:
    """One connection: the bytes sent, the plaintext received, and how it ended."""

    address: str
    port: int
    ca_file: Path
    sent: bytearray = field(default_factory=bytearray)
    reply: bytes = b""
    ended_by: str = ""

    def request(self, request: bytes, *, flip_byte: bool = False, timeout_s: float = 10.0) -> TlsExchange:
        """Handshake, send ``request`` (its last ciphertext byte flipped, if asked), read to the end."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=self.address)
        with socket.create_connection((self.address, self.port), timeout=timeout_s) as sock:

            def flush(*, flip: bool = False) -> None:
                data = bytearray(outgoing.read())
                if flip and data:
                    data[-1] ^= 0x01  # inside the record's authentication tag
                self.sent.extend(data)
                sock.sendall(data)

            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    flush()
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError(
                            "the server closed the connection during the handshake"
                        ) from None
                    incoming.write(chunk)
            flush()
            tls.write(request)
            flush(flip=flip_byte)
            self._read(sock, tls, incoming)
        return self

    def _read(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO) -> None:
        reply = bytearray()
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    self.ended_by = "closed"
                    break
                incoming.write(chunk)
                while True:
                    try:
                        data = tls.read(65536)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:
                        self.ended_by = "closed"
                        self.reply = bytes(reply)
                        return
                    if not data:
                        break
                    reply.extend(data)
        except ssl.SSLError as err:
            self.ended_by = f"tls alert: {err.reason or err}"
        except (ConnectionResetError, TimeoutError) as err:
            self.ended_by = type(err).__name__
        self.reply = bytes(reply)


def replay(address: str, port: int, recorded: bytes, *, timeout_s: float = 10.0) -> bytes:
    """Send ``recorded`` (a whole client side of an earlier session) on a new connection; what came back."""
    received = bytearray()
    with socket.create_connection((address, port), timeout=timeout_s) as sock:
        sock.sendall(recorded)
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := sock.recv(65536):
                received.extend(chunk)
    return bytes(received)
