"""Drives sipp, the real SIP peer of the tests: REGISTER, place and answer calls.

Each helper starts one sipp process; ``SippRun`` keeps its output for assertion messages.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import string
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from centrex.sandbox.asterisk import rtp_port_range

SCENARIOS = Path(__file__).parent / "sipp"
SIPP = shutil.which("sipp") or "sipp"


_next_port = itertools.count(30000 + (os.getpid() % 100) * 40, 4)
# The test Asterisk's own RTP ports (see tests/conftest.py): sipp must never take one of them.
_RTP_LOW, _RTP_HIGH = rtp_port_range(25060 + int(os.environ.get("CENTREX_TEST_PORT_OFFSET", "0")))
_ASTERISK_RTP = range(_RTP_LOW, _RTP_HIGH + 1)


def _bindable(port: int, ip: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def wait_bound(run: SippRun, port: int, ip: str = "127.0.0.1", timeout: float = 10) -> SippRun:
    """``run`` once its socket on ``port`` is open: a call placed earlier would find no one."""
    deadline = time.monotonic() + timeout
    while _bindable(port, ip):
        if run.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"sipp never listened on {ip}:{port}\n{run.output}")
        time.sleep(0.01)
    return run


def free_udp_port(ip: str = "127.0.0.1") -> int:
    """A port block (port .. port+3, sipp uses the next ones for RTP/RTCP) that no other sipp
    of this test run was given: ephemeral ports from the kernel collide among 50 sipps."""
    for port in _next_port:
        if port > 39990:
            raise RuntimeError("ran out of test ports")
        if any(p in _ASTERISK_RTP for p in range(port, port + 4)):
            continue
        if all(_bindable(p, ip) for p in range(port, port + 4)):
            return port
    raise AssertionError("unreachable")


@dataclass
class SippRun:
    argv: list[str]
    process: subprocess.Popen[str]
    workdir: Path

    def wait(self, timeout: float = 60) -> int:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    @property
    def output(self) -> str:
        out = self.process.stdout.read() if self.process.stdout else ""
        errors = "".join(p.read_text(errors="replace")[-4000:] for p in self.workdir.glob("*err*"))
        return f"$ {' '.join(self.argv)}\n{out[-4000:]}\n{errors}"

    def expect_success(self, timeout: float = 60) -> None:
        code = self.wait(timeout)
        assert code == 0, f"sipp exited {code}\n{self.output}"


def _scenario(name: str, **template: str) -> Path:
    path = SCENARIOS / name
    if not template:
        return path
    text = string.Template(path.read_text()).substitute(template)
    out = Path(tempfile.mkdtemp(prefix="sipp-scn-")) / path.name.removesuffix(".tmpl")
    out.write_text(text)
    return out


def run_sipp(
    scenario: Path,
    server: str,
    *,
    local_port: int | None = None,
    service: str | None = None,
    user: str | None = None,
    password: str | None = None,
    keys: dict[str, str] | None = None,
    calls: int = 1,
    rate: float | None = None,
    limit: int | None = None,
    timeout_s: int = 30,
    extra: list[str] | None = None,
    local_ip: str = "127.0.0.1",
    media_port: int | None = None,
) -> SippRun:
    workdir = Path(tempfile.mkdtemp(prefix="sipp-"))
    argv = [
        SIPP,
        server,
        "-sf",
        str(scenario),
        "-i",
        local_ip,
        "-p",
        str(local_port or free_udp_port()),
        "-mp",
        str(media_port or free_udp_port()),
        "-m",
        str(calls),
        "-timeout",
        f"{timeout_s}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        str(workdir / "errors.log"),
        "-recv_timeout",
        f"{timeout_s * 1000}",
        # A random Call-ID, as a phone's: sipp's default (call number, pid, address) differs in
        # a digit or two between runs, and Kamailio's dispatcher hashes the Call-ID to pick a
        # node; consecutive pids sent runs of ten calls to one node (tests/test_cluster_*).
        "-cid_str",
        f"%u-{secrets.token_hex(8)}@%s",
    ]
    if service:
        argv += ["-s", service]
    if user:
        argv += ["-au", user, "-ap", password or ""]
    if rate:
        argv += ["-r", str(rate)]
    if limit:
        argv += ["-l", str(limit)]
    for key, value in (keys or {}).items():
        argv += ["-key", key, str(value)]
    argv += extra or []
    process = subprocess.Popen(
        argv,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return SippRun(argv, process, workdir)


@dataclass
class Outcomes:
    answered: int
    busy: int
    failed: int


def _counts(run: SippRun) -> Outcomes:
    """Answered / busy / failed calls of one sipp run, from -trace_counts and -trace_stat."""

    def last_row(pattern: str) -> dict[str, str]:
        (path,) = run.workdir.glob(pattern)
        rows = [ln.split(";") for ln in path.read_text().splitlines() if ln.strip()]
        return dict(zip(rows[0], rows[-1], strict=False))

    counts = last_row("*_counts.csv")

    def first(suffix: str) -> int:
        columns = [c for c in counts if c[:1].isdigit() and c.split("_", 1)[1] == suffix]
        return int(counts[columns[0]] or 0) if columns else 0

    failed = int(last_row("*_.csv").get("FailedCall(C)") or 0)
    return Outcomes(answered=first("200_Recv"), busy=first("486_Recv"), failed=failed)


@dataclass
class CallBatch:
    """Calls placed at once: one sipp per calling line (sipp 3.6 can't vary -au per call)."""

    runs: list[SippRun]

    def per_caller(self, timeout: float = 90) -> list[Outcomes]:
        """Each calling line's outcomes, in the order of the callers given."""
        results = []
        for run in self.runs:
            code = run.wait(timeout)
            assert code in (0, 1), f"sipp exited {code}\n{run.output}"
            o = _counts(run)
            assert o.failed == 0, f"{o}\n{run.output}"
            results.append(o)
        return results

    def outcomes(self, timeout: float = 90) -> Outcomes:
        each = self.per_caller(timeout)
        return Outcomes(sum(o.answered for o in each), sum(o.busy for o in each), 0)

    def running(self) -> bool:
        return any(run.process.poll() is None for run in self.runs)

    def held_ms(self) -> list[float]:
        """uac_call_until_cut: each call's answer -> BYE time in ms (sipp's rtd 1)."""
        held: list[float] = []
        for run in self.runs:
            (rtt,) = run.workdir.glob("*_rtt.csv")
            rows = [ln.split(";") for ln in rtt.read_text().splitlines()[1:] if ln.strip()]
            held += [float(r[1]) for r in rows if len(r) > 2 and r[2].strip() == "1"]
        return held


def start_calls(
    scenario: str,
    server: str,
    callers: list[tuple[str, str]],
    dialled: str,
    *,
    hold_ms: int = 0,
    timeout_s: int = 60,
) -> CallBatch:
    """One call per (username, password) row, a line's calls all at once; not waited for."""
    per_line: dict[tuple[str, str], int] = {}
    for creds in callers:
        per_line[creds] = per_line.get(creds, 0) + 1
    runs = [
        run_sipp(
            _scenario(scenario),
            server,
            service=dialled,
            user=user,
            password=password,
            calls=count,
            rate=1000,
            limit=count,
            timeout_s=timeout_s,
            keys={"caller": user},
            extra=[
                "-d",
                str(max(hold_ms, 1)),
                "-trace_counts",
                "-trace_stat",
                "-trace_rtt",
                "-rtt_freq",
                "1",
                "-fd",
                "1",
            ],
        )
        for (user, password), count in per_line.items()
    ]
    return CallBatch(runs)


def call_many(
    server: str, callers: list[tuple[str, str]], dialled: str, *, hold_ms: int
) -> Outcomes:
    """Answered-or-busy calls, all at once; waits for them to end."""
    batch = start_calls("uac_call_or_busy.xml", server, callers, dialled, hold_ms=hold_ms)
    return batch.outcomes(timeout=60 + hold_ms / 1000)


_OK = (
    "  <send><![CDATA[\n      SIP/2.0 200 OK\n      [last_Via:]\n      [last_From:]\n"
    "      [last_To:]\n      [last_Call-ID:]\n      [last_CSeq:]\n      Content-Length: 0\n\n"
    "    ]]></send>\n"
)
_LEAVES = (  # the answering phone's own BYE (From and To are the dialog's, swapped)
    '  <send retrans="500"><![CDATA[\n      BYE [next_url] SIP/2.0\n'
    "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
    "      From: [$us]\n      To: [$peer]\n      [last_Call-ID:]\n      CSeq: 2 BYE\n"
    "      Max-Forwards: 70\n      Content-Length: 0\n\n    ]]></send>\n"
    '  <recv response="200"/>\n'
)


def _transfer_scenario(name: str, refer_to: str, notifies: int, *, hung_up: bool = False) -> Path:
    """A transferring phone's scenario: it answers ``notifies`` NOTIFYs (100 Trying, 180
    Ringing, the last one), written out one by one: sipp has no loop that stops at "the last
    one" (a NOTIFY arriving during a loop's jump is taken as unexpected). Then it leaves the
    call, or (``hung_up``) Asterisk hangs it up."""
    notify = '  <recv request="NOTIFY"/>\n' + _OK
    ending = '  <recv request="BYE"/>\n' + _OK if hung_up else _LEAVES
    return _scenario(
        name, refer_to=refer_to, notifies=str(notifies), notify_blocks=notify * notifies,
        ending=ending,
    )  # fmt: skip


#: A device answers an out-of-call OPTIONS (or NOTIFY, INFO, UPDATE) with 200 by itself, as a
#: phone does: registered at Kamailio, it gets the edge's keepalive OPTIONS (docs/cluster.md),
#: which sipp would otherwise take as an unexpected first message and count as a failed call.
KEEPALIVE_ANSWERED = ["-aa"]


@dataclass
class SipEndpoint:
    """A line as a device sees it: credentials and the Asterisk to talk to."""

    username: str
    password: str
    server: str  # "127.0.0.1:5060"

    def register(self, contact_port: int, *, expires: int = 300) -> SippRun:
        """REGISTER from the device's own socket (``contact_port``): Asterisk rewrites a line's
        Contact to where the REGISTER came from (rewrite_contact, docs/sip-edge.md), so the
        device's UAS must be started on that port after this run has ended."""
        return run_sipp(
            _scenario("register.xml"),
            self.server,
            local_port=contact_port,
            service=self.username,
            user=self.username,
            password=self.password,
            keys={"contact_port": str(contact_port), "expires": str(expires)},
        )

    def register_refused(self, contact_port: int) -> SippRun:
        return run_sipp(
            _scenario("register_refused.xml"),
            self.server,
            service=self.username,
            user=self.username,
            password=self.password,
            keys={"contact_port": str(contact_port), "expires": "300"},
        )

    def answer(
        self,
        port: int,
        *,
        calls: int = 1,
        ring_ms: int = 200,
        timeout_s: int = 30,
        rtp_echo: bool = False,
    ) -> SippRun:
        """The device: a UAS on ``port`` (where this line registered) answering ``calls`` calls.
        Every message is kept (``received``); with ``rtp_echo`` the RTP it gets goes back."""
        run = run_sipp(
            _scenario("uas_answer.xml"),
            self.server,
            local_port=port,
            calls=calls,
            timeout_s=timeout_s,
            extra=["-d", str(ring_ms), "-trace_msg", *(["-rtp_echo"] if rtp_echo else []),
                   *KEEPALIVE_ANSWERED],
        )  # fmt: skip
        return wait_bound(run, port)

    def busy(self, port: int, *, timeout_s: int = 30) -> SippRun:
        """The device answers 486 Busy Here."""
        run = run_sipp(_scenario("uas_busy.xml"), self.server, local_port=port, timeout_s=timeout_s,
                       extra=KEEPALIVE_ANSWERED)  # fmt: skip
        return wait_bound(run, port)

    def ring_unanswered(self, port: int, *, timeout_s: int = 30) -> SippRun:
        """The device rings and never answers: it succeeds when the call is cancelled."""
        run = run_sipp(
            _scenario("uas_ring_cancelled.xml"), self.server, local_port=port,
            timeout_s=timeout_s, extra=["-trace_msg", *KEEPALIVE_ANSWERED],
        )  # fmt: skip
        return wait_bound(run, port)

    def call(self, dialled: str, *, hold_ms: int = 1000, calls: int = 1, **kw: object) -> SippRun:
        return run_sipp(
            _scenario("uac_call.xml"),
            self.server,
            service=dialled,
            user=self.username,
            password=self.password,
            calls=calls,
            keys={"caller": self.username},
            extra=["-d", str(hold_ms)],
            **kw,  # type: ignore[arg-type]
        )

    def call_each(self, numbers: list[str], *, rate: float = 20, hold_ms: int = 200) -> SippRun:
        """One call to each number, in order, ``rate`` per second (sipp's injection file)."""
        csv_file = Path(tempfile.mkdtemp(prefix="sipp-inf-")) / "numbers.csv"
        csv_file.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
        return run_sipp(
            _scenario("uac_call_inf.xml"), self.server, user=self.username,
            password=self.password, calls=len(numbers), rate=rate, limit=50,
            timeout_s=60 + int(len(numbers) / rate), keys={"caller": self.username},
            extra=["-inf", str(csv_file), "-d", str(hold_ms)],
        )  # fmt: skip

    def call_and_refer(self, dialled: str, code: int, *, hold_ms: int) -> SippRun:
        """A call that, once answered, tries a blind transfer (REFER) refused with ``code``;
        hung up ``hold_ms`` after the refusal. Every message is kept (``received``)."""
        return run_sipp(
            _scenario("uac_call_refer.xml.tmpl", code=str(code)), self.server, service=dialled,
            user=self.username, password=self.password, keys={"caller": self.username},
            extra=["-d", str(hold_ms), "-trace_msg"],
        )  # fmt: skip

    def answer_and_refer(self, port: int, code: int, *, timeout_s: int = 30) -> SippRun:
        """The device answers, then tries a blind transfer (REFER) refused with ``code``, and
        waits for the caller's BYE. Every message is kept (``received``)."""
        run = run_sipp(
            _scenario("uas_answer_refer.xml.tmpl", code=str(code)), self.server,
            local_port=port, timeout_s=timeout_s, extra=["-d", "100", "-trace_msg"],
        )  # fmt: skip
        return wait_bound(run, port)

    def uri(self, user: str, headers: str = "") -> str:
        return f"sip:{user}@{self.server}{headers}"

    def answer_and_transfer(self, port: int, target: str, *, notifies: int = 3,
                            hung_up: bool = False, headers: str = "", talk_ms: int = 500,
                            timeout_s: int = 30) -> SippRun:  # fmt: skip
        """The device answers, talks ``talk_ms``, then blind-transfers the caller to ``target``
        (REFER), answers the ``notifies`` NOTIFYs Asterisk reports its progress in, then hangs
        up (docs/transfers.md)."""
        run = run_sipp(
            _transfer_scenario("uas_answer_transfer.xml.tmpl", self.uri(target, headers), notifies,
                               hung_up=hung_up), self.server,
            local_port=port, timeout_s=timeout_s, extra=["-d", str(talk_ms), "-trace_msg"],
        )  # fmt: skip
        return wait_bound(run, port)

    def call_and_transfer(self, dialled: str, target: str, *, notifies: int = 3,
                          talk_ms: int = 500) -> SippRun:  # fmt: skip
        """A call that, once answered and ``talk_ms`` later, blind-transfers the callee to
        ``target``, answers the ``notifies`` NOTIFYs, then hangs up."""
        return run_sipp(
            _transfer_scenario("uac_call_transfer.xml.tmpl", self.uri(target), notifies),
            self.server,
            service=dialled, user=self.username, password=self.password,
            keys={"caller": self.username}, extra=["-d", str(talk_ms), "-trace_msg"],
        )  # fmt: skip

    def call_refused(self, dialled: str, code: int, **kw: object) -> SippRun:
        return run_sipp(
            _scenario("uac_refused.xml.tmpl", code=str(code)),
            self.server,
            service=dialled,
            user=self.username,
            password=self.password,
            keys={"caller": self.username},
            **kw,  # type: ignore[arg-type]
        )


@dataclass
class Carrier:
    """The public network, as sipp on its own loopback address: answers what the trunk sends
    it (keeping every message for the test to read), and places calls into the platform."""

    ip: str
    port: int
    server: str  # Asterisk, "127.0.0.1:5060"

    def answer(self, *, calls: int = 1, timeout_s: int = 30) -> SippRun:
        return run_sipp(
            _scenario("uas_answer.xml"), self.server, local_port=self.port, local_ip=self.ip,
            calls=calls, timeout_s=timeout_s, extra=["-d", "100", "-trace_msg"],
        )  # fmt: skip

    def call(self, number: str, *, caller: str = "+33611223344", hold_ms: int = 300) -> SippRun:
        return run_sipp(
            _scenario("uac_noauth.xml"), self.server, service=number, local_ip=self.ip,
            keys={"caller": caller}, extra=["-d", str(hold_ms)],
        )  # fmt: skip

    def call_refused(self, number: str, code: int) -> SippRun:
        return run_sipp(
            _scenario("uac_noauth_refused.xml.tmpl", code=str(code)), self.server,
            service=number, local_ip=self.ip, keys={"caller": "+33611223344"},
            extra=["-trace_msg"],
        )  # fmt: skip


def received_invites(run: SippRun) -> list[str]:
    """The INVITEs a sipp run with -trace_msg received, as text."""
    messages = "".join(p.read_text(errors="replace") for p in run.workdir.glob("*_messages.log"))
    return [m for m in messages.split("----") if "message received" in m and "INVITE sip:" in m]


@dataclass(frozen=True)
class SipMessage:
    at: float  # epoch seconds, sipp's clock
    text: str

    @property
    def first_line(self) -> str:
        return self.text.strip().splitlines()[0] if self.text.strip() else ""


def received(run: SippRun) -> list[SipMessage]:
    """Every message a sipp run with -trace_msg received, in order, with its arrival time."""
    out = []
    logs = sorted(run.workdir.glob("*_messages.log"))
    for chunk in "".join(p.read_text(errors="replace") for p in logs).split("-" * 47)[1:]:
        header, _, body = chunk.partition("\n")
        if "message received" not in body.split("\n", 1)[0]:
            continue
        # "2026-11-26 15:34:47.623568": sipp's local time
        stamp = datetime.strptime(header.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        text = body.split("\n", 1)[1] if "\n" in body else ""
        out.append(SipMessage(stamp, text))
    return out
