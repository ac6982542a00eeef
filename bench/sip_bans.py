"""Issue 12, "Must measure": what a ban saves Asterisk, and how fast a guesser is banned.

    .venv/bin/python bench/sip_bans.py [--requests N] [--rounds R]

Real parts on loopback: a fresh PostgreSQL database, an Asterisk 22 instance ``benchbans``
(SIP 29160, AMI 29138, ARI 32188) with one line, and ``centrex guard`` (its own nftables table,
deleted at the end).

1. **Asterisk's CPU per 1,000 bad REGISTERs**, from an unbanned source (127.0.0.90, allow-listed
   so the guard never bans it: Asterisk does the whole digest check and answers 401 each time)
   and from a banned one (127.0.0.91, banned by guessing first), side by side in one run: rounds
   alternate unbanned, banned, idle (nothing sent, same duration), so machine noise hits all
   three. Each request is a REGISTER carrying a digest computed with a wrong password against a
   live nonce (what a brute-forcer sends), N of them paced over 1 s. CPU is the Asterisk
   process's utime+stime from /proc over the round plus a 0.5 s tail; the idle round's CPU is
   subtracted from both. Reported: CPU ms per 1,000 requests, median over the rounds, and the
   ratio.
2. **Time to ban**: 10 guesses at 20/s from a fresh address; from the first guess sent to the
   address in the kernel's ban set (``nft`` polled every 10 ms), over 5 addresses.

Prints a table and writes ``bench/results/sip-bans-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from centrex.config import Settings
from centrex.guard.nft import table_name
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import free_port, migrated_test_database
from centrex.sandbox.processes import GUARD_READY, ServiceProcess

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
USER, PASSWORD, REALM = "benchline", "right-password", "centrex"
UNBANNED, BANNED = "127.0.0.90", "127.0.0.91"


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Guesser:
    """Raw SIP over UDP from one source address: REGISTERs with a wrong password's digest."""

    def __init__(self, source: str, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.source, self.port = self.sock.getsockname()
        self.n = 0

    def _message(self, auth: str = "") -> bytes:
        self.n += 1
        host, port = self.server
        return (
            f"REGISTER sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.source}:{self.port};branch=z9hG4bK{self.n}x{os.getpid()}\r\n"
            f"From: <sip:{USER}@{host}>;tag={self.n}\r\nTo: <sip:{USER}@{host}>\r\n"
            f"Call-ID: bench-{self.n}-{time.time_ns()}\r\nCSeq: 1 REGISTER\r\n"
            f"Contact: <sip:{USER}@{self.source}:{self.port}>\r\n{auth}"
            "Max-Forwards: 70\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def nonce(self) -> str:
        self.sock.settimeout(2)
        self.sock.sendto(self._message(), self.server)
        reply = self.sock.recvfrom(65535)[0].decode(errors="replace")
        return re.search(r'nonce="([^"]+)"', reply).group(1)  # type: ignore[union-attr]

    def guess(self, nonce: str) -> bytes:
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        ha1 = hashlib.md5(f"{USER}:{REALM}:wrong-{self.n}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
        auth = (
            f'Authorization: Digest username="{USER}",realm="{REALM}",nonce="{nonce}",'
            f'uri="{uri}",response="{response}",algorithm=MD5\r\n'
        )
        return self._message(auth)

    def send_paced(self, messages: list[bytes], seconds: float) -> None:
        self.sock.setblocking(False)
        start = time.monotonic()
        for i, message in enumerate(messages):
            delay = start + seconds * i / len(messages) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.sock.sendto(message, self.server)
            self._drain()

    def _drain(self) -> None:
        try:
            while self.sock.recv(65535):
                pass
        except (BlockingIOError, OSError):
            pass


def kernel_has(table: str, address: str) -> bool:
    out = subprocess.run(
        ["nft", "list", "set", "inet", table, "banned4"], capture_output=True, text=True
    ).stdout
    return re.search(rf"\b{re.escape(address)}\b", out) is not None


def time_to_ban(table: str, source: str, server: tuple[str, int], nonce: str) -> float:
    guesser = Guesser(source, server)
    first = time.monotonic()
    for _ in range(10):
        guesser.sock.sendto(guesser.guess(nonce), server)
        until = time.monotonic() + 0.05
        while time.monotonic() < until:
            if kernel_has(table, source):
                return time.monotonic() - first
            time.sleep(0.01)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if kernel_has(table, source):
            return time.monotonic() - first
        time.sleep(0.01)
    raise RuntimeError(f"{source} was not banned")


def put_line(settings: Settings) -> None:
    base = f"{settings.ari_url}/asterisk/config/dynamic/res_pjsip"
    auth = (settings.ari_username, settings.ari_password.get_secret_value())
    digest = hashlib.md5(f"{USER}:{REALM}:{PASSWORD}".encode()).hexdigest()
    for kind, fields in (
        ("auth", {"auth_type": "digest", "username": USER, "password_digest": f"md5:{digest}"}),
        ("aor", {"max_contacts": "1", "remove_existing": "yes"}),
        ("endpoint", {"context": "centrex-lines", "disallow": "all", "allow": "ulaw",
                      "auth": USER, "aors": USER}),
    ):  # fmt: skip
        body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
        httpx.put(f"{base}/{kind}/{USER}", auth=auth, json=body, timeout=5).raise_for_status()


def measure(settings: Settings, work: Path, requests: int, rounds: int) -> dict:
    sandbox = AsteriskSandbox(settings)
    sandbox.ensure_installed()
    sandbox.render_config()
    sandbox.start()
    table = table_name(settings.asterisk_instance)
    guard = ServiceProcess("guard", settings, work / "logs")
    try:
        put_line(settings)
        guard.start_and_wait(GUARD_READY)
        pid = sandbox.status().pid
        assert pid
        server = (settings.asterisk_host, settings.sip_port)
        unbanned, banned = Guesser(UNBANNED, server), Guesser(BANNED, server)
        nonce = unbanned.nonce()
        log("banning 127.0.0.91 by guessing")
        time_to_ban(table, BANNED, server, nonce)

        samples: dict[str, list[float]] = {"unbanned": [], "banned": [], "idle": []}
        for r in range(rounds):
            nonce = unbanned.nonce()  # a live nonce: Asterisk checks every digest
            for kind, guesser in (("unbanned", unbanned), ("banned", banned), ("idle", None)):
                before = cpu_s(pid)
                if guesser is None:
                    time.sleep(1.0)
                else:
                    guesser.send_paced([guesser.guess(nonce) for _ in range(requests)], 1.0)
                time.sleep(0.5)  # Asterisk finishes what it received
                samples[kind].append(cpu_s(pid) - before)
            log(
                f"round {r + 1}: "
                + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in samples.items())
            )
        assert kernel_has(table, BANNED), "the banned source's ban ended during the run"

        latencies = []
        for i in range(5):
            latencies.append(time_to_ban(table, f"127.0.0.{100 + i}", server, unbanned.nonce()))
    finally:
        guard.stop()
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)
        sandbox.stop()

    idle = statistics.median(samples["idle"])
    per_k = {
        k: max(0.0, statistics.median(samples[k]) - idle) * 1000 * 1000 / requests
        for k in ("unbanned", "banned")
    }
    return {
        "requests_per_round": requests,
        "rounds": rounds,
        "asterisk_cpu_ms_per_1000": per_k,
        "idle_cpu_ms_per_round": idle * 1000,
        "raw_cpu_s": samples,
        "ratio_unbanned_over_banned": per_k["unbanned"] / per_k["banned"]
        if per_k["banned"]
        else None,
        "time_to_ban_s": latencies,
    }


async def main(requests: int, rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-bans-"))
    async with migrated_test_database(work / "pg", prefix="centrex_benchbans") as url:
        settings = Settings(
            _env_file=None, var_dir=work / "var", database_url=url, asterisk_instance="benchbans",
            sip_port=29160, ami_port=29138, http_port=32188, ami_secret="bench",
            ari_password="bench", ari_control_password="bench-control",
            ari_cdr_password="bench-cdr", sip_qualify_frequency_s=0,
            guard_http_port=free_port(), sip_ban_reconcile_s=1,
            sip_ban_allow=[f"{UNBANNED}/32", "127.0.0.1/32"],
        )  # fmt: skip
        return await asyncio.to_thread(measure, settings, work, requests, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(main(args.requests, args.rounds))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"sip-bans-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(result, indent=2))
    cpu = result["asterisk_cpu_ms_per_1000"]
    idle_ms = result["idle_cpu_ms_per_round"]
    print(f"\nAsterisk CPU per 1,000 bad REGISTERs: unbanned {cpu['unbanned']:.1f} ms, "
          f"banned {cpu['banned']:.1f} ms (idle round {idle_ms:.1f} ms)")  # fmt: skip
    ratio = result["ratio_unbanned_over_banned"]
    print(f"ratio unbanned/banned: {ratio:.0f}x" if ratio else "banned: no measurable CPU")
    lat = result["time_to_ban_s"]
    print(f"first guess -> banned in the kernel: median {statistics.median(lat) * 1000:.0f} ms, "
          f"max {max(lat) * 1000:.0f} ms over {len(lat)} addresses")  # fmt: skip
    print(f"written {out}")
    sys.exit(0)
