"""Issue 14, "Must measure": provisioning rate, restore time and memory at N lines, with lines
read by Asterisk from PostgreSQL (sorcery realtime, docs/provisioning-realtime.md).

    .venv/bin/python bench/provisioning.py [--lines N] [--concurrency C] [--no-single]
                                           [--single-sample K]

Builds a private stack (PostgreSQL, an Asterisk instance named ``benchprov`` on ports 46060/
46038/48188, the API on 48180, ``reconcile_interval_s`` = 3600 so only the start passes run),
then:

1. Phase "single": ``POST /v1/lines`` for N lines, C requests in flight; each must answer
   ``sync_state: synced`` (Asterisk reads the line once committed). Lines/s, latency, CPU of the
   API, Asterisk and PostgreSQL (from /proc/<pid>/stat).
2. Phase "import": N more lines in ``POST /v1/lines/import`` requests of at most 100,000 rows.
   Lines/s, CPU during the import, then Asterisk's CPU second by second for 60 s after it.
3. Served: 200 lines drawn at random from both phases are read over ARI (every one must be
   there) and 3 register with sipp at the first attempt.
4. Restore: Asterisk stopped, its astdb deleted, started again; the time from the start until
   the 200 drawn lines are all served again, and how long Asterisk's own start took.
5. One reconcile pass with nothing to change, in-process (as tests/test_reconcile.py).
6. Resident memory (VmRSS) of the API, the call-control daemon and Asterisk with 2N lines.

With ``--single-sample K`` the order changes so that the single rate is measured *at* N lines
without creating N lines one by one (100,000 single POSTs take ~40 minutes on a loaded machine):
the N lines are imported first (phase 2, its 60 s of Asterisk CPU after it included), then
phase 1 makes K single ``POST /v1/lines`` (C in flight) with those N lines already in the same
customer. Served, restore, the quiet pass and memory then run with N + K lines (not 2N).
With ``--no-single`` only the import runs: N lines.

Writes a table to stdout and ``bench/results/provisioning-<UTC>.json``. Everything it starts is
stopped and removed at the end, also on failure and Ctrl-C. See docs/benchmarks-provisioning.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from centrex.asterisk.ami import AmiClient
from centrex.asterisk.ari import AriClient
from centrex.config import Settings
from centrex.db.session import make_engine, make_sessionmaker
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import TEST_ASTERISK_DB_PASSWORD, migrated_test_database
from centrex.sandbox.processes import API_READY, DAEMON_READY, ServiceProcess
from centrex.services.provisioning import AsteriskProjector
from centrex.services.reconcile import reconcile_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sip_agent import SipEndpoint, free_udp_port  # the tests' sipp phone

TOKEN = "bench-provisioning-token"
RESULTS = Path(__file__).resolve().parent / "results"
IMPORT_MAX = 100_000  # rows per POST /v1/lines/import
SAMPLE = 200  # lines checked in Asterisk after each phase
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- /proc helpers --------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def children_of(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == parent:
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by named groups of processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups  # name -> callable returning the group's pids now
        self.before: dict[str, dict[int, float]] = {}
        self.t0 = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {p: cpu_seconds(p) for p in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self.before, self.t0 = self._sample(), time.monotonic()

    def stop(self) -> dict[str, float]:
        after, elapsed = self._sample(), time.monotonic() - self.t0

        # Per process: a PostgreSQL backend that exits between the samples took its CPU with it
        # (a lower bound then, never a negative share); one born since counts from zero.
        def used(name: str) -> float:
            was = self.before.get(name, {})
            return sum(now - was.get(pid, 0.0) for pid, now in after[name].items())

        # share of one CPU, in %: 100 = one core busy the whole time
        return {n: round(100 * used(n) / elapsed, 1) for n in after}


# --- the bench ------------------------------------------------------------------------------------
class Bench:
    def __init__(
        self,
        lines: int,
        concurrency: int,
        *,
        single: bool = True,
        api_workers: int = 1,
        single_sample: int | None = None,
    ) -> None:
        self.n = lines
        self.concurrency = concurrency
        self.single = single
        self.single_sample = single_sample  # K single POSTs after importing the N lines
        self.api_workers = api_workers
        self.work = Path(tempfile.mkdtemp(prefix="centrex-benchprov-"))
        self.results: dict[str, Any] = {
            "lines": lines,
            "concurrency": concurrency,
            "api_workers": api_workers,
            "single_sample": single_sample,
            "machine": machine(),
        }
        self.sandbox: AsteriskSandbox | None = None
        self.api: ServiceProcess | None = None
        self.control: ServiceProcess | None = None
        self.settings: Settings | None = None
        self.pg_postmaster: int | None = None
        self.made: list[tuple[str, str]] = []  # (username, password) of every line

    # --- stack ----------------------------------------------------------------------------------
    def make_settings(self, database_url: str) -> Settings:
        return Settings(
            _env_file=None,
            var_dir=self.work / "var",
            database_url=database_url,
            asterisk_instance="benchprov",
            sip_port=46060,
            ami_port=46038,
            http_port=48188,
            api_port=48180,
            api_token=TOKEN,
            api_rate_limit_per_s=0,  # the bench measures provisioning at full speed
            api_workers=self.api_workers,
            ami_secret="benchprov-ami-secret",
            ari_password="benchprov-ari-password",
            ari_control_password="benchprov-ari-control",
            ari_cdr_password="benchprov-ari-cdr",
            asterisk_db_password=TEST_ASTERISK_DB_PASSWORD,  # the scratch cluster's
            sip_qualify_frequency_s=0,  # no phone answers OPTIONS here
            reconcile_interval_s=3600,
        )

    def asterisk_pids(self) -> list[int]:
        pid = self.sandbox._find_pid() if self.sandbox else None
        return [pid] if pid else []

    def api_pids(self) -> list[int]:
        if not (self.api and self.api.running):
            return []
        return [self.api.process.pid, *children_of(self.api.process.pid)]  # and its workers

    def pg_pids(self) -> list[int]:
        if not self.pg_postmaster:
            return []
        return [self.pg_postmaster, *children_of(self.pg_postmaster)]

    def meter(self) -> CpuMeter:
        return CpuMeter({"api": self.api_pids, "asterisk": self.asterisk_pids, "pg": self.pg_pids})

    async def find_postmaster(self, url: str) -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            # read while the backend lives: its parent is the postmaster
            stat = await asyncio.to_thread(Path(f"/proc/{backend}/stat").read_text)
        finally:
            await conn.close()
        self.pg_postmaster = int(stat.rsplit(")", 1)[1].split()[1])

    # --- phases ---------------------------------------------------------------------------------
    async def run(self) -> None:
        async with migrated_test_database(self.work / "pg", prefix="centrex_benchprov") as url:
            self.settings = settings = self.make_settings(url)
            await self.find_postmaster(url)
            self.sandbox = AsteriskSandbox(settings)
            try:
                await asyncio.to_thread(self.start_asterisk)
                self.api = ServiceProcess("api", settings, self.work / "logs")
                await asyncio.to_thread(self.api.start_and_wait, API_READY)
                async with self.client() as api:
                    cid = (await ok(api.post("/v1/customers", json={"name": "Bench"})))["id"]
                    if self.single_sample:
                        # N lines present first (fast), then K single creations among them.
                        await self.bulk_import(api, cid)
                        await self.single_posts(api, cid, self.single_sample, present=self.n)
                    else:
                        if self.single:
                            await self.single_posts(api, cid, self.n, present=0)
                        await self.bulk_import(api, cid)
                self.results["lines_at_end"] = len(self.made)
                self.results["load_avg_at_end"] = os.getloadavg()
                self.results["served"] = await self.served()
                await self.restore()
                await self.quiet_pass()
                await self.memory()
            finally:
                await asyncio.to_thread(self.teardown)

    def start_asterisk(self) -> None:
        self.sandbox.ensure_installed()
        self.sandbox.render_config()
        self.sandbox.wipe_provisioned_state()
        self.sandbox.start()
        self.results["asterisk_version"] = self.sandbox.version()

    def client(self) -> httpx.AsyncClient:
        s = self.settings
        return httpx.AsyncClient(
            base_url=f"http://{s.api_host}:{s.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=600,
            limits=httpx.Limits(max_connections=self.concurrency + 4),
        )

    async def single_posts(
        self, api: httpx.AsyncClient, cid: str, count: int, *, present: int
    ) -> None:
        not_synced = 0
        latencies: list[float] = []

        async def create(i: int) -> None:
            nonlocal not_synced
            t = time.perf_counter()
            # Its own extension: 16 creations at once for one customer that each take "the
            # lowest free one" collide, and five collisions in a row answer 500 (reported).
            # From 200000 up: the imported lines took the lowest free ones from 200.
            body = {"customer_id": cid, "label": f"l{i}", "extension": str(200_000 + i)}
            line = await ok(api.post("/v1/lines", json=body))
            latencies.append(time.perf_counter() - t)
            not_synced += line["sync_state"] != "synced"
            self.made.append((line["sip_username"], line["sip_password"]))

        log(
            f"phase single: {count} x POST /v1/lines, {self.concurrency} in flight, "
            f"{present} lines present before"
        )
        load_before = os.getloadavg()
        meter = self.meter()
        meter.start()
        t0 = time.monotonic()
        await bounded(create, count, self.concurrency)
        elapsed = time.monotonic() - t0
        cpu = meter.stop()
        self.results["single"] = out = {
            "count": count,
            "lines_present_before": present,
            "seconds": round(elapsed, 2),
            "per_s": round(count / elapsed, 1),
            "latency_s": summary(latencies),
            "cpu_pct": cpu,
            # CPU seconds per line: the rate on a shared machine depends on the share it got
            "cpu_ms_per_line": {k: round(10 * v * elapsed / count, 2) for k, v in cpu.items()},
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
            "responses_not_synced": not_synced,
        }
        log(f"  {out}")

    async def bulk_import(self, api: httpx.AsyncClient, cid: str) -> None:
        log(f"phase import: {self.n} lines, at most {IMPORT_MAX} a request")
        load_before = os.getloadavg()
        meter = self.meter()
        meter.start()
        t0 = time.monotonic()
        for first in range(0, self.n, IMPORT_MAX):
            rows = [
                {"customer_id": cid, "label": f"i{k}"}
                for k in range(first, min(first + IMPORT_MAX, self.n))
            ]
            answer = await ok(api.post("/v1/lines/import", json=rows))
            self.made += [(x["sip_username"], x["sip_password"]) for x in answer["lines"]]
        elapsed = time.monotonic() - t0
        cpu = meter.stop()
        # Asterisk after the import: nothing was pushed, so there is nothing for it to digest.
        after: list[float] = []
        for _ in range(60):
            second = CpuMeter({"asterisk": self.asterisk_pids})
            second.start()
            await asyncio.sleep(1)
            after.append(second.stop()["asterisk"])
        self.results["import"] = out = {
            "seconds": round(elapsed, 2),
            "per_s": round(self.n / elapsed, 1),
            "cpu_pct": cpu,
            "asterisk_after_pct_per_s": after,
            "asterisk_after_max_pct": max(after),
            "load_avg_before": load_before,
        }
        log(f"  {out}")

    async def served(self) -> str:
        """SAMPLE lines drawn at random: all read over ARI; 3 register at the first attempt."""
        sample = random.sample(self.made, min(SAMPLE, len(self.made)))
        async with AriClient.from_settings(self.settings, "api") as ari:
            found = [await ari.get_object("res_pjsip", "endpoint", u) for u, _ in sample]
        server = f"{self.settings.asterisk_host}:{self.settings.sip_port}"
        for username, password in sample[:3]:
            phone = SipEndpoint(username, password, server)
            await asyncio.to_thread(phone.register(free_udp_port()).expect_success)
        served = f"{sum(f is not None for f in found)}/{len(sample)}"
        log(f"  served: {served}, 3 registered")
        return served

    async def restore(self) -> None:
        log("restore: Asterisk stopped, astdb deleted, started")
        await asyncio.to_thread(self.sandbox.stop)
        db = self.sandbox.astdb_file
        for path in (db, *(db.with_name(db.name + x) for x in ("-wal", "-shm", "-journal"))):
            path.unlink(missing_ok=True)
        meter = self.meter()
        meter.start()
        t0 = time.monotonic()
        await asyncio.to_thread(self.sandbox.start, 600)
        started = time.monotonic() - t0
        served = await self.served()
        seconds = time.monotonic() - t0
        self.results["restore"] = out = {
            "asterisk_start_s": round(started, 2),
            "seconds": round(seconds, 2),
            "served": served,
            "cpu_pct": meter.stop(),
        }
        log(f"  {out}")

    async def quiet_pass(self) -> None:
        """One reconcile pass with nothing to change, in-process (as tests/test_reconcile.py)."""
        s = self.settings
        engine = make_engine(s.database_url_required)
        ami = AmiClient.from_settings(s)
        ami.start()
        try:
            await ami.wait_connected(10)
            projector = AsteriskProjector.from_settings(s)
            first = await reconcile_lines(make_sessionmaker(engine), projector, ami)
            t = time.perf_counter()
            report = await reconcile_lines(
                make_sessionmaker(engine), projector, ami, trunks_seen=first.trunks
            )
            self.results["quiet_pass"] = out = {
                "pass_s": round(time.perf_counter() - t, 3),
                "expired": report.expired,
                "deleted": report.deleted,
                "failed": report.failed,
            }
        finally:
            ami.close()
            await engine.dispose()
        log(f"  quiet pass: {out}")

    async def memory(self) -> None:
        self.control = ServiceProcess("control", self.settings, self.work / "logs")
        await asyncio.to_thread(self.control.start_and_wait, DAEMON_READY, 60)
        await asyncio.sleep(self.settings.call_sweep_interval_s * 2 + 1)  # its startup sweep
        mem = {
            # With several workers: the supervisor and every worker, together.
            "api_rss_mib": mib(sum(rss_kib(pid) or 0 for pid in self.api_pids())),
            "control_rss_mib": mib(rss_kib(self.control.process.pid)),
            "asterisk_rss_mib": mib(rss_kib(self.asterisk_pids()[0])),
        }
        log(f"  memory {mem}")
        self.results["memory"] = mem

    def teardown(self) -> None:
        for service in (self.control, self.api):
            if service is not None:
                with contextlib.suppress(Exception):
                    service.stop()
        if self.sandbox is not None:
            with contextlib.suppress(Exception):
                self.sandbox.remove_instance()


# --- helpers --------------------------------------------------------------------------------------
async def ok(request) -> dict:
    response = await request
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: "
            f"{response.status_code} {response.text[:500]}"
        )
    return response.json()


async def bounded(work, n: int, concurrency: int) -> None:
    queue = iter(range(n))

    async def worker() -> None:
        for i in queue:
            await work(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    v = sorted(values)
    return {
        "p50": round(v[len(v) // 2], 4),
        "p99": round(v[min(len(v) - 1, int(len(v) * 0.99))], 4),
        "max": round(v[-1], 4),
    }


def mib(kib: int | None) -> float | None:
    return round(kib / 1024, 1) if kib is not None else None


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_total_gib": round(int(meminfo[1]) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def print_table(r: dict[str, Any]) -> None:
    p, i, rs = r.get("single", {}), r.get("import", {}), r.get("restore", {})
    m, q = r.get("memory", {}), r.get("quiet_pass", {})
    rows = [
        ("lines imported (N)", r["lines"]),
        ("single POSTs / lines present before them",
         f"{p.get('count')} / {p.get('lines_present_before')}"),
        ("POST /v1/lines, 16 in flight (lines/s)", p.get("per_s")),
        ("  latency p50/p99 (s)", _pair(p.get("latency_s"))),
        ("  CPU % api/asterisk/pg", _cpu(p.get("cpu_pct"))),
        ("  CPU ms per line api/asterisk/pg", _cpu(p.get("cpu_ms_per_line"))),
        ("bulk import (lines/s)", i.get("per_s")),
        ("  CPU % api/asterisk/pg", _cpu(i.get("cpu_pct"))),
        ("  Asterisk CPU % in the 60 s after (max)", i.get("asterisk_after_max_pct")),
        ("lines at the end", r.get("lines_at_end")),
        ("served in Asterisk (of sample)", r.get("served")),
        ("restore: Asterisk start (s)", rs.get("asterisk_start_s")),
        ("restore: start to sample served (s)", rs.get("seconds")),
        ("quiet reconcile pass (s)", q.get("pass_s")),
        ("RSS api / control / asterisk (MiB)",
         f"{m.get('api_rss_mib')} / {m.get('control_rss_mib')} / {m.get('asterisk_rss_mib')}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    for key, val in rows:
        print(f"{key:<{width}}  {val}")


def _pair(d: dict | None) -> str:
    return f"{d['p50']} / {d['p99']}" if d else "-"


def _cpu(d: dict | None) -> str:
    return f"{d['api']} / {d['asterisk']} / {d['pg']}" if d else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-single", action="store_true", help="skip the POST /v1/lines phase")
    parser.add_argument(
        "--single-sample",
        type=int,
        metavar="K",
        help="import the N lines first, then time K single POST /v1/lines among them",
    )
    parser.add_argument("--api-workers", type=int, default=1, help="CENTREX_API_WORKERS")
    args = parser.parse_args()
    if args.single_sample is not None and (args.single_sample < 1 or args.no_single):
        parser.error("--single-sample takes K >= 1 and excludes --no-single")
    bench = Bench(
        args.lines,
        args.concurrency,
        single=not args.no_single,
        api_workers=args.api_workers,
        single_sample=args.single_sample,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    status = 0
    try:
        asyncio.run(bench.run())
    except (Exception, KeyboardInterrupt) as exc:
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {bench.results['error']}")
        if bench.api is not None:
            log(f"API log:\n{bench.api.log_text()[-4000:]}")
        status = 1
    finally:
        shutil.rmtree(bench.work, ignore_errors=True)
    bench.results["run_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"provisioning-{stamp}.json"
    path.write_text(json.dumps(bench.results, indent=2) + "\n")
    print_table(bench.results)
    print(f"run time {bench.results['run_s']} s; results in {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
