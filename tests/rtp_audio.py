"""Records the RTP audio the kernel delivers to one address on loopback (a packet socket, as
tests/rtp_capture.py counts them), and decodes it (G.711 A-law / mu-law) to compare what a
phone heard with a known tone."""

from __future__ import annotations

import math
import socket
import struct
import threading

_ETH_P_IP = 0x0800
_PACKET_OUTGOING = 4


def _alaw(code: int) -> int:
    code ^= 0x55
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    sample = (mantissa << 4) + 8 if exponent == 0 else ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if code & 0x80 else -sample


def _ulaw(code: int) -> int:
    code = ~code & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    sample = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -sample if code & 0x80 else sample


_DECODE = {8: [_alaw(c) for c in range(256)], 0: [_ulaw(c) for c in range(256)]}


class RtpRecorder:
    def __init__(self, ip: str, port: int) -> None:
        self._dst = (socket.inet_aton(ip), port)
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(_ETH_P_IP))
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RtpRecorder:
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
            if address[2] == _PACKET_OUTGOING or len(packet) < 40 or packet[9] != 17:
                continue
            header = (packet[0] & 0x0F) * 4
            (dport,) = struct.unpack("!H", packet[header + 2 : header + 4])
            if (packet[16:20], dport) != self._dst:
                continue
            rtp = packet[header + 8 :]
            csrc = (rtp[0] & 0x0F) * 4
            table = _DECODE.get(rtp[1] & 0x7F)
            if table is not None:
                self.samples.extend(table[b] for b in rtp[12 + csrc :])


def _share(block: list[int], hz: float, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(x * x for x in block)
    return power / (len(block) * energy / 2) if energy else 0.0


def tone_share(samples: list[int], hz: float, rate: int = 8000, block: int = 160) -> float:
    """The share of the signal's energy at ``hz`` (Goertzel), the median over 20 ms blocks (a
    looped file, or a lost packet, breaks the phase between blocks, not within): about 1 for a
    pure tone of that frequency, near 0 for music or another tone."""
    shares = sorted(
        _share(samples[i : i + block], hz, rate)
        for i in range(0, len(samples) - block + 1, block)
        if any(samples[i : i + block])
    )
    return shares[len(shares) // 2] if shares else 0.0
