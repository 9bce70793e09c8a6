"""A packet capture on one interface with a raw ``AF_PACKET`` socket (what tcpdump does, in Python).

Every frame seen is kept; ``segments`` decodes the IPv4/TCP ones into (source, destination,
payload, sequence number, SYN flag), ``connections`` reassembles each TCP connection's two byte
streams from them (in sequence order, each byte once), and ``write_pcap`` saves the capture in the
classic pcap format (readable by tcpdump and Wireshark) for a person to look at.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PacketCapture", "TcpSegment"]

_ETH_P_ALL = 0x0003
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_TCP = 6
_TCP_SYN = 0x02
_SNAPLEN = 262144  # a GSO frame on a veth carries up to a 64 KiB IP packet plus its Ethernet header

Endpoint = tuple[str, int]


@dataclass(frozen=True)
class TcpSegment:
    source: Endpoint
    destination: Endpoint
    payload: bytes
    sequence: int = 0
    syn: bool = False


class PacketCapture:
    """Capture every frame on ``interface`` from ``start`` to ``stop`` (a thread reads the socket)."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.frames: list[tuple[float, bytes]] = []
        self._stopping = threading.Event()
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        # Room for a burst while the reader thread waits for a busy CPU (root may exceed rmem_max).
        self._socket.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE
        self._socket.bind((interface, 0))
        self._socket.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name=f"capture-{interface}", daemon=True)

    def start(self) -> PacketCapture:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _read(self) -> None:
        # After ``stop`` the frames already queued in the socket are still read (until 0.2 s pass
        # without one): the last packets sent before ``stop`` are part of the capture.
        while True:
            try:
                frame = self._socket.recv(_SNAPLEN)
            except TimeoutError:
                if self._stopping.is_set():
                    return
                continue
            except OSError:
                return
            self.frames.append((time.time(), frame))

    def segments(self) -> list[TcpSegment]:
        """The TCP segments among the frames (IPv4 over Ethernet), with their payloads."""
        out = []
        for _at, frame in list(self.frames):
            if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != _ETHERTYPE_IPV4:
                continue
            ip = frame[14:]
            header = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != _IPPROTO_TCP or len(ip) < header + 20:
                continue
            tcp = ip[header:total]
            source_port, destination_port, sequence = struct.unpack("!HHI", tcp[:8])
            offset = (tcp[12] >> 4) * 4
            out.append(
                TcpSegment(
                    (socket.inet_ntoa(ip[12:16]), source_port),
                    (socket.inet_ntoa(ip[16:20]), destination_port),
                    bytes(tcp[offset:]),
                    sequence,
                    bool(tcp[13] & _TCP_SYN),
                )
            )
        return out

    def connections(self) -> dict[tuple[Endpoint, Endpoint], tuple[bytes, bytes]]:
        """Each TCP connection seen from its SYN: (client, server) -> (client's bytes, server's bytes).

        Each stream is its bytes in sequence order up to the first gap (a frame the capture missed);
        a retransmitted segment counts once. A connection whose SYN was not seen is left out.
        """
        streams: dict[tuple[Endpoint, Endpoint], list[TcpSegment]] = defaultdict(list)
        clients: set[tuple[Endpoint, Endpoint]] = set()
        for segment in self.segments():
            if segment.syn and segment.source not in {d for _s, d in clients}:
                # A new connection reusing an address pair starts a new stream.
                streams[(segment.source, segment.destination)] = []
                streams[(segment.destination, segment.source)] = []
                clients.add((segment.source, segment.destination))
            streams[(segment.source, segment.destination)].append(segment)
        return {
            (client, server): (_stream(streams[(client, server)]), _stream(streams[(server, client)]))
            for client, server in clients
        }

    def write_pcap(self, path: Path) -> None:
        # libpcap file format: magic, version 2.4, UTC offset, accuracy, snaplen, LINKTYPE_ETHERNET (1).
        with path.open("wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, _SNAPLEN, 1))
            for at, frame in list(self.frames):
                seconds = int(at)
                out.write(struct.pack("<IIII", seconds, int((at - seconds) * 1e6), len(frame), len(frame)))
                out.write(frame)


def _stream(segments: list[TcpSegment]) -> bytes:
    """The bytes after the SYN, in sequence order, to the first gap (RFC 9293 §3.4: SYN takes one)."""
    start = next((s.sequence + 1 for s in segments if s.syn), None)
    if start is None:
        return b""
    by_offset: dict[int, bytes] = {}
    for s in segments:
        if s.payload:
            offset = (s.sequence - start) % (1 << 32)
            if len(s.payload) > len(by_offset.get(offset, b"")):
                by_offset[offset] = s.payload
    out, at = bytearray(), 0
    for offset in sorted(by_offset):
        payload = by_offset[offset]
        if offset > at:
            break  # a gap: what follows cannot be placed
        if offset + len(payload) > at:  # retransmissions may overlap what is already placed
            out.extend(payload[at - offset :])
            at = offset + len(payload)
    return bytes(out)
