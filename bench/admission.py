"""Issue 3, "Must measure": what centrex's call admission costs Asterisk.

    .venv/bin/python bench/admission.py [--quick] [--pin] [--keep] [--sandbox-rtp] [--py-spy PATH]
                                        [--perf [PATH]]

Builds a private stack (PostgreSQL, an Asterisk instance named ``bench`` on ports 45060/45038/
48088, the API just long enough to provision two lines, then the call-control daemon), and drives
it with sipp through two paths that end on the same device (a sipp UAS registered as the target
line), with the same sipp scenario, credentials style (digest) and hold time:

- ``centrex``: a caller *line* (context ``centrex-lines``): Stasis(centrex) -> the daemon admits
  the call in PostgreSQL -> ``centrex-dial`` -> Dial(PJSIP/<target>,...).
- ``bare``: a caller endpoint that is no line, pushed over ARI with the very fields of a line but
  ``context=bench-bare``, a context added over AMI at run time: Dial(PJSIP/<target>,60). The
  daemon is stopped during bare steps: that path runs without centrex at all.

1. Admission overhead: steps of sipp at R calls/s for a fixed time, R ramped (centrex at R, then
   bare at R, then the next R), a step passes with < 1 % failed calls; a path stops ramping after
   two failed steps in a row. Reported: each path's highest passing R and their ratio; and the
   same with p99 INVITE -> 180 within 1 s (a short step can pass while calls queue for seconds).
2. Latency at a fixed load (half the lower maximum): p50/p99 of the daemon's decision time (its
   ``admitted ... (x ms)`` log lines) and of INVITE -> 180 Ringing as sipp sees it (rtd 1).
3. Per step: CPU of each part, CPU contention (PSI, the daemon's run-queue wait), PostgreSQL's
   sessions, Asterisk's warnings; with --py-spy, where the daemon's time goes.

Writes a table to stdout and ``bench/results/admission-<UTC>.json``. Everything it starts is
stopped and removed at the end, also on failure and Ctrl-C. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from centrex.asterisk.pjsip_objects import LINE_OBJECT_TYPES, LineSpec, line_objects
from centrex.config import Settings
from centrex.core.credentials import digest_ha1
from centrex.sandbox.asterisk import AsteriskSandbox, AsteriskSandboxError
from centrex.sandbox.postgres import (
    TEST_ASTERISK_DB_PASSWORD,
    find_pg_bin,
    free_port,
    migrated_test_database,
)
from centrex.sandbox.processes import (
    API_READY,
    CDR_READY,
    DAEMON_READY,
    ServiceProcess,
    wait_until,
)

BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = BENCH_DIR / "sipp"
RESULTS_DIR = BENCH_DIR / "results"
SIPP = shutil.which("sipp") or "sipp"

INSTANCE = "bench"
PORTS = {"sip_port": 45060, "ami_port": 45038, "http_port": 48088}
BARE_CONTEXT = "bench-bare"
BARE_EXTEN = "_[0-9a-zA-Z]!"
FAIL_BAR = 0.01  # a step passes with fewer than 1 % failed calls
FAILS_TO_STOP = 2  # a path stops ramping after this many failed steps in a row
HOLD_MS = 500  # caller's conversation after the answer, then BYE
RING_MS = 100  # device: 180 Ringing -> 200 OK
RECV_TIMEOUT_MS = 10_000  # a call waiting longer than this for an answer counts as failed
# A step can pass the 1 % bar while calls wait seconds for the daemon: a short step absorbs a
# backlog as set-up delay. The second maximum also asks for p99 INVITE -> 180 within this.
SETUP_P99_BAR_MS = 1000
# The machine may be shared: a ramp step during which other processes used more than this many
# cores is run again (both paths, at most Mode.noise_retries times in a run).
NOISE_CORES = 0.4
# The sandbox gives each instance a block of 1000 RTP ports (centrex.sandbox.asterisk): 4 per call
# (RTP + RTCP on each of its 2 channels), so at most ~250 calls at once, whatever the CPU. Both
# paths would then fail on "Unable to create RTP instance" rather than on their own cost, so the
# bench instance gets a wider range, below every sandbox block (20000+) and the kernel's
# ephemeral ports (32768+). --sandbox-rtp keeps the 1000-port block.
BENCH_RTP_RANGE = (10000, 19999)
# --pin: the deployment shape, Asterisk on a core of its own, the control plane elsewhere.
ASTERISK_CPUS = {0}
OTHER_CPUS = {1}
ASTERISK_LOG_RE = re.compile(r"^\[[^\]]*\]\s+([A-Z]+)\[\d+\](?:\[[^\]]*\])?:?\s*(.*)$")
DECISION_RE = re.compile(r"call \S+: .* admitted, dialling .*\((\d+(?:\.\d+)?) ms\)\s*$")


@dataclass(frozen=True)
class Mode:
    name: str
    step_s: float
    rates: tuple[int, ...]
    ramp_budget_s: float  # no new ramp rate is started past this (from the start of the ramp)
    noise_retries: int  # rates measured again because other processes took CPU meanwhile


FULL = Mode("full", 15, (10, 25, 50, 75, 100, 130, 160, 200, 250, 300, 350, 400, 500, 650), 400, 3)
QUICK = Mode("quick", 5, (10, 40, 80, 130, 200, 300, 400, 500), 90, 1)


# --- small helpers -------------------------------------------------------------------------------
def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> list[str] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")
    return [head.split("(", 1)[-1], *tail.split()]  # [comm, state, ppid, ...]


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads)."""
    f = _stat_fields(Path(f"/proc/{pid}/stat"))
    return None if f is None else (int(f[12]) + int(f[13])) / CLK_TCK


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread, keyed "<name>/<tid>" (to spot one saturated thread)."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            f = _stat_fields(task / "stat")
            if f is not None:
                out[f"{f[0]}/{task.name}"] = (int(f[12]) + int(f[13])) / CLK_TCK
    return out


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = _stat_fields(entry / "stat")
            if f is not None and int(f[2]) == pid:
                kids.append(int(entry.name))
    return kids


def all_processes() -> dict[int, tuple[float, int]]:
    """Every user-space process: pid -> (CPU seconds, parent pid). Kernel threads left out."""
    out: dict[int, tuple[float, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        f = _stat_fields(entry / "stat")
        if f is None or int(f[2]) == 2 or entry.name == "2":
            continue
        out[int(entry.name)] = ((int(f[12]) + int(f[13])) / CLK_TCK, int(f[2]))
    return out


def machine_cpu() -> tuple[float, float, float, float]:
    """(busy, total, irq + softirq, steal) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total, values[5] + values[6], values[7]


def cpu_pressure_us() -> int | None:
    """PSI: microseconds during which some runnable task waited for a CPU (since boot)."""
    try:
        for line in Path("/proc/pressure/cpu").read_text().splitlines():
            if line.startswith("some "):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def runqueue_wait_s(pid: int, all_threads: bool = False) -> float | None:
    """Seconds a process's main thread (or all its threads) spent runnable, waiting for a CPU."""
    paths = (
        list(Path(f"/proc/{pid}/task").glob("*/schedstat"))
        if all_threads
        else [Path(f"/proc/{pid}/schedstat")]
    )
    total = 0
    try:
        for path in paths:
            total += int(path.read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def pin_tasks(pid: int, cpus: set[int]) -> int:
    """Set the CPU affinity of every thread of *pid* (sched_setaffinity is per thread; threads
    created later inherit their creator's); returns how many were changed."""
    changed = 0
    with contextlib.suppress(FileNotFoundError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                tid = int(task.name)
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
                    changed += 1
    return changed


def own_cpu_s() -> float:
    """This script's own CPU seconds (its sampling of /proc, PostgreSQL and ARI)."""
    t = os.times()
    return t.user + t.system


def machine_info() -> dict[str, Any]:
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    pg_bin = find_pg_bin()
    pg_version = None
    if pg_bin:
        pg_version = subprocess.run(
            [str(pg_bin / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    sipp_version = subprocess.run([SIPP, "-v"], capture_output=True, text=True, check=False)
    sipp_line = next(
        (ln.strip() for ln in sipp_version.stdout.splitlines() if "SIPp" in ln), "sipp"
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "sipp": sipp_line,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def code_version() -> dict[str, Any]:
    """Which centrex was measured: the commit, and files changed since (read-only git)."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), *args],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return proc.stdout.rstrip("\n")  # porcelain lines start with a meaningful space

    status = git("status", "--porcelain", "--", "centrex", "asterisk-config", "bench")
    changed = [ln[3:] for ln in status.splitlines() if ln.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "uncommitted": changed}


# --- one sipp step -------------------------------------------------------------------------------
@dataclass
class Caller:
    path: str  # "centrex" | "bare"
    username: str
    password: str


@dataclass
class StepResult:
    path: str
    rate: int
    duration_s: float
    kind: str  # "ramp" | "latency" | "smoke" | "warmup"
    offered: int = 0
    successful: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    sipp_exit: int | None = None
    drained: bool = True
    invite_180_ms: list[float] = field(default_factory=list)
    decision_ms: list[float] = field(default_factory=list)
    daemon_log: dict[str, int] = field(default_factory=dict)
    cpu_cores: dict[str, float] = field(default_factory=dict)
    cpu_window_s: float = 0.0
    asterisk_threads: dict[str, float] = field(default_factory=dict)
    pg_sessions: dict[str, float] = field(default_factory=dict)
    asterisk_log: dict[str, int] = field(default_factory=dict)
    asterisk_died: bool = False
    contention: dict[str, float] = field(default_factory=dict)

    @property
    def failed_ratio(self) -> float:
        total = max(self.offered, self.successful + self.failed)
        return 1.0 if total == 0 else (total - self.successful) / total

    def cpu_ms_per_call(self) -> dict[str, float]:
        """CPU time each part spent per offered call during the step."""
        per_call = self.cpu_window_s * 1000 / max(self.offered, 1)
        users = ("asterisk", "daemon", "postgres", "sipp_uac", "sipp_uas", "kernel_irq")
        return {k: round(v * per_call, 2) for k, v in self.cpu_cores.items() if k in users}

    @property
    def passed(self) -> bool:
        return self.failed_ratio < FAIL_BAR and not self.asterisk_died

    @property
    def prompt(self) -> bool:
        """Passed, and set up in time: p99 INVITE -> 180 within SETUP_P99_BAR_MS."""
        p99 = percentile(self.invite_180_ms, 99)
        return self.passed and p99 is not None and p99 <= SETUP_P99_BAR_MS

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "rate_cps": self.rate,
            "duration_s": self.duration_s,
            "offered": self.offered,
            "successful": self.successful,
            "failed": max(self.offered, self.successful + self.failed) - self.successful,
            "failed_pct": round(100 * self.failed_ratio, 2),
            "failed_by_reason": self.failed_by_reason,
            "passed": self.passed,
            "prompt": self.prompt,
            "wall_s": round(self.wall_s, 2),
            "sipp_exit": self.sipp_exit,
            "drained": self.drained,
            "invite_180_ms": dist(self.invite_180_ms),
            "decision_ms": dist(self.decision_ms) if self.path == "centrex" else None,
            "daemon_log": self.daemon_log or None,
            "cpu_cores": {k: round(v, 3) for k, v in self.cpu_cores.items()},
            "cpu_ms_per_call": self.cpu_ms_per_call(),
            "asterisk_top_threads": {k: round(v, 3) for k, v in self.asterisk_threads.items()},
            "pg_sessions": self.pg_sessions or None,
            "asterisk_died": self.asterisk_died,
            "contention": {k: round(v, 2) for k, v in self.contention.items()} or None,
            "asterisk_log": self.asterisk_log or None,
        }


def dist(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


# Buckets of the daemon's time, first match wins (a stack's frames joined with ";").
PROFILE_BUCKETS = (
    ("database (SQLAlchemy ORM + asyncpg)", ("sqlalchemy/", "asyncpg/")),
    (
        "ARI: requests and events (websockets/httpx, json)",
        ("websockets/", "httpx/", "httpcore/", "ari_events", "centrex/asterisk/ari.py", "json/"),
    ),
    ("AMI (panoramisk)", ("panoramisk/", "asterisk/ami")),
    ("logging", ("logging/",)),
    ("import machinery at run time", ("<frozen importlib",)),
)
# Within those: costs worth naming on their own.
PROFILE_DETAILS = (
    ("httpcore's failed 'import sniffio' per request", "current_async_library"),
    ("SQLAlchemy pool pre-ping per checkout", "_async_ping"),
    ("CallRegistry.admit", "CallRegistry.admit"),
    ("CallRegistry.mark_answered", "CallRegistry.mark_answered"),
    ("CallRegistry.release", "CallRegistry.release"),
    ("ARI set_variable", "AriClient.set_variable"),
    ("ARI continue_in_dialplan", "AriClient.continue_in_dialplan"),
)


def summarise_py_spy(raw: str) -> dict[str, Any]:
    """Shares of the daemon's busy samples (py-spy raw format: 'frame;frame;... count')."""
    buckets: Counter[str] = Counter()
    details: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        if stack.rsplit(";", 1)[-1].startswith("EpollSelector.select"):
            continue  # waiting for I/O: idle
        total += n
        bucket = next(
            (name for name, needles in PROFILE_BUCKETS if any(x in stack for x in needles)),
            "event loop, daemon code, other",
        )
        buckets[bucket] += n
        for name, needle in PROFILE_DETAILS:
            if needle in stack:
                details[name] += n

    def pct(c: Counter[str]) -> dict[str, float]:
        return {k: round(100 * v / max(total, 1), 1) for k, v in c.most_common()}

    return {"samples": total, "share_pct": pct(buckets), "of_which_pct": pct(details)}


def read_csv_rows(path: Path) -> list[list[str]]:
    return [ln.split(";") for ln in path.read_text(errors="replace").splitlines() if ln.strip()]


# --- the bench ------------------------------------------------------------------------------------
class Bench:
    def __init__(
        self,
        mode: Mode,
        keep: bool,
        py_spy: str | None = None,
        rtp_range: tuple[int, int] | None = BENCH_RTP_RANGE,
        pin: bool = False,
        perf: str | None = None,
    ) -> None:
        self.mode = mode
        # --pin: Asterisk alone on ASTERISK_CPUS, everything else (this script and so every
        # process it starts: PostgreSQL, the daemon, both sipp, the API) on OTHER_CPUS.
        self.pin = pin
        self.repinned = 0
        self.rtp_range = rtp_range
        self.keep = keep
        self.py_spy = py_spy
        self.profile: dict[str, Any] | None = None
        self.perf = perf
        self.asterisk_profile: dict[str, Any] = {}
        self._perf_pid: int | None = None
        self.noise_retries = mode.noise_retries
        self.crashes: list[dict[str, str]] = []
        self.work = Path(tempfile.mkdtemp(prefix="centrex-bench-"))
        self.loop = asyncio.new_event_loop()
        self.cleanups: list[tuple[str, Any]] = []
        self.sipps: set[subprocess.Popen[bytes]] = set()
        self.settings: Settings | None = None
        self.sandbox: AsteriskSandbox | None = None
        self.daemon: ServiceProcess | None = None
        self.shipper: ServiceProcess | None = None
        self.asterisk_pid: int | None = None
        self.postmaster_pid: int | None = None
        self.uas: subprocess.Popen[bytes] | None = None
        self.target = ""
        self.callers: dict[str, Caller] = {}
        self.steps: list[StepResult] = []
        self.step_no = 0
        self.notes: list[str] = []

    # --- lifecycle -------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def cleanup(self) -> None:
        for proc in list(self.sipps):
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(Exception):
                    proc.wait(5)
        for what, fn in reversed(self.cleanups):
            try:
                fn()
            except BaseException as exc:  # keep cleaning up whatever happens
                print(f"cleanup of {what} failed: {exc!r}", file=sys.stderr)
        self.cleanups.clear()
        self.loop.close()
        if self.keep:
            print(f"work directory kept: {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def setup(self) -> None:
        self.log(f"work directory {self.work}")
        if self.pin:
            # Before anything is started: every child inherits this affinity.
            pin_tasks(os.getpid(), OTHER_CPUS)
            self.log(
                f"pinned: Asterisk on CPU {sorted(ASTERISK_CPUS)}, everything else (PostgreSQL, "
                f"daemon, sipp, this script) on CPU {sorted(OTHER_CPUS)}"
            )
        # PostgreSQL: a private cluster and a migrated database, removed at the end.
        pg = migrated_test_database(self.work / "pg", prefix="centrex_bench")
        url = self.loop.run_until_complete(pg.__aenter__())
        self.cleanups.append(
            ("postgres", lambda: self.loop.run_until_complete(pg.__aexit__(None, None, None)))
        )
        self.db_url = url
        self.postmaster_pid = self.loop.run_until_complete(self._postmaster_pid())
        self.pg = self.loop.run_until_complete(self._connect())  # samples pg_stat_activity
        self.cleanups.append(("pg sampler", lambda: self.loop.run_until_complete(self.pg.close())))
        self.log(f"PostgreSQL up (postmaster pid {self.postmaster_pid})")

        token = secrets.token_urlsafe(16)
        self.settings = s = Settings(
            _env_file=None,
            var_dir=self.work / "var",
            database_url=url,
            asterisk_instance=INSTANCE,
            api_port=free_port(),
            api_token=token,
            ami_secret=secrets.token_urlsafe(16),
            ari_password=secrets.token_urlsafe(16),
            ari_control_password=secrets.token_urlsafe(16),
            ari_cdr_password=secrets.token_urlsafe(16),
            sip_qualify_frequency_s=0,  # sipp devices answer no OPTIONS outside a call
            # Asterisk reads the lines from the scratch cluster as its read-only role (issue 14).
            asterisk_db_password=TEST_ASTERISK_DB_PASSWORD,
            # The API only provisions and is then stopped; its reconciler would delete the bare
            # endpoint (a stray in the centrex astdb family) if it ever ran again.
            reconcile_interval_s=86400,
            node_name="bench",
            **PORTS,
        )
        self.sandbox = AsteriskSandbox(s)
        if self.sandbox.is_running():
            raise SystemExit(
                f"an Asterisk instance {INSTANCE!r} is already running (left by an interrupted "
                f"bench?): stop it with `centrex sandbox down` and CENTREX_ASTERISK_INSTANCE="
                f"{INSTANCE}, or pick other ports/instance"
            )
        self.sandbox.ensure_installed()
        self.cleanups.append(("asterisk", self.remove_asterisk))
        self.sandbox.render_config()
        self.sandbox.wipe_provisioned_state()
        self.start_asterisk()
        if self.rtp_range:
            self.widen_rtp(*self.rtp_range)
        status = self.sandbox.status()
        self.asterisk_pid = status.pid
        self.asterisk_version = status.version
        self.log(f"Asterisk {status.version} up (pid {status.pid}, {status.mode})")

        self.provision_lines()
        self.start_device()
        self.add_bare_path()
        self.daemon = ServiceProcess("control", s, self.work / "logs")
        self.cleanups.append(("daemon", self.daemon.stop))
        # The CDR shipper is a process of its own since issue 11; it runs with the daemon, as it
        # did inside it, and its CPU is counted with the daemon's (figures stay comparable).
        self.shipper = ServiceProcess("cdr", s, self.work / "logs")
        self.cleanups.append(("cdr shipper", self.shipper.stop))

    def start_asterisk(self, tries: int = 10) -> None:
        """Start the instance; our ports lie in the kernel's ephemeral range, so another
        program's outgoing connection may hold one for a moment: wait and try again."""
        assert self.sandbox is not None
        for attempt in range(tries):
            try:
                self.sandbox.start()
                if self.pin:
                    pin_tasks(self.sandbox.status().pid, ASTERISK_CPUS)
                return
            except AsteriskSandboxError as exc:
                if "ports already in use" not in str(exc) or attempt == tries - 1:
                    raise
                self.log(f"{exc}; trying again in 3 s")
                time.sleep(3)

    def widen_rtp(self, start: int, end: int) -> None:
        """Rewrite this instance's rtp.conf (not the templates) and reload res_rtp_asterisk."""
        assert self.sandbox is not None
        rtp_conf = self.sandbox.host_path(self.sandbox.dirs.etc / "rtp.conf")
        text = rtp_conf.read_text()
        text = re.sub(r"(?m)^rtpstart\s*=.*$", f"rtpstart = {start}", text)
        text = re.sub(r"(?m)^rtpend\s*=.*$", f"rtpend = {end}", text)
        rtp_conf.write_text(text)
        self.sandbox.cli("module reload res_rtp_asterisk.so")
        shown = self.sandbox.cli("rtp show settings")
        if f"{start} - {end}" not in shown.replace("\t", " ") and str(end) not in shown:
            raise RuntimeError(f"RTP range not applied:\n{shown}")
        self.log(f"RTP ports {start}-{end} for this instance")

    def remove_asterisk(self) -> None:
        assert self.sandbox is not None
        if self.keep:
            with contextlib.suppress(OSError):
                shutil.copy(self.sandbox.log_file, self.work / "asterisk-messages.log")
        self.sandbox.remove_instance()

    async def _postmaster_pid(self) -> int | None:
        # The application's role may not read data_directory (it is no superuser): the
        # postmaster is the parent of this connection's backend, read while it lives.
        conn = await self._connect()
        try:
            pid_of_backend = await conn.fetchval("SELECT pg_backend_pid()")
            f = _stat_fields(Path(f"/proc/{pid_of_backend}/stat"))
        finally:
            await conn.close()
        return int(f[2]) if f else None

    async def _connect(self) -> asyncpg.Connection:
        u = make_url(self.db_url)
        return await asyncpg.connect(
            user=u.username, password=u.password, host=u.host, port=u.port, database=u.database
        )

    def ari(self) -> httpx.Client:
        s = self.settings
        assert s is not None
        return httpx.Client(
            base_url=s.ari_url,
            auth=(s.ari_username, s.ari_password.get_secret_value()),
            timeout=10,
        )

    def provision_lines(self) -> None:
        s = self.settings
        assert s is not None
        api_service = ServiceProcess("api", s, self.work / "logs")
        self.cleanups.append(("api", api_service.stop))
        api_service.start_and_wait(API_READY)
        with httpx.Client(
            base_url=f"http://{s.api_host}:{s.api_port}",
            headers={"Authorization": f"Bearer {s.api_token.get_secret_value()}"},
            timeout=15,
        ) as api:
            customer = api.post("/v1/customers", json={"name": "Bench"})
            customer.raise_for_status()
            lines = []
            for label in ("bench caller", "bench target"):
                body = {"customer_id": customer.json()["id"], "label": label, "max_calls": 1000}
                response = api.post("/v1/lines", json=body)
                if response.status_code != 201:
                    raise RuntimeError(f"creating a line failed: {response.text}")
                lines.append(response.json())
        caller, target = lines
        self.callers["centrex"] = Caller("centrex", caller["sip_username"], caller["sip_password"])
        self.target = target["sip_username"]
        self.target_password = target["sip_password"]
        with self.ari() as ari:

            def pushed() -> bool:
                return all(
                    ari.get(f"/asterisk/config/dynamic/res_pjsip/endpoint/{u}").status_code == 200
                    for u in (caller["sip_username"], self.target)
                )

            wait_until(pushed, 30, "both lines in Asterisk")
        # The daemon alone is the admission path; the API (and its reconciler) goes now.
        api_service.stop()
        self.log(f"lines provisioned: caller {caller['sip_username']}, target {self.target}")

    def start_device(self) -> None:
        """The target line's device: one sipp UAS for the whole run, registered as the line.

        It registers from the very socket it answers on, then answers there: line endpoints
        rewrite a registration's contact to where its packets came from (NAT, docs/sip-edge.md).
        """
        self.device_port = free_udp_port()
        (self.work / "device").mkdir()
        self.register_device()
        self._start_uas()
        self.log(f"device of {self.target} answering on 127.0.0.1:{self.device_port}")

    def _start_uas(self) -> None:
        s = self.settings
        assert s is not None
        wd = self.work / "device"
        self.uas = self._popen(
            [
                SIPP, f"{s.asterisk_host}:{s.sip_port}", "-sf", str(SCENARIOS / "uas_answer.xml"),
                "-i", "127.0.0.1", "-p", str(self.device_port), "-mp", str(free_udp_port()),
                "-m", "100000000", "-d", str(RING_MS), "-nostdin",
                "-trace_err", "-error_file", str(wd / "errors.log"),
                "-recv_timeout", "60000",
            ],
            wd,
        )  # fmt: skip

    def register_device(self) -> None:
        """REGISTER from the device's own port (its UAS stopped meanwhile, if it runs)."""
        s = self.settings
        assert s is not None
        running = self.uas is not None and self.uas.poll() is None
        if running:
            assert self.uas is not None
            self.uas.terminate()
            self.uas.wait(10)
        register = self._popen(
            [
                SIPP, f"{s.asterisk_host}:{s.sip_port}", "-sf", str(SCENARIOS / "register.xml"),
                "-i", "127.0.0.1", "-p", str(self.device_port), "-m", "1",
                "-s", self.target, "-au", self.target, "-ap", self.target_password,
                "-key", "contact_port", str(self.device_port), "-key", "expires", "3600",
                "-timeout", "15s", "-timeout_error", "-nostdin",
            ],
            self.work / "device",
        )  # fmt: skip
        if register.wait(30) != 0:
            raise RuntimeError(f"the target device could not register (sipp {register.returncode})")
        if running:
            self._start_uas()

    def add_bare_path(self) -> None:
        """A caller endpoint that is no centrex line, and a context that just dials."""
        s = self.settings
        assert s is not None
        username = "benchbare" + secrets.token_hex(3)
        password = secrets.token_urlsafe(18)
        spec = LineSpec(username, digest_ha1(username, s.sip_realm, password), s.sip_realm,
                        s.asterisk_host)  # fmt: skip
        objects = {o.type: o for o in line_objects(spec)}
        with self.ari() as ari:
            for kind in LINE_OBJECT_TYPES:
                fields = dict(objects[kind].fields)
                if kind == "endpoint":
                    fields["context"] = BARE_CONTEXT
                body = {"fields": [{"attribute": k, "value": v} for k, v in fields.items()]}
                r = ari.put(f"/asterisk/config/dynamic/res_pjsip/{kind}/{username}", json=body)
                if r.status_code >= 300:
                    raise RuntimeError(f"ARI PUT {kind}/{username}: {r.status_code} {r.text}")
        self.add_bare_context()
        self.callers["bare"] = Caller("bare", username, password)
        self.log(f"bare path: endpoint {username}, context {BARE_CONTEXT} -> Dial(PJSIP/...,60)")

    def add_bare_context(self) -> None:
        """[bench-bare] exten => _[0-9a-zA-Z]!,1,Dial(PJSIP/${EXTEN},60), from Asterisk's CLI:
        in memory only, never in asterisk-config/ (the product's AMI user may not change the
        dialplan)."""
        s = self.settings
        assert s is not None and self.sandbox is not None
        self.sandbox.cli(
            f'dialplan add extension {BARE_EXTEN},1,Dial,"PJSIP/${{EXTEN}},60" into {BARE_CONTEXT}'
        )
        shown = self.sandbox.cli(f"dialplan show {BARE_CONTEXT}")
        if "Dial(PJSIP/${EXTEN},60)" not in shown:
            raise RuntimeError(f"context {BARE_CONTEXT} not as expected:\n{shown}")

    # --- Asterisk dying under load ---------------------------------------------------------------
    def asterisk_alive(self) -> bool:
        return self.asterisk_pid is not None and proc_cpu_s(self.asterisk_pid) is not None

    def recover_asterisk(self, during: str) -> None:
        """Asterisk died during a step: say how (the kernel's last word on it), start it again
        with the same state (astdb keeps the endpoints) and carry on."""
        assert self.sandbox is not None
        dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, check=False).stdout
        last = [ln for ln in dmesg.splitlines() if "asterisk" in ln and "segfault" in ln][-1:]
        why = last[0].split("] ", 1)[-1] if last else "no kernel message"
        self.notes.append(f"Asterisk died during {during}: {why}")
        self.log(f"Asterisk died during {during} ({why}); starting it again")
        self.crashes.append({"during": during, "kernel": why})
        self.set_daemon(False)
        self.sandbox.stop()
        self.start_asterisk()
        if self.rtp_range:
            self.widen_rtp(*self.rtp_range)
        self.asterisk_pid = self.sandbox.status().pid
        self.add_bare_context()
        self.register_device()

    def _popen(self, argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        with (cwd / "sipp.out").open("ab") as out:
            proc = subprocess.Popen(
                argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.sipps.add(proc)
        return proc

    # --- the daemon ------------------------------------------------------------------------------
    def daemon_running(self) -> bool:
        return bool(self.daemon and self.daemon.process and self.daemon.process.poll() is None)

    def set_daemon(self, running: bool) -> None:
        assert self.daemon is not None and self.shipper is not None
        if running and not self.daemon_running():
            # Ready once its Stasis app is registered: it follows calls from the CEL journal,
            # opened before that, and holds no AMI session.
            self.shipper.start_and_wait(CDR_READY)
            self.daemon.start_and_wait(DAEMON_READY)
        elif not running and self.daemon_running():
            self.daemon.stop()
            self.shipper.stop()

    # --- measuring -------------------------------------------------------------------------------
    def check_pins(self) -> None:
        """--pin: put back on its CPU any thread that is elsewhere (there should be none:
        threads inherit their creator's affinity), and count them."""
        if not self.pin:
            return
        others = {os.getpid(), *(p.pid for p in self.sipps if p.poll() is None)}
        if self.daemon_running():
            others.add(self.daemon.process.pid)
        if self.postmaster_pid:
            others |= {self.postmaster_pid, *children_of(self.postmaster_pid)}
        moved = sum(pin_tasks(pid, OTHER_CPUS) for pid in others)
        if self.asterisk_pid:
            moved += pin_tasks(self.asterisk_pid, ASTERISK_CPUS)
        if moved:
            self.repinned += moved
            self.log(f"pin: {moved} threads were off their CPU, moved back")

    def cpu_snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {
            "t": time.monotonic(),
            "machine": machine_cpu(),
            "bench_script": own_cpu_s(),
            "processes": all_processes(),
            "psi_us": cpu_pressure_us(),
        }
        if self.asterisk_pid:
            snap["asterisk"] = proc_cpu_s(self.asterisk_pid) or 0.0
            snap["asterisk_threads"] = thread_cpu_s(self.asterisk_pid)
        if self.asterisk_pid:
            snap["asterisk_wait"] = runqueue_wait_s(self.asterisk_pid, all_threads=True)
        if self.daemon_running():
            assert self.daemon and self.daemon.process
            snap["daemon"] = proc_cpu_s(self.daemon.process.pid) or 0.0
            if self.shipper and self.shipper.running and self.shipper.process:
                snap["daemon"] += proc_cpu_s(self.shipper.process.pid) or 0.0
            snap["daemon_wait"] = runqueue_wait_s(self.daemon.process.pid)
        if self.postmaster_pid:
            pids = [self.postmaster_pid, *children_of(self.postmaster_pid)]
            snap["postgres_pids"] = {p: proc_cpu_s(p) or 0.0 for p in pids}
        if self.uas:
            snap["sipp_uas"] = proc_cpu_s(self.uas.pid) or 0.0
        return snap

    def cpu_delta(
        self, a: dict[str, Any], b: dict[str, Any], uac_cpu: float
    ) -> tuple[dict, dict, dict]:
        wall = b["t"] - a["t"]
        cores: dict[str, float] = {}
        for key in ("asterisk", "daemon", "sipp_uas", "bench_script"):
            if key in a and key in b and b[key] >= a[key]:  # not a process that died meanwhile
                cores[key] = (b[key] - a[key]) / wall
        if "postgres_pids" in b:
            before = a.get("postgres_pids", {})
            used = sum(v - before.get(p, 0.0) for p, v in b["postgres_pids"].items())
            cores["postgres"] = used / wall
        cores["sipp_uac"] = uac_cpu / wall
        busy = b["machine"][0] - a["machine"][0]
        total = b["machine"][1] - a["machine"][1]
        cores["machine_busy"] = (os.cpu_count() or 1) * busy / max(total, 1)
        irq = b["machine"][2] - a["machine"][2]
        cores["kernel_irq"] = (os.cpu_count() or 1) * irq / max(total, 1)
        # Whatever else ran on the machine meanwhile (other users' work, the kernel, this script).
        cores["other"] = cores["machine_busy"] - sum(
            v for k, v in cores.items() if k != "machine_busy"
        )
        # Of which: other people's processes (not this script, its children, Asterisk, Postgres).
        cores["other_processes"] = self.foreign_cpu_s(a["processes"], b["processes"]) / wall
        # Contention: time spent runnable but waiting for a CPU.
        contention: dict[str, float] = {}
        steal = b["machine"][3] - a["machine"][3]
        contention["hypervisor_steal_cores"] = (os.cpu_count() or 1) * steal / max(total, 1)
        if a.get("psi_us") is not None and b.get("psi_us") is not None:
            contention["psi_cpu_some_pct"] = 100 * (b["psi_us"] - a["psi_us"]) / 1e6 / wall
        for key, name in (("daemon_wait", "daemon_loop_waiting_for_cpu_pct"),
                          ("asterisk_wait", "asterisk_threads_waiting_for_cpu")):  # fmt: skip
            if a.get(key) is not None and b.get(key) is not None and b[key] >= a[key]:
                share = (b[key] - a[key]) / wall
                contention[name] = 100 * share if name.endswith("pct") else share
        threads: dict[str, float] = {}
        if "asterisk_threads" in a and "asterisk_threads" in b:
            before = a["asterisk_threads"]
            deltas = {n: (v - before.get(n, 0.0)) / wall for n, v in b["asterisk_threads"].items()}
            threads = dict(sorted(deltas.items(), key=lambda kv: -kv[1])[:3])
        return cores, threads, contention

    def foreign_cpu_s(
        self, a: dict[int, tuple[float, int]], b: dict[int, tuple[float, int]]
    ) -> float:
        """CPU seconds used by everything but this run: this script and its descendants (sipp,
        the daemon, py-spy), our Asterisk and our PostgreSQL with their children."""
        procs = {**a, **b}
        ours = {p for p in (os.getpid(), self.asterisk_pid, self.postmaster_pid) if p}
        changed = True
        while changed:
            changed = False
            for pid, (_, ppid) in procs.items():
                if pid not in ours and ppid in ours:
                    ours.add(pid)
                    changed = True
        used = 0.0
        for pid, (cpu, _) in b.items():
            if pid not in ours:
                used += cpu - a.get(pid, (0.0, 0))[0]
        return max(used, 0.0)

    def drain(self, path: str, timeout: float = 12) -> bool:
        """Wait until Asterisk has no channel left and, on the centrex path, the daemon has
        released every call. Calls sipp gave up on (it sends no CANCEL) can linger: after
        ``timeout`` they are hung up over ARI, so the next step starts clean. False then."""
        if not self.asterisk_alive():
            return False
        clean = True
        deadline = time.monotonic() + timeout
        with self.ari() as ari:

            def channels() -> list[dict[str, Any]]:
                try:
                    return ari.get("/channels").json()
                except (httpx.HTTPError, ValueError):
                    return [{}]

            while (left := channels()) and time.monotonic() < deadline:
                time.sleep(0.25)
            if left:
                clean = False
                for channel in left:
                    if "id" in channel:
                        with contextlib.suppress(httpx.HTTPError):
                            ari.delete(f"/channels/{channel['id']}")
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda: not channels(), 20, "channels hung up")
        if path == "centrex":
            try:
                wait_until(lambda: self.pg_sample()["active_calls"] == 0, 20, "calls released")
            except TimeoutError:
                clean = False  # the daemon's restart (next centrex step) releases them
        return clean

    def pg_sample(self) -> dict[str, int]:
        """PostgreSQL as the daemon uses it: its sessions by state, waits on locks, and the
        calls it records as in progress."""
        row = self.loop.run_until_complete(
            self.pg.fetchrow(
                """
                SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS lock_waits,
                       count(*) FILTER (WHERE state = 'idle in transaction') AS idle_in_tx,
                       count(*) FILTER (WHERE state = 'active') AS active,
                       count(*) AS sessions,
                       (SELECT count(*) FROM active_calls) AS active_calls
                FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                """
            )
        )
        return dict(row)

    def run_step(
        self, path: str, rate: int, duration_s: float, kind: str = "ramp", calls: int | None = None
    ) -> StepResult:
        s = self.settings
        assert s is not None and self.daemon is not None
        if path == "centrex" and not self.daemon_running():
            self.set_daemon(True)
            if kind != "warmup":  # a fresh daemon: open its pool, warm its caches, uncounted
                self.run_step("centrex", 10, 1, kind="warmup", calls=10)
        elif path == "bare":
            self.set_daemon(False)  # the bare path runs without centrex
        caller = self.callers[path]
        self.step_no += 1
        wd = self.work / "steps" / f"{self.step_no:02d}-{kind}-{path}-{rate}"
        wd.mkdir(parents=True)
        offered = calls or max(1, round(rate * duration_s))
        result = StepResult(path, rate, duration_s, kind, offered=offered)
        log_offset = self.daemon.log_path.stat().st_size if self.daemon.log_path.exists() else 0
        ast_offset = self.asterisk_log_size()
        argv = [
            SIPP, f"{s.asterisk_host}:{s.sip_port}", "-sf", str(SCENARIOS / "uac_call.xml"),
            "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
            "-s", self.target, "-au", caller.username, "-ap", caller.password,
            "-key", "caller", caller.username,
            "-r", str(rate), "-m", str(offered), "-l", "5000", "-d", str(HOLD_MS),
            "-recv_timeout", str(RECV_TIMEOUT_MS),
            "-timeout", f"{int(duration_s + RECV_TIMEOUT_MS / 1000 + 60)}s", "-timeout_error",
            "-nostdin", "-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
            "-trace_err", "-error_file", str(wd / "errors.log"),
        ]  # fmt: skip
        self.check_pins()
        before = self.cpu_snapshot()
        started = time.monotonic()
        proc = self._popen(argv, wd)
        uac_cpu = 0.0
        deadline = started + duration_s + RECV_TIMEOUT_MS / 1000 + 90
        samples: list[dict[str, int]] = []
        next_sample = started + 0.5
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                uac_cpu = usage.ru_utime + usage.ru_stime
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                self.notes.append(f"step {wd.name}: sipp killed after its deadline")
                break
            if time.monotonic() >= next_sample:
                next_sample += 0.5
                if not self.asterisk_alive():  # no point in sipp waiting for it
                    proc.kill()
                    proc.wait()
                    break
                if path == "centrex":
                    samples.append(self.pg_sample())
            time.sleep(0.05)
        self.sipps.discard(proc)
        after = self.cpu_snapshot()  # the load window: sipp's run, not the drain after it
        result.wall_s = time.monotonic() - started
        result.sipp_exit = proc.returncode
        result.cpu_cores, result.asterisk_threads, result.contention = self.cpu_delta(
            before, after, uac_cpu
        )
        result.cpu_window_s = after["t"] - before["t"]
        if samples:
            result.pg_sessions = {
                f"{stat}_{agg}": round(fn([x[stat] for x in samples]), 1)
                for stat in ("lock_waits", "idle_in_tx", "active", "sessions", "active_calls")
                for agg, fn in (("mean", lambda v: sum(v) / len(v)), ("max", max))
            }
        result.drained = self.drain(path)
        if not self.asterisk_alive():
            result.asterisk_died = True
            result.asterisk_log = self.asterisk_log_since(ast_offset)
            self.steps.append(result)
            self.recover_asterisk(wd.name)
            return result

        stats = sorted(wd.glob("uac_call_*_.csv"))
        if stats:
            rows = read_csv_rows(stats[0])
            last = dict(zip(rows[0], rows[-1], strict=False))
            result.successful = int(last.get("SuccessfulCall(C)") or 0)
            result.failed = int(last.get("FailedCall(C)") or 0)
            result.failed_by_reason = {
                k.removesuffix("(C)"): int(v)
                for k, v in last.items()
                if k.startswith("Failed") and k.endswith("(C)") and v.strip() not in ("", "0")
                and k != "FailedCall(C)"
            }  # fmt: skip
        for rtt in wd.glob("uac_call_*_rtt.csv"):
            for row in read_csv_rows(rtt)[1:]:
                if len(row) >= 3 and row[2].strip() == "1":
                    with contextlib.suppress(ValueError):
                        result.invite_180_ms.append(float(row[1]))
        if path == "centrex":
            self.daemon_log_of_step(result, log_offset)
        result.asterisk_log = self.asterisk_log_since(ast_offset)
        self.steps.append(result)
        return result

    def asterisk_log_size(self) -> int:
        assert self.sandbox is not None
        with contextlib.suppress(OSError):
            return self.sandbox.log_file.stat().st_size
        return 0

    def asterisk_log_since(self, offset: int, top: int = 4) -> dict[str, int]:
        """Asterisk's notices, warnings and errors since ``offset``: the most frequent ones,
        numbers masked, with their counts."""
        assert self.sandbox is not None
        try:
            with self.sandbox.log_file.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return {}
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if m := ASTERISK_LOG_RE.match(line):
                message = re.sub(r"\d+", "N", m.group(2))[:160]
                counts[f"{m.group(1)} {message}"] += 1
        return dict(counts.most_common(top))

    def daemon_log_of_step(self, result: StepResult, offset: int) -> None:
        assert self.daemon is not None
        with self.daemon.log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if m := DECISION_RE.search(line):
                result.decision_ms.append(float(m.group(1)))
                counts["admitted"] += 1
            elif " refused: " in line:
                counts["refused"] += 1
            elif "no decision" in line:
                counts["no_decision"] += 1
            elif "gone before it could proceed" in line:
                counts["gone_before_proceed"] += 1
            elif " WARNING " in line or " ERROR " in line:
                counts["warnings_errors"] += 1
        result.daemon_log = dict(counts)

    def step_line(self, r: StepResult) -> str:
        c = r.cpu_cores
        cpu = " ".join(
            f"{name}={c[key]:.2f}"
            for name, key in (
                ("ast", "asterisk"), ("dmn", "daemon"), ("pg", "postgres"),
                ("uac", "sipp_uac"), ("uas", "sipp_uas"), ("all", "machine_busy"),
                ("others", "other_processes"),
            )
            if key in c
        )  # fmt: skip
        dec = ""
        if r.path == "centrex":
            dec = (
                f" decision p50/p99 {fmt(percentile(r.decision_ms, 50))}/"
                f"{fmt(percentile(r.decision_ms, 99))} ms"
            )
        if r.contention:
            w = r.contention
            dec += f"; waiting for a CPU: psi {w.get('psi_cpu_some_pct', 0):.0f}%"
            if "daemon_loop_waiting_for_cpu_pct" in w:
                dec += f", daemon loop {w['daemon_loop_waiting_for_cpu_pct']:.0f}%"
        if r.pg_sessions:
            g = r.pg_sessions
            dec += (
                f"; pg lock-waits {g['lock_waits_mean']:.1f} (max {g['lock_waits_max']:.0f}),"
                f" idle-in-tx {g['idle_in_tx_mean']:.1f}, calls up {g['active_calls_mean']:.0f}"
            )
        return (
            f"{r.kind:7} {r.path:7} {r.rate:4d} cps: {r.successful}/{r.offered} ok, "
            f"{100 * r.failed_ratio:5.2f}% failed {'PASS' if r.passed else 'FAIL'}"
            f"{'' if r.drained else ' (not drained)'}{' ASTERISK DIED' if r.asterisk_died else ''}"
            f"; INVITE->180 p50/p99 "
            f"{fmt(percentile(r.invite_180_ms, 50))}/{fmt(percentile(r.invite_180_ms, 99))} ms"
            f"{dec}; cores {cpu}"
        )

    # --- the measurements ------------------------------------------------------------------------
    def smoke(self) -> None:
        for path in ("centrex", "bare"):
            r = self.run_step(path, 2, 1, kind="smoke", calls=2)
            self.log(self.step_line(r))
            if r.successful != r.offered:
                raise RuntimeError(
                    f"smoke test of the {path} path failed; see "
                    f"{self.work}/steps (run with --keep to look at it)"
                )

    def logged_step(self, path: str, rate: int) -> StepResult:
        r = self.run_step(path, rate, self.mode.step_s)
        self.log(self.step_line(r))
        return r

    def ramp(self) -> dict[str, dict[str, Any]]:
        state = {
            p: {
                "max_cps": 0,
                "prompt_max_cps": 0,
                "fails_in_row": 0,
                "stopped": False,
                "stopped_by": None,
            }
            for p in ("centrex", "bare")
        }
        started = time.monotonic()
        for rate in self.mode.rates:
            if all(st["stopped"] for st in state.values()):
                break
            if time.monotonic() - started > self.mode.ramp_budget_s:
                for st in state.values():
                    if not st["stopped"]:
                        st["stopped"], st["stopped_by"] = True, "time budget"
                self.notes.append(f"ramp stopped by its time budget before {rate} cps")
                break
            paths = [p for p in ("centrex", "bare") if not state[p]["stopped"]]
            results = [self.logged_step(p, rate) for p in paths]
            noisy = [
                r
                for r in results
                if r.cpu_cores.get("other_processes", 0) > NOISE_CORES
                and not r.asterisk_died
                # ... where it can have changed the verdict: a failed or slow step, a busy machine
                and (not r.prompt or r.cpu_cores.get("machine_busy", 0) > 1.6)
            ]
            in_budget = time.monotonic() - started < self.mode.ramp_budget_s
            if noisy and self.noise_retries > 0 and in_budget:
                # Someone else's work took a core's share: measure this rate again, both paths.
                self.noise_retries -= 1
                for r in results:
                    r.kind = "ramp-noisy"
                self.notes.append(
                    f"{rate} cps run again: other processes used "
                    f"{max(r.cpu_cores['other_processes'] for r in noisy):.2f} cores during it"
                )
                self.log(f"other load during the {rate} cps steps; running them again")
                results = [self.logged_step(p, rate) for p in paths]
            for r in results:
                st = state[r.path]
                if r.prompt:
                    st["prompt_max_cps"] = rate
                if r.passed:
                    st["max_cps"], st["fails_in_row"] = rate, 0
                elif r.asterisk_died:
                    st["stopped"], st["stopped_by"] = True, "Asterisk died during its step"
                else:
                    st["fails_in_row"] += 1
                    if st["fails_in_row"] >= FAILS_TO_STOP:
                        st["stopped"], st["stopped_by"] = True, "failed twice in a row"
        for st in state.values():
            if not st["stopped"]:
                st["stopped_by"] = "highest rate of the ramp passed: a lower bound"
        return state

    def latency(self, rate: int) -> dict[str, Any]:
        out: dict[str, Any] = {"rate_cps": rate, "duration_s": self.mode.step_s}
        for path in ("centrex", "bare"):
            # A few calls first so connection pools and caches are warm, then the measured step.
            self.run_step(path, rate, 1, kind="warmup", calls=max(5, min(rate, 50)))
            spy = self.start_py_spy() if path == "centrex" else None
            perf = self.start_perf(path)
            r = self.run_step(path, rate, self.mode.step_s, kind="latency")
            self.log(self.step_line(r))
            if spy is not None:
                self.profile = self.finish_py_spy(spy, rate)
            if perf is not None:
                self.asterisk_profile[path] = self.finish_perf(perf, rate)
            out[path] = {
                "failed_pct": round(100 * r.failed_ratio, 2),
                "invite_180_ms": dist(r.invite_180_ms),
                "decision_ms": dist(r.decision_ms) if path == "centrex" else None,
                "cpu_cores": {k: round(v, 3) for k, v in r.cpu_cores.items()},
                "cpu_ms_per_call": r.cpu_ms_per_call(),
                "contention": {k: round(v, 2) for k, v in r.contention.items()},
            }
        return out

    # --- where Asterisk's time goes (optional: --perf) ----------------------------------------
    def start_perf(self, path: str) -> tuple[subprocess.Popen[bytes], Path] | None:
        if not self.perf or not self.asterisk_pid:
            return None
        out = self.work / f"asterisk-perf-{path}.data"
        self._perf_pid = self.asterisk_pid
        # System-wide, kept to Asterisk's process at report time (--pid): per-process
        # recording (-p) gives no samples on this VM.
        argv = [
            self.perf, "record", "-e", "cpu-clock", "-F", "499", "-a", "-o", str(out),
            "--", "sleep", str(int(self.mode.step_s)),
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, out

    def finish_perf(
        self, perf: tuple[subprocess.Popen[bytes], Path], rate: int
    ) -> dict[str, Any] | None:
        """Share of Asterisk's samples by shared object (the Debian build is stripped: static
        functions have no names, but which module or library the time is in does)."""
        proc, out = perf
        try:
            proc.wait(self.mode.step_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert self.sandbox is not None
        root = str(self.sandbox.host_path(PurePosixPath("/")))
        pid = self._perf_pid
        report = subprocess.run(
            [self.perf, "report", "-i", str(out), "--symfs", root, "--pid", str(pid),
             "--percentage", "relative",
             "--sort", "dso", "--stdio", "--percent-limit", "0.5"],
            capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        shares: dict[str, float] = {}
        for line in report.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].endswith("%") and not line.startswith("#"):
                shares[parts[1].rsplit("/", 1)[-1]] = float(parts[0].rstrip("%"))
        if not shares:
            self.notes.append(f"perf gave no profile of Asterisk: {report[:200]!r}")
            return None
        return {"rate_cps": rate, "share_pct_by_object": shares}

    # --- where the daemon's time goes (optional: --py-spy) ------------------------------------
    def start_py_spy(self) -> tuple[subprocess.Popen[bytes], Path] | None:
        if not self.py_spy or not self.daemon_running():
            return None
        assert self.daemon is not None and self.daemon.process is not None
        out = self.work / "daemon-py-spy.txt"
        argv = [
            self.py_spy, "record", "-p", str(self.daemon.process.pid), "-r", "200",
            "-d", str(int(self.mode.step_s)), "-f", "raw", "-o", str(out), "--nonblocking",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return proc, out

    def finish_py_spy(
        self, spy: tuple[subprocess.Popen[bytes], Path], rate: int
    ) -> dict[str, Any] | None:
        proc, out = spy
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not out.exists():
            self.notes.append("py-spy gave no profile of the daemon")
            return None
        profile = summarise_py_spy(out.read_text(errors="replace"))
        profile["rate_cps"] = rate
        shutil.copy(out, RESULTS_DIR / f"daemon-py-spy-{time.strftime('%Y%m%dT%H%M%S')}.txt")
        return profile

    def cpu_at(self, path: str, rate: int) -> dict[str, Any] | None:
        """Who used the CPU during the path's ramp step at ``rate``."""
        for r in self.steps:
            if r.kind == "ramp" and r.path == path and r.rate == rate:
                cores = {k: round(v, 3) for k, v in r.cpu_cores.items()}
                return {
                    "rate_cps": rate,
                    "cores": cores,
                    "ms_per_call": r.cpu_ms_per_call(),
                    "contention": {k: round(v, 2) for k, v in r.contention.items()},
                }
        return None

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        started_at = datetime.now(UTC)
        machine = machine_info()
        code = code_version()
        self.setup()
        self.smoke()
        self.log(
            f"ramp: {self.mode.step_s:.0f} s steps at {', '.join(map(str, self.mode.rates))} cps"
        )
        state = self.ramp()
        maxima = {p: st["max_cps"] for p, st in state.items()}
        prompt = {p: st["prompt_max_cps"] for p, st in state.items()}

        def ratio(m: dict[str, int]) -> float | None:
            return round(m["centrex"] / m["bare"], 3) if m["bare"] else None

        # A load both paths sustain: half the lower maximum, the stricter one when there is one.
        basis = prompt if min(prompt.values()) > 0 else maxima
        lat_rate = max(2, min(basis.values()) // 2)
        self.log(f"latency at {lat_rate} cps (half the lower maximum)")
        latency = self.latency(lat_rate)
        self.set_daemon(False)
        return {
            "benchmark": "admission",
            "mode": self.mode.name,
            "started_at": started_at.isoformat(timespec="seconds"),
            "elapsed_s": round(time.monotonic() - began, 1),
            "machine": {**machine, "asterisk": self.asterisk_version},
            "code": code,
            "method": {
                "step_s": self.mode.step_s,
                "rates_cps": list(self.mode.rates),
                "fail_bar_pct": 100 * FAIL_BAR,
                "fails_to_stop": FAILS_TO_STOP,
                "hold_ms": HOLD_MS,
                "ring_ms": RING_MS,
                "recv_timeout_ms": RECV_TIMEOUT_MS,
                "setup_p99_bar_ms": SETUP_P99_BAR_MS,
                "scenario": "bench/sipp/uac_call.xml (digest auth, 1 caller per path)",
                "bare_dialplan": f"[{BARE_CONTEXT}] exten => {BARE_EXTEN},1,"
                "Dial(PJSIP/${EXTEN},60)",
                "daemon_during_bare_steps": "stopped",
                "pinning": (
                    f"Asterisk on CPU {sorted(ASTERISK_CPUS)}, everything else on CPU "
                    f"{sorted(OTHER_CPUS)} ({self.repinned} threads had to be moved back)"
                    if self.pin
                    else "none: every process on every core"
                ),
                "rtp_ports": "sandbox block (1000)"
                if self.rtp_range is None
                else f"{self.rtp_range[0]}-{self.rtp_range[1]}",
            },
            "max_cps": maxima,
            "ratio_centrex_over_bare": ratio(maxima),
            "max_cps_setup_p99_within_bar": prompt,
            "ratio_setup_p99_within_bar": ratio(prompt),
            "ramp_end": {p: st["stopped_by"] for p, st in state.items()},
            "latency": latency,
            "cpu_at_max": {p: self.cpu_at(p, maxima[p]) for p in ("centrex", "bare")},
            "daemon_profile": self.profile,
            "asterisk_profile": self.asterisk_profile,
            "asterisk_deaths": self.crashes,
            "steps": [r.summary() for r in self.steps],
            "notes": self.notes,
        }


def print_report(report: dict[str, Any]) -> None:
    print()
    print(f"== admission benchmark ({report['mode']}), {report['elapsed_s']:.0f} s ==")
    m = report["machine"]
    print(
        f"machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Asterisk {m['asterisk']}, {m['postgresql']}, {m['sipp']}"
    )
    print(f"pinning: {report['method']['pinning']}")
    header = f"{'rate':>5} | {'centrex fail%':>13} {'180 p50/p99 ms':>15} {'decision p50/p99':>17}"
    header += f" | {'bare fail%':>10} {'180 p50/p99 ms':>15}"
    print(header)
    by_rate: dict[int, dict[str, dict[str, Any]]] = {}
    for st in report["steps"]:
        if st["kind"] == "ramp":
            by_rate.setdefault(st["rate_cps"], {})[st["path"]] = st

    def cells(st: dict[str, Any] | None, with_decision: bool) -> str:
        if st is None:
            return f"{'-':>13} {'-':>15}" + (f" {'-':>17}" if with_decision else "")
        mark = " " if st["prompt"] else ("*" if st["passed"] else "!")
        fail = f"{st['failed_pct']:.2f}{mark}"
        i = st["invite_180_ms"]
        out = f"{fail:>13} {fmt(i['p50']) + '/' + fmt(i['p99']):>15}"
        if with_decision:
            d = st["decision_ms"]
            out += f" {fmt(d['p50']) + '/' + fmt(d['p99']):>17}"
        return out

    for rate in sorted(by_rate):
        row = by_rate[rate]
        bare = cells(row.get("bare"), False).replace(f"{'':>3}", "", 1)
        print(f"{rate:>5} | {cells(row.get('centrex'), True)} | {bare}")
    print(
        f"('!' = step failed the 1 % bar; '*' = passed it, but p99 INVITE->180 > "
        f"{SETUP_P99_BAR_MS} ms)"
    )
    mx = report["max_cps"]
    ratio = report["ratio_centrex_over_bare"]
    print(
        f"max cps with < 1 % failed: centrex {mx['centrex']}, bare {mx['bare']}, "
        f"ratio {fmt(ratio, digits=2)}   (ramp end: centrex: {report['ramp_end']['centrex']}; "
        f"bare: {report['ramp_end']['bare']})"
    )
    mp = report["max_cps_setup_p99_within_bar"]
    print(
        f"max cps with < 1 % failed and p99 INVITE->180 <= {SETUP_P99_BAR_MS} ms: centrex "
        f"{mp['centrex']}, bare {mp['bare']}, ratio "
        f"{fmt(report['ratio_setup_p99_within_bar'], digits=2)}"
    )
    lat = report["latency"]
    c, b = lat["centrex"], lat["bare"]
    print(
        f"latency at {lat['rate_cps']} cps: decision p50/p99 "
        f"{fmt(c['decision_ms']['p50'])}/{fmt(c['decision_ms']['p99'])} ms; INVITE->180 "
        f"p50/p99 centrex {fmt(c['invite_180_ms']['p50'])}/{fmt(c['invite_180_ms']['p99'])} ms, "
        f"bare {fmt(b['invite_180_ms']['p50'])}/{fmt(b['invite_180_ms']['p99'])} ms"
    )
    for path, at in report["cpu_at_max"].items():
        if at:
            cores = ", ".join(f"{k} {v:.2f}" for k, v in at["cores"].items())
            print(f"CPU cores used at the {path} maximum ({at['rate_cps']} cps): {cores}")
    for path, prof in (report.get("asterisk_profile") or {}).items():
        if prof:
            top = sorted(prof["share_pct_by_object"].items(), key=lambda kv: -kv[1])[:8]
            shares = ", ".join(f"{k} {v}%" for k, v in top)
            print(f"Asterisk's samples at {prof['rate_cps']} cps, {path} (perf): {shares}")
    if prof := report.get("daemon_profile"):
        shares = ", ".join(f"{k} {v}%" for k, v in prof["share_pct"].items())
        print(f"daemon's busy time at {prof['rate_cps']} cps (py-spy): {shares}")
        print("  of which: " + ", ".join(f"{k} {v}%" for k, v in prof["of_which_pct"].items()))
    for note in report["notes"]:
        print(f"note: {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s steps, coarser ramp (< 3 min)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--sandbox-rtp",
        action="store_true",
        help="keep the sandbox's 1000 RTP ports (~250 calls at once) instead of "
        f"{BENCH_RTP_RANGE[0]}-{BENCH_RTP_RANGE[1]}",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        default=shutil.which("py-spy"),
        help="py-spy binary: profiles the daemon during the latency step (default: on PATH)",
    )
    parser.add_argument(
        "--perf",
        metavar="PATH",
        nargs="?",
        const=shutil.which("perf") or "perf",
        default=None,
        help="profile Asterisk with perf during both latency steps (by shared object)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help=f"Asterisk alone on CPU {sorted(ASTERISK_CPUS)}, everything else (PostgreSQL, "
        f"daemon, both sipp) on CPU {sorted(OTHER_CPUS)}, for both paths",
    )
    args = parser.parse_args()
    if args.pin and not (ASTERISK_CPUS | OTHER_CPUS) <= os.sched_getaffinity(0):
        print(f"--pin needs CPUs {sorted(ASTERISK_CPUS | OTHER_CPUS)}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root (PostgreSQL and Asterisk sandboxes need it)", file=sys.stderr)
        return 2
    if not shutil.which(SIPP):
        print("sipp not found: apt-get install sip-tester", file=sys.stderr)
        return 2

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    RESULTS_DIR.mkdir(exist_ok=True)
    bench = Bench(
        QUICK if args.quick else FULL,
        keep=args.keep,
        py_spy=args.py_spy,
        rtp_range=None if args.sandbox_rtp else BENCH_RTP_RANGE,
        pin=args.pin,
        perf=args.perf,
    )
    try:
        report = bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        bench.cleanup()
    print_report(report)
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS_DIR / f"admission-{stamp}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
