"""Counts the UDP packets the kernel delivers to one address on loopback, as tcpdump would:
the proof that media reached a socket that no SIP or SDP line names (a phone behind NAT).

A packet socket on ``lo`` (needs root, as the tests' Asterisk does); each packet shows twice on
loopback, leaving and arriving: only the arrivals are counted.
"""

from __future__ import annotations

import socket
import struct
import threading

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4


class UdpCounter:
    def __init__(self, ip: str, port: int) -> None:
        self._dst = (socket.inet_aton(ip), port)
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self.count = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> UdpCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet, address = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            if address[2] == _PACKET_OUTGOING or len(packet) < 28 or packet[9] != 17:
                continue
            header = (packet[0] & 0x0F) * 4
            (dport,) = struct.unpack("!H", packet[header + 2 : header + 4])
            if (packet[16:20], dport) == self._dst:
                self.count += 1
