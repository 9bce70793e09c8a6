"""Seeing inside captured TLS 1.3 with the client's key log, as Wireshark does with ``SSLKEYLOGFILE``.

A capture of TLS traffic holds ciphertext: an identifier or a model update sent over it can never
show in clear, so a capture alone proves little about *what* a party sent. An operator who owns a
host can log the TLS secrets its own processes negotiate (the NSS key log format) and decrypt that
host's traffic afterwards; this module does that for the harness's node hosts.

- ``keylog_environment`` makes every Python process started with it write its TLS secrets to one
  file: Flower's SuperNode builds its ``ssl.SSLContext`` directly (no ``SSLKEYLOGFILE`` support), so a
  ``sitecustomize`` sets ``keylog_filename`` on every context made in the process.
- ``client_plaintexts`` decrypts the client-to-server half of each captured connection (RFC 8446
  §5.2 records, §7.1 key schedule, §7.3 traffic keys, §5.3 per-record nonce).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

__all__ = ["client_plaintexts", "keylog_environment"]

_SITECUSTOMIZE = '''\
"""Test harness: every ssl.SSLContext made in this process logs its TLS secrets to SSLKEYLOGFILE."""
import os
import ssl

_KEYLOG = os.environ.get("SSLKEYLOGFILE")
if _KEYLOG:
    _make = ssl.SSLContext.__new__

    def _logging_context(cls, protocol=None, *args, **kwargs):
        context = _make(cls, protocol, *args, **kwargs)
        context.keylog_filename = _KEYLOG
        return context

    ssl.SSLContext.__new__ = staticmethod(_logging_context)
'''

_HANDSHAKE, _APPLICATION_DATA = 22, 23
# RFC 8446 §B.4: cipher suite -> (AEAD, key length, hash of the key schedule).
_SUITES = {
    0x1301: (AESGCM, 16, hashes.SHA256),
    0x1302: (AESGCM, 32, hashes.SHA384),
    0x1303: (ChaCha20Poly1305, 32, hashes.SHA256),
}


def keylog_environment(folder: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` for processes whose TLS secrets go to ``folder/keylog.txt`` (returned as SSLKEYLOGFILE)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(folder), environ.get("PYTHONPATH", "")) if p)
    return {**environ, "PYTHONPATH": path, "SSLKEYLOGFILE": str(folder / "keylog.txt")}


def _records(stream: bytes) -> list[tuple[bytes, bytes]]:
    """The whole TLS records at the start of ``stream``: (5-byte header, body)."""
    out, at = [], 0
    while at + 5 <= len(stream):
        length = struct.unpack("!H", stream[at + 3 : at + 5])[0]
        if at + 5 + length > len(stream):
            break
        out.append((stream[at : at + 5], stream[at + 5 : at + 5 + length]))
        at += 5 + length
    return out


def _hkdf_expand_label(
    algorithm: type[hashes.HashAlgorithm], secret: bytes, label: str, length: int
) -> bytes:
    # RFC 8446 §7.1: HkdfLabel = uint16 length || opaque label<7..255> ("tls13 " + label) || context<0..255>.
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(algorithm(), length, info).derive(secret)


@dataclass
class _Direction:
    """One direction's traffic keys and record sequence number (RFC 8446 §5.3)."""

    aead: AESGCM | ChaCha20Poly1305
    iv: bytes
    sequence: int = 0

    def open(self, header: bytes, body: bytes) -> bytes:
        padded = b"\x00" * 4 + struct.pack("!Q", self.sequence)
        nonce = bytes(a ^ b for a, b in zip(self.iv, padded, strict=True))
        plain = self.aead.decrypt(nonce, body, header)
        self.sequence += 1
        return plain.rstrip(b"\x00")  # TLSInnerPlaintext: content || type || zero padding


def _direction(suite: int, secret: bytes) -> _Direction:
    aead, key_length, algorithm = _SUITES[suite]
    key = _hkdf_expand_label(algorithm, secret, "key", key_length)
    return _Direction(aead(key), _hkdf_expand_label(algorithm, secret, "iv", 12))


def _hello_random_and_suite(record: bytes, *, server: bool) -> tuple[bytes, int | None]:
    # RFC 8446 §4.1.2/§4.1.3: type(1) length(3) legacy_version(2) random(32) session_id<0..32> ...
    random = record[6:38]
    if not server:
        return random, None
    session_id_length = record[38]
    suite = struct.unpack("!H", record[39 + session_id_length : 41 + session_id_length])[0]
    return random, suite


def _read_keylog(path: Path) -> dict[tuple[str, bytes], bytes]:
    secrets: dict[tuple[str, bytes], bytes] = {}
    for line in path.read_text(encoding="ascii", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            secrets[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
    return secrets


def _client_plaintext(
    client: bytes, server: bytes, secrets: Mapping[tuple[str, bytes], bytes]
) -> bytes | None:
    """The application data the client sent on one connection, or None (not TLS 1.3, or no keys)."""
    client_records, server_records = _records(client), _records(server)
    if not client_records or not server_records:
        return None
    if client_records[0][0][0] != _HANDSHAKE or server_records[0][0][0] != _HANDSHAKE:
        return None
    client_random, _ = _hello_random_and_suite(client_records[0][1], server=False)
    _, suite = _hello_random_and_suite(server_records[0][1], server=True)
    handshake = secrets.get(("CLIENT_HANDSHAKE_TRAFFIC_SECRET", client_random))
    application = secrets.get(("CLIENT_TRAFFIC_SECRET_0", client_random))
    if suite not in _SUITES or handshake is None or application is None:
        return None
    keys, data = _direction(suite, handshake), bytearray()
    in_handshake = True
    for header, body in client_records[1:]:
        if header[0] != _APPLICATION_DATA:
            continue  # change_cipher_spec (§D.4 middlebox compatibility), in clear
        if in_handshake:
            try:
                keys.open(header, body)  # the client's Finished, under the handshake keys
                keys, in_handshake = _direction(suite, application), False
                continue
            except InvalidTag:
                keys, in_handshake = _direction(suite, application), False
        try:
            plain = keys.open(header, body)
        except InvalidTag:
            break  # a record lost from the capture: the rest cannot be numbered
        if plain and plain[-1] == _APPLICATION_DATA:
            data.extend(plain[:-1])
    return bytes(data)


def client_plaintexts(
    connections: Mapping[tuple[tuple[str, int], tuple[str, int]], tuple[bytes, bytes]], keylog: Path
) -> dict[tuple[tuple[str, int], tuple[str, int]], bytes]:
    """What each client sent inside TLS, per (client, server) connection whose secrets the log holds.

    ``connections`` maps (client address, server address) to the (client-to-server, server-to-client)
    byte streams, as ``PacketCapture.connections`` reassembles them.
    """
    secrets = _read_keylog(keylog) if keylog.exists() else {}
    out = {}
    for key, (client, server) in connections.items():
        plain = _client_plaintext(client, server, secrets)
        if plain is not None:
            out[key] = plain
    return out
