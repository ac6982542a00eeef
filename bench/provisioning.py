"""Issue 4, "Must measure": provisioning rate, restore time and memory at N lines.

    .venv/bin/python bench/provisioning.py [--lines N] [--concurrency C]

Builds a private stack (PostgreSQL, an Asterisk instance named ``benchprov`` on ports 46060/
46038/48188, the API on 48180, ``reconcile_interval_s`` = 3600 so only the start/login passes
run), then:

1. Provisioning rate, end to end into Asterisk, over HTTP with a bearer token: one customer
   (FR, documents verified), one block of numbers, then N lines with C requests in flight.
   Phase "lines": ``POST /v1/lines`` for every line (each must answer ``sync_state: synced``,
   i.e. the line is in Asterisk when the call returns). Phase "numbers": for every line,
   ``POST /v1/numbers/allocate`` then ``PATCH /v1/lines/{id}`` with ``main_number``. Reported:
   lines/s of each phase and of the whole (three calls per line), and CPU use of the API,
   Asterisk and PostgreSQL during each phase (from /proc/<pid>/stat). At the end, Asterisk's
   astdb must hold N endpoints, auths and aors.
2. Restore time: stop the API, wipe Asterisk's astdb (restarts Asterisk), start the API, and
   time from the API's start until astdb holds all 3N objects again (polled every 0.5 s). Then
   one reconcile pass with nothing to change, timed in-process (as tests/test_reconcile.py).
3. Resident memory (VmRSS) of the API, the call-control daemon (after its startup sweep) and
   Asterisk, with N lines provisioned.

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
import re
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
from centrex.asterisk.errors import AsteriskUnavailable
from centrex.config import Settings
from centrex.db.session import make_engine, make_sessionmaker
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import migrated_test_database
from centrex.sandbox.processes import API_READY, DAEMON_READY, ServiceProcess, wait_until
from centrex.services.provisioning import AsteriskProjector
from centrex.services.reconcile import reconcile_lines

TOKEN = "bench-provisioning-token"
RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 10_000  # the API loads at most this many numbers per block
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
        self.before: dict[str, float] = {}
        self.t0 = 0.0

    def _sample(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids()) for name, pids in self.groups.items()}

    def start(self) -> None:
        self.before, self.t0 = self._sample(), time.monotonic()

    def stop(self) -> dict[str, float]:
        after, elapsed = self._sample(), time.monotonic() - self.t0
        # share of one CPU, in %: 100 = one core busy the whole time
        return {n: round(100 * (after[n] - self.before[n]) / elapsed, 1) for n in after}


# --- the bench ------------------------------------------------------------------------------------
class Bench:
    def __init__(self, lines: int, concurrency: int) -> None:
        self.n = lines
        self.concurrency = concurrency
        self.work = Path(tempfile.mkdtemp(prefix="centrex-benchprov-"))
        self.results: dict[str, Any] = {
            "lines": lines,
            "concurrency": concurrency,
            "machine": machine(),
        }
        self.sandbox: AsteriskSandbox | None = None
        self.api: ServiceProcess | None = None
        self.control: ServiceProcess | None = None
        self.settings: Settings | None = None
        self.pg_postmaster: int | None = None

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
            ami_secret="benchprov-ami-secret",
            ari_password="benchprov-ari-password",
            ari_control_password="benchprov-ari-control",
            ari_cdr_password="benchprov-ari-cdr",
            sip_qualify_frequency_s=0,  # no phone registers here
            reconcile_interval_s=3600,
        )

    def asterisk_pids(self) -> list[int]:
        pid = self.sandbox._find_pid() if self.sandbox else None
        return [pid] if pid else []

    def api_pids(self) -> list[int]:
        return [self.api.process.pid] if self.api and self.api.running else []

    def pg_pids(self) -> list[int]:
        if not self.pg_postmaster:
            return []
        return [self.pg_postmaster, *children_of(self.pg_postmaster)]

    async def find_postmaster(self, url: str) -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            # read while the backend lives: its parent is the postmaster
            stat = await asyncio.to_thread(Path(f"/proc/{backend}/stat").read_text)
        finally:
            await conn.close()
        self.pg_postmaster = int(stat.rsplit(")", 1)[1].split()[1])

    def astdb_counts(self) -> dict[str, int]:
        """Objects under astdb family ``centrex``, by type (endpoint, auth, aor, ...)."""
        out = self.sandbox.cli("database show centrex", timeout=60)
        counts: dict[str, int] = {}
        for match in re.finditer(r"^/centrex/([a-z_]+)/", out, re.MULTILINE):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts

    def line_objects_present(self) -> int:
        counts = self.astdb_counts()
        return min(counts.get(t, 0) for t in ("endpoint", "auth", "aor"))

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
                await self.provision()
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
            timeout=60,
            limits=httpx.Limits(max_connections=self.concurrency + 4),
        )

    async def provision(self) -> None:
        meter = CpuMeter({"api": self.api_pids, "asterisk": self.asterisk_pids, "pg": self.pg_pids})
        async with self.client() as api:
            customer = await ok(
                api.post("/v1/customers", json={"name": "Bench", "external_ref": "B1"})
            )
            cid = customer["id"]
            await ok(
                api.patch(
                    f"/v1/customers/{cid}",
                    json={"residence_country": "FR", "documents_verified": True},
                )
            )
            for first in range(140_000_000, 140_000_000 + self.n, BLOCK):
                last = min(first + BLOCK, 140_000_000 + self.n) - 1
                await ok(
                    api.post("/v1/number-blocks", json={"first": f"0{first}", "last": f"0{last}"})
                )

            lines: list[dict] = [{}] * self.n
            not_synced = 0
            latencies: list[float] = []

            async def create(i: int) -> None:
                nonlocal not_synced
                t = time.perf_counter()
                line = await ok(api.post("/v1/lines", json={"customer_id": cid, "label": f"l{i}"}))
                latencies.append(time.perf_counter() - t)
                if line["sync_state"] != "synced":
                    not_synced += 1
                lines[i] = line

            async def number(i: int) -> None:
                t = time.perf_counter()
                body = {"customer_id": cid, "kind": "geographic", "zone": "1"}
                allocated = await ok(api.post("/v1/numbers/allocate", json=body))
                main = allocated["national"]
                await ok(api.patch(f"/v1/lines/{lines[i]['id']}", json={"main_number": main}))
                latencies.append(time.perf_counter() - t)

            log(f"phase lines: {self.n} x POST /v1/lines, {self.concurrency} in flight")
            meter.start()
            t0 = time.monotonic()
            await bounded(create, self.n, self.concurrency)
            t_lines = time.monotonic() - t0
            cpu_lines = meter.stop()
            lat_lines = summary(latencies)
            latencies.clear()
            log(f"  {self.n / t_lines:.1f} lines/s; cpu {cpu_lines}")

            log(f"phase numbers: {self.n} x (allocate + PATCH main_number)")
            meter.start()
            t0 = time.monotonic()
            await bounded(number, self.n, self.concurrency)
            t_numbers = time.monotonic() - t0
            cpu_numbers = meter.stop()
            lat_numbers = summary(latencies)
            log(f"  {self.n / t_numbers:.1f} lines/s; cpu {cpu_numbers}")

        counts = await asyncio.to_thread(self.astdb_counts)
        self.results["provisioning"] = {
            "lines_phase_s": round(t_lines, 2),
            "lines_phase_per_s": round(self.n / t_lines, 1),
            "lines_phase_latency_s": lat_lines,
            "lines_phase_cpu_pct": cpu_lines,
            "numbers_phase_s": round(t_numbers, 2),
            "numbers_phase_per_s": round(self.n / t_numbers, 1),
            "numbers_phase_latency_s": lat_numbers,
            "numbers_phase_cpu_pct": cpu_numbers,
            "total_s": round(t_lines + t_numbers, 2),
            "lines_per_s_end_to_end": round(self.n / (t_lines + t_numbers), 1),
            "responses_not_synced": not_synced,
            "astdb_objects": counts,
        }
        for kind in ("endpoint", "auth", "aor"):
            if counts.get(kind, 0) < self.n:
                raise RuntimeError(f"Asterisk holds {counts} objects, expected {self.n} of each")

    async def restore(self) -> None:
        log("restore: stop API, wipe astdb (restarts Asterisk), start API")
        await asyncio.to_thread(self.api.stop)
        await asyncio.to_thread(self.sandbox.wipe_provisioned_state)
        left = await asyncio.to_thread(self.line_objects_present)
        if left:
            raise RuntimeError(f"astdb still holds {left} lines after the wipe")
        meter = CpuMeter({"api": self.api_pids, "asterisk": self.asterisk_pids, "pg": self.pg_pids})
        t0 = time.monotonic()
        self.api.start()
        meter.start()
        ready_at = None
        samples: list[tuple[float, int]] = []
        deadline = t0 + 1800
        while True:
            if ready_at is None and API_READY in self.api.log_text():
                ready_at = time.monotonic() - t0
            present = await asyncio.to_thread(self.line_objects_present)
            elapsed = time.monotonic() - t0
            samples.append((round(elapsed, 2), present))
            if present >= self.n:
                break
            if not self.api.running:
                raise RuntimeError(f"API exited during restore:\n{self.api.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"restore incomplete after 1800 s: {present}/{self.n}")
            await asyncio.sleep(0.5)
        restore_s = time.monotonic() - t0
        cpu = meter.stop()
        # wait for the pass to finish (it also marks lines synced) before measuring anything else
        await asyncio.to_thread(
            wait_until,
            lambda: "reconciled Asterisk" in self.api.log_text(),
            300,
            "the reconcile pass to finish",
        )
        log(f"  restored {self.n} lines in {restore_s:.1f} s; cpu {cpu}")
        progress = [s for i, s in enumerate(samples) if i % 10 == 0 or s is samples[-1]]
        self.results["restore"] = {
            "seconds_from_api_start": round(restore_s, 2),
            "api_ready_after_s": round(ready_at, 2) if ready_at is not None else None,
            "lines_per_s": round(self.n / restore_s, 1),
            "cpu_pct": cpu,
            "progress": progress,
            "reconcile_log": [
                ln for ln in self.api.log_text().splitlines() if "reconcil" in ln.lower()
            ][-5:],
        }

    async def quiet_pass(self) -> None:
        """One reconcile pass with nothing to change, in-process (as tests/test_reconcile.py)."""
        settings = self.settings
        out: dict[str, Any] = {}
        for timeout in (settings.asterisk_timeout_s, 120.0):
            s = settings.model_copy(update={"asterisk_timeout_s": timeout})
            engine = make_engine(s.database_url_required)
            ami = AmiClient.from_settings(s)
            ami.start()
            try:
                await ami.wait_connected(10)
                async with AriClient.from_settings(s, "api") as ari:
                    projector = AsteriskProjector.from_settings(ari, s)
                    t = time.perf_counter()
                    tree = await ami.db_get_tree("centrex")
                    t_tree = time.perf_counter() - t
                    t = time.perf_counter()
                    report = await reconcile_lines(make_sessionmaker(engine), projector, ami)
                    t_pass = time.perf_counter() - t
                    out[f"timeout_{timeout:g}s"] = {
                        "db_get_tree_s": round(t_tree, 3),
                        "db_get_tree_entries": len(tree),
                        "pass_s": round(t_pass, 3),
                        "put": report.put,
                        "deleted": report.deleted,
                        "failed": report.failed,
                    }
            except AsteriskUnavailable as exc:
                out[f"timeout_{timeout:g}s"] = {"error": str(exc)}
            finally:
                ami.close()
                await engine.dispose()
            log(f"  quiet pass (AMI timeout {timeout:g}s): {out[f'timeout_{timeout:g}s']}")
        self.results["quiet_pass"] = out

    async def memory(self) -> None:
        self.control = ServiceProcess("control", self.settings, self.work / "logs")
        await asyncio.to_thread(self.control.start_and_wait, DAEMON_READY, 60)
        await asyncio.sleep(self.settings.call_sweep_interval_s * 2 + 1)  # its startup sweep
        # CPU at rest, N lines provisioned, no traffic: what the stack costs doing nothing
        meter = CpuMeter(
            {
                "api": self.api_pids,
                "control": lambda: [self.control.process.pid],
                "asterisk": self.asterisk_pids,
                "pg": self.pg_pids,
            }
        )
        meter.start()
        await asyncio.sleep(10)
        self.results["idle_cpu_pct"] = idle = meter.stop()
        log(f"  idle cpu {idle}")
        mem = {
            "api_rss_mib": mib(rss_kib(self.api.process.pid)),
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
    p, rs, m = r.get("provisioning", {}), r.get("restore", {}), r.get("memory", {})
    q = r.get("quiet_pass", {})
    rows = [
        ("lines", r["lines"]),
        ("POST /v1/lines alone (lines/s)", p.get("lines_phase_per_s")),
        ("  latency p50/p99 (s)", _pair(p.get("lines_phase_latency_s"))),
        ("  CPU % api/asterisk/pg", _cpu(p.get("lines_phase_cpu_pct"))),
        ("allocate + PATCH (lines/s)", p.get("numbers_phase_per_s")),
        ("  CPU % api/asterisk/pg", _cpu(p.get("numbers_phase_cpu_pct"))),
        ("end to end, 3 calls/line (lines/s)", p.get("lines_per_s_end_to_end")),
        ("restore after astdb wipe (s)", rs.get("seconds_from_api_start")),
        ("  CPU % api/asterisk/pg", _cpu(rs.get("cpu_pct"))),
    ]
    for key, val in q.items():
        rows.append((f"quiet reconcile pass, AMI {key} (s)", val.get("pass_s", val.get("error"))))
    rows += [
        ("idle CPU % (10 s, no traffic)", r.get("idle_cpu_pct")),
        ("RSS api (MiB)", m.get("api_rss_mib")),
        ("RSS control daemon (MiB)", m.get("control_rss_mib")),
        ("RSS asterisk (MiB)", m.get("asterisk_rss_mib")),
    ]
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
    args = parser.parse_args()
    bench = Bench(args.lines, args.concurrency)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    status = 0
    try:
        asyncio.run(bench.run())
    except (Exception, KeyboardInterrupt) as exc:
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {bench.results['error']}")
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
