"""A packet capture on one interface with a raw ``AF_PACKET`` socket (what tcpdump does, in Python).

Every frame seen is kept; ``segments`` decodes the IPv4/TCP ones into (source, destination,
payload), and ``write_pcap`` saves the capture in the classic pcap format (readable by tcpdump and
Wireshark) for a person to look at.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PacketCapture", "TcpSegment"]

_ETH_P_ALL = 0x0003
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_TCP = 6


@dataclass(frozen=True)
class TcpSegment:
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


class PacketCapture:
    """Capture every frame on ``interface`` from ``start`` to ``stop`` (a thread reads the socket)."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.frames: list[tuple[float, bytes]] = []
        self._stopping = threading.Event()
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
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
        while not self._stopping.is_set():
            try:
                frame = self._socket.recv(65535)
            except TimeoutError:
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
            source_port, destination_port = struct.unpack("!HH", tcp[:4])
            offset = (tcp[12] >> 4) * 4
            out.append(
                TcpSegment(
                    (socket.inet_ntoa(ip[12:16]), source_port),
                    (socket.inet_ntoa(ip[16:20]), destination_port),
                    bytes(tcp[offset:]),
                )
            )
        return out

    def write_pcap(self, path: Path) -> None:
        # libpcap file format: magic, version 2.4, UTC offset, accuracy, snaplen, LINKTYPE_ETHERNET (1).
        with path.open("wb") as out:
            out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            for at, frame in list(self.frames):
                seconds = int(at)
                out.write(struct.pack("<IIII", seconds, int((at - seconds) * 1e6), len(frame), len(frame)))
                out.write(frame)
