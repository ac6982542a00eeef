"""Issue 5, "Must measure": CDR write rate and end-of-call -> queryable lag.

    .venv/bin/python bench/cdrs.py [--records N] [--cps R] [--seconds S]

1. **Write rate**, on one fresh PostgreSQL database (default settings, fsync on), side by side
   in one run: centrex's writer (:meth:`centrex.cdr.shipper.CdrShipper.write`: per batch of
   5,000, the attempt/line lookups, COPY into a temporary table, ``INSERT … ON CONFLICT DO
   NOTHING``, the attempts deleted and the checkpoint moved, one transaction) against a writer
   that does what Asterisk's ``cdr_pgsql`` does: one ``INSERT`` per call, each its own
   transaction. Both write the same N records (built from synthetic CEL events), in rounds
   that alternate A, B, A, B so machine noise hits both. Both build each record the same way
   (``build_cdr``) inside the timing; reported: records/s of each (best and median round) and
   the ratio.
2. **Lag** at a steady call load through the real stack: PostgreSQL, an Asterisk 22 instance
   ``benchcdr`` (SIP 47260, AMI 47238, ARI 47288), the API (to create two lines) and the daemon
   (admission + shipper); sipp places R calls/s for S seconds (500 ms each) to a registered
   sipp device. Lag = ``written_at`` (PostgreSQL's clock when the batch was copied) minus
   ``end_at`` (Asterisk's HANGUP time), p50/p99/max over every CDR of the run; plus the count
   check (one CDR per call sipp placed).

Prints a table and writes ``bench/results/cdrs-<UTC>.json``. Everything it starts is stopped and
removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from centrex.cdr.journal import LIVE, Position
from centrex.cdr.shipper import CdrShipper, asyncpg_dsn
from centrex.config import Settings
from centrex.core.cdr import CDR_COLUMNS, EndedCall, build_cdr
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import free_port, migrated_test_database
from centrex.sandbox.processes import API_READY, CDR_READY, DAEMON_READY, ServiceProcess

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCENARIOS = HERE / "sipp"
SIPP = shutil.which("sipp") or "sipp"
TOKEN = "bench-cdrs-token"


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def synthetic_calls(n: int, tag: str) -> list[EndedCall]:
    base = time.time() - 3600

    def call(i: int) -> EndedCall:
        start = base + i * 0.01
        return EndedCall(
            linkedid=f"{tag}-{i}", channel=f"PJSIP/benchline-{i:08x}", dialled="0145000001",
            caller_number="", started_at=start, answered_at=start + 2, ended_at=start + 62,
            cause=16, dial_status="ANSWER", answered_by=f"PJSIP/benchpeer-{i:08x}",
        )  # fmt: skip

    return [call(i) for i in range(n)]


class DummyJournal:
    """The write-rate phase writes records, it does not read a journal."""

    path = Path("/nonexistent")

    def name_of(self, segment: int) -> str:
        return "bench"

    def rotated_segments(self) -> list[int]:
        return []


async def write_rate(url: str, n: int, rounds: int) -> dict[str, Any]:
    settings = Settings(_env_file=None, database_url=url, node_name="bench-copy")
    shipper = CdrShipper(settings, journal=DummyJournal())  # type: ignore[arg-type]
    pool = await asyncpg.create_pool(asyncpg_dsn(url), min_size=1, max_size=2)
    rates: dict[str, list[float]] = {"centrex": [], "insert_per_call": []}
    columns = ", ".join(CDR_COLUMNS)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(CDR_COLUMNS)))
    insert = f"INSERT INTO cdrs ({columns}) VALUES ({placeholders})"
    try:
        for r in range(rounds):
            calls = synthetic_calls(n, f"copy{r}")
            t0 = time.perf_counter()
            for i in range(0, n, settings.cdr_batch_max):
                batch = calls[i : i + settings.cdr_batch_max]
                await shipper.write(pool, batch, Position(LIVE, i))
            rates["centrex"].append(n / (time.perf_counter() - t0))
            log(f"  round {r + 1}: centrex writer {rates['centrex'][-1]:,.0f} records/s")

            calls = synthetic_calls(n, f"ins{r}")
            async with pool.acquire() as conn:
                stmt = await conn.prepare(insert)
                t0 = time.perf_counter()
                for call in calls:  # autocommit: one transaction, one fsync per call
                    row = build_cdr(
                        call, node="bench-insert", attempt=None, lines={}, group_customers={}
                    )
                    await stmt.fetch(*row)
                rates["insert_per_call"].append(n / (time.perf_counter() - t0))
            rate = rates["insert_per_call"][-1]
            log(f"  round {r + 1}: one INSERT per call {rate:,.0f} records/s")
    finally:
        await pool.close()
    out: dict[str, Any] = {"records_per_round": n, "rounds": rounds}
    for name, values in rates.items():
        out[name] = {"best": round(max(values)), "median": round(statistics.median(values)),
                     "all": [round(v) for v in values]}  # fmt: skip
    out["ratio_median"] = round(out["centrex"]["median"] / out["insert_per_call"]["median"], 1)
    return out


class LagBench:
    def __init__(self, url: str, work: Path, cps: float, seconds: int) -> None:
        self.cps, self.seconds, self.work = cps, seconds, work
        self.settings = Settings(
            _env_file=None, var_dir=work / "var", database_url=url, asterisk_instance="benchcdr",
            sip_port=47260, ami_port=47238, http_port=47288, api_port=free_port(),
            api_token=TOKEN, ami_secret="benchcdr-ami", ari_password="benchcdr-ari",
            ari_control_password="benchcdr-ari-control", ari_cdr_password="benchcdr-ari-cdr",
            sip_qualify_frequency_s=0,  # sipp devices answer no OPTIONS outside a call
            reconcile_interval_s=3600,
        )  # fmt: skip
        self.sandbox = AsteriskSandbox(self.settings)
        self.procs: list[Any] = []

    def sipp(self, *args: str, wd: Path) -> subprocess.Popen[bytes]:
        wd.mkdir(parents=True, exist_ok=True)
        s = self.settings
        argv = [SIPP, f"{s.asterisk_host}:{s.sip_port}", "-i", "127.0.0.1", "-nostdin",
                "-mp", str(free_port()), *args]  # fmt: skip
        proc = subprocess.Popen(argv, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    async def run(self) -> dict[str, Any]:
        s = self.settings
        self.sandbox.ensure_installed()
        self.sandbox.render_config()
        self.sandbox.wipe_provisioned_state()
        self.sandbox.start()
        api = ServiceProcess("api", s, self.work / "logs")
        control = ServiceProcess("control", s, self.work / "logs")
        shipper = ServiceProcess("cdr", s, self.work / "logs")  # its own process (issue 11)
        self.procs += [api, control, shipper]
        api.start_and_wait(API_READY)
        shipper.start_and_wait(CDR_READY)
        control.start_and_wait(DAEMON_READY)
        async with httpx.AsyncClient(
            base_url=f"http://{s.api_host}:{s.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
        ) as client:  # fmt: skip
            customer = (await client.post("/v1/customers", json={"name": "bench"})).json()
            body = {"customer_id": customer["id"], "label": "b", "max_calls": 1000}
            caller = (await client.post("/v1/lines", json=body)).json()
            target = (await client.post("/v1/lines", json=body)).json()
        device_port = free_port()
        register = self.sipp(
            "-sf", str(SCENARIOS / "register.xml"), "-p", str(device_port), "-m", "1",
            "-s", target["sip_username"], "-au", target["sip_username"],
            "-ap", target["sip_password"], "-key", "contact_port", str(device_port),
            "-key", "expires", "3600", "-timeout", "15s", "-timeout_error", wd=self.work / "reg",
        )  # fmt: skip
        if register.wait(30) != 0:
            raise RuntimeError("the target device could not register")
        # Asterisk calls a line where its REGISTER came from (rewrite_contact): the device
        # answers on the socket it registered from, once the REGISTER's sipp is gone.
        self.sipp("-sf", str(SCENARIOS / "uas_answer.xml"), "-p", str(device_port),
                  "-m", "100000000", "-d", "50", wd=self.work / "device")  # fmt: skip
        total = int(self.cps * self.seconds)
        log(f"lag: {total} calls at {self.cps} cps, 500 ms each")
        uac = self.sipp(
            "-sf", str(SCENARIOS / "uac_call.xml"), "-p", str(free_port()),
            "-s", target["sip_username"], "-au", caller["sip_username"],
            "-ap", caller["sip_password"], "-key", "caller", caller["sip_username"],
            "-r", str(self.cps), "-m", str(total), "-d", "500", "-timeout", f"{self.seconds + 60}s",
            "-trace_stat", "-fd", "1", wd=self.work / "uac",
        )  # fmt: skip
        await asyncio.to_thread(uac.wait, self.seconds + 90)
        conn = await asyncpg.connect(asyncpg_dsn(s.database_url_required))
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                n = await conn.fetchval(
                    "SELECT count(*) FROM cdrs WHERE caller_line_id = $1", uuid.UUID(caller["id"])
                )
                if n >= total:
                    break
                await asyncio.sleep(0.5)
            row = await conn.fetchrow(
                """
                SELECT count(*) AS n,
                       count(*) FILTER (WHERE disposition = 'answered') AS answered,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) AS p50,
                       percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) AS p99,
                       max(lag) AS max
                FROM (SELECT extract(epoch FROM written_at - end_at) AS lag, disposition
                      FROM cdrs WHERE caller_line_id = $1) t
                """,
                uuid.UUID(caller["id"]),
            )
        finally:
            await conn.close()
        return {
            "calls_placed": total, "cps": self.cps, "seconds": self.seconds,
            "cdrs": row["n"], "answered": row["answered"],
            "lag_ms": {k: round(float(row[k]) * 1000, 1) for k in ("p50", "p99", "max")},
            "ship_interval_s": s.cdr_ship_interval_s,
        }  # fmt: skip

    def close(self) -> None:
        for proc in reversed(self.procs):
            if isinstance(proc, ServiceProcess):
                proc.stop()
            elif proc.poll() is None:
                proc.kill()
                proc.wait()
        try:
            self.sandbox.stop()
        finally:
            self.sandbox.remove_instance()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="centrex-benchcdr-"))
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat()}
    try:
        async with migrated_test_database(work / "pg", prefix="centrex_benchcdr") as url:
            log(f"write rate: {args.records:,} records per round, {args.rounds} rounds each way")
            results["write_rate"] = await write_rate(url, args.records, args.rounds)
            lag = LagBench(url, work, args.cps, args.seconds)
            try:
                results["lag"] = await lag.run()
            finally:
                lag.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cps", type=float, default=20)
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    w, lag = results["write_rate"], results["lag"]
    print()
    print(f"{'centrex writer (records/s, median / best)':48} {w['centrex']['median']:>8,} / "
          f"{w['centrex']['best']:,}")  # fmt: skip
    print(f"{'one INSERT per call (records/s, median / best)':48} "
          f"{w['insert_per_call']['median']:>8,} / {w['insert_per_call']['best']:,}")  # fmt: skip
    print(f"{'ratio (median)':48} {w['ratio_median']:>8}")
    print(f"{'lag end -> queryable p50 / p99 / max (ms)':48} {lag['lag_ms']['p50']:>8} / "
          f"{lag['lag_ms']['p99']} / {lag['lag_ms']['max']}")  # fmt: skip
    print(f"{'calls placed / CDRs (answered)':48} {lag['calls_placed']:>8} / {lag['cdrs']} "
          f"({lag['answered']})")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cdrs-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
