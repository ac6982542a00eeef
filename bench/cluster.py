"""Issue 19, "Must measure": the clustered shape against one node, side by side in one run.

    PYTHONPATH=. .venv/bin/python bench/cluster.py [--step-s 6] [--rates 10,20,40,...]

One PostgreSQL, two Asterisk nodes (each with its daemon and CDR shipper) on 127.0.19.111 and
.112, Kamailio on 127.0.19.101, the API; sipp phones on 127.0.0.1. Three shapes, in this order,
with the same caller and callee lines, scenario and hold time (1 s):

- ``alone``: the phones talk to node 1 directly (Asterisk is the registrar, the daemon dials
  PJSIP/<line>): the single-machine default.
- ``edge+1``: through Kamailio, node 2 stopped (dispatch has only node 1).
- ``edge+2``: through Kamailio, both nodes.

Each shape is ramped: sipp at R calls/s for ``--step-s`` seconds; a step passes with < 1 %
failed calls; a shape stops after two failed steps in a row. Then failover: calls at a steady
rate through the edge, node 2 killed (``kill -9``), and the seconds from the kill until (a) it
is out of dispatch and (b) a new call succeeds again.

Prints a table and writes ``bench/results/cluster-<UTC>.json``. Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sip_agent import SipEndpoint, SippRun, _counts, free_udp_port, run_sipp

from centrex.config import Settings
from centrex.sandbox.cluster import Cluster
from centrex.sandbox.postgres import TEST_ASTERISK_DB_PASSWORD, free_port, scratch_database
from centrex.sandbox.processes import API_READY, DAEMON_READY, ServiceProcess

TOKEN = "bench-cluster-token"
EDGE_IP = "127.0.19.101"
NODE_IPS = ["127.0.19.111", "127.0.19.112"]
SCENARIO = Path(__file__).resolve().parents[1] / "tests" / "sipp" / "uac_call.xml"
HOLD_MS = 1000
OK_CODES = {"100", "180", "183", "200", "401"}
RESULTS = Path(__file__).resolve().parent / "results"


def base_settings(var_dir: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        var_dir=var_dir,
        database_url=database_url,
        asterisk_instance="benchcl",
        sip_port=46060,
        tls_port=46160,
        ami_port=46038,
        http_port=48088,
        api_port=free_port(),
        edge_metrics_port=free_port(),
        control_http_port=0,
        cdr_http_port=0,
        guard_http_port=0,
        supervisor_http_port=0,
        api_token=TOKEN,
        api_rate_limit_per_s=0,
        ami_secret="bench-ami-secret",
        ari_password="bench-ari-password",
        ari_control_password="bench-ari-control-password",
        ari_cdr_password="bench-ari-cdr-password",
        asterisk_db_password=TEST_ASTERISK_DB_PASSWORD,
        sip_qualify_frequency_s=0,
        voicemail_default_enabled=False,
        edge_flood_requests=1_000_000,  # the bench's load is one address by design
    )


def step(caller: SipEndpoint, server: str, callee: str, rate: int, seconds: float) -> dict:
    calls = max(1, int(rate * seconds))
    run = run_sipp(
        SCENARIO, server, service=callee, user=caller.username, password=caller.password,
        calls=calls, rate=rate, limit=rate * 4, timeout_s=int(seconds) + 30,
        keys={"caller": caller.username}, extra=["-d", str(HOLD_MS), "-trace_counts", "-trace_stat",
                                                 "-fd", "1"],
    )  # fmt: skip
    run.wait(seconds + 60)
    try:
        o = _counts(run)
        answered, failed = o.answered, o.failed
    except (ValueError, KeyError):
        answered, failed = 0, calls
    failed = max(failed, calls - answered)
    return {"rate": rate, "calls": calls, "answered": answered, "failed": failed,
            "passed": failed / calls < 0.01, "final_codes": final_codes(run)}  # fmt: skip


def final_codes(run: SippRun) -> dict[str, int]:
    """The unexpected responses sipp received (503, 408, ...), summed over the scenario."""
    codes: dict[str, int] = {}
    for path in run.workdir.glob("*_counts.csv"):
        rows = [ln.split(";") for ln in path.read_text().splitlines() if ln.strip()]
        for column, value in zip(rows[0], rows[-1], strict=False):
            parts = column.split("_")
            if len(parts) == 3 and parts[2] == "Recv" and parts[1] not in OK_CODES and value:
                codes[parts[1]] = codes.get(parts[1], 0) + int(value)
    return {k: v for k, v in codes.items() if v}


def slow_refusals(daemons: list[ServiceProcess]) -> dict[str, int]:
    """Calls the daemons refused because their decision took longer than allowed."""
    return {d.settings.node_name + "/" + d.log_path.parent.name: d.log_text().count(
        "no decision within") for d in daemons}  # fmt: skip


def ramp(name: str, caller: SipEndpoint, server: str, callee: str, rates: list[int],
         seconds: float, daemons: list[ServiceProcess]) -> dict:  # fmt: skip
    steps, best, misses = [], 0, 0
    for rate in rates:
        before = slow_refusals(daemons)
        result = step(caller, server, callee, rate, seconds)
        after = slow_refusals(daemons)
        result["slow_decision_refusals"] = {k: after[k] - before[k] for k in after}
        steps.append(result)
        print(f"  {name:8} {rate:4d}/s: {result['answered']}/{result['calls']} answered"
              f" {'ok' if result['passed'] else 'FAILED'} {result['final_codes']}"
              f" slow decisions {result['slow_decision_refusals']}", flush=True)  # fmt: skip
        if result["passed"]:
            best, misses = rate, 0
        else:
            misses += 1
            if misses == 2:
                break
    return {"shape": name, "max_calls_per_s": best, "steps": steps}


class Device:
    """The callee's phone: registered at ``server``, answering every call."""

    def __init__(self, endpoint: SipEndpoint, server: str) -> None:
        self.endpoint = SipEndpoint(endpoint.username, endpoint.password, server)
        port = free_udp_port()
        self.endpoint.register(port, expires=3600).expect_success()
        self.run = self.endpoint.answer(port, calls=1_000_000, ring_ms=50, timeout_s=3600)

    def stop(self) -> None:
        self.run.process.kill()
        self.run.process.wait()


def failover(cluster: Cluster, caller: SipEndpoint, callee: str) -> dict:
    """Kill node 2 under steady load; seconds until it is out and until a new call succeeds."""
    edge = cluster.edge
    background = run_sipp(
        SCENARIO, edge, service=callee, user=caller.username, password=caller.password,
        calls=200, rate=10, limit=100, timeout_s=60, keys={"caller": caller.username},
        extra=["-d", str(HOLD_MS), "-trace_counts", "-trace_stat", "-fd", "1"],
    )  # fmt: skip
    time.sleep(3)  # load established before the kill (a measured condition, not a sync)
    victim = cluster.nodes[1]
    killed = time.monotonic()
    victim.kill_asterisk()
    survivor = f"{cluster.nodes[0].plan.address}:{cluster.nodes[0].plan.sip_port}"
    out_s = None
    success_s = None
    while time.monotonic() - killed < 30 and (out_s is None or success_s is None):
        if out_s is None and cluster.kamailio.active_nodes() == {survivor}:
            out_s = time.monotonic() - killed
        if success_s is None:
            probe = SipEndpoint(caller.username, caller.password, edge).call(
                callee, hold_ms=100, timeout_s=4
            )
            if probe.wait(10) == 0:
                success_s = time.monotonic() - killed
    background.wait(90)
    try:
        o = _counts(background)
        lost = {"answered": o.answered, "failed": o.failed}
    except (ValueError, KeyError):
        lost = {}
    return {"out_of_dispatch_s": out_s, "new_call_succeeds_s": success_s, "load_10_per_s": lost}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="centrex-bench-cluster-"))
    await asyncio.to_thread(tmp.chmod, 0o755)  # PostgreSQL's user reaches its directory
    try:
        async with scratch_database(tmp / "pg") as db:
            return await asyncio.to_thread(measure, args, tmp, db.url)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


def measure(args: argparse.Namespace, tmp: Path, database_url: str) -> dict[str, Any]:
    rates = [int(r) for r in args.rates.split(",")]
    report: dict[str, Any] = {"started": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
    base = base_settings(tmp / "var", database_url)
    # edge_only off: the "alone" shape's phones talk to node 1 directly.
    cluster = Cluster(
        base, edge_address=EDGE_IP, node_addresses=NODE_IPS, log_dir=tmp, edge_only=False
    )
    n1, n2 = cluster.nodes
    alone = ServiceProcess(
        "control", n1.settings.model_copy(update={"sip_proxy": None}), tmp / "alone"
    )
    api = ServiceProcess("api", cluster.api_settings, tmp / "api")
    device: Device | None = None
    try:
        for node in cluster.nodes:
            node.asterisk.ensure_installed()
            node.asterisk.render_config()
            node.asterisk.wipe_provisioned_state()
            node.asterisk.wipe_call_journal()
            node.asterisk.start()
        n1.cdr.start_and_wait("CDRs: shipping")
        api.start_and_wait(API_READY)
        s = cluster.api_settings
        http = httpx.Client(
            base_url=f"http://{s.api_host}:{s.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=15,
        )
        customer = http.post("/v1/customers", json={"name": "Bench"}).json()
        lines = []
        for label in ("caller", "callee"):
            body = {"customer_id": customer["id"], "label": label, "max_calls": 1000}
            r = http.post("/v1/lines", json=body)
            r.raise_for_status()
            lines.append(r.json())
        caller, callee = (SipEndpoint(x["sip_username"], x["sip_password"], "") for x in lines)
        node1 = f"{n1.plan.address}:{n1.plan.sip_port}"

        print("== alone: phones on node 1, no Kamailio", flush=True)
        alone.start_and_wait(DAEMON_READY)
        device = Device(callee, node1)
        shapes = [ramp("alone", caller, node1, callee.username, rates, args.step_s, [alone])]
        device.stop()
        alone.stop()

        print("== edge+1: Kamailio, node 1 only", flush=True)
        n2.asterisk.stop()
        n1.control.start_and_wait(DAEMON_READY)
        cluster.kamailio.start()
        cluster.wait_dispatching({node1})
        device = Device(callee, cluster.edge)
        shapes.append(
            ramp("edge+1", caller, cluster.edge, callee.username, rates, args.step_s, [n1.control])
        )

        print("== edge+2: Kamailio, both nodes", flush=True)
        n2.start()
        cluster.wait_dispatching({node1, f"{n2.plan.address}:{n2.plan.sip_port}"})
        daemons = [n.control for n in cluster.nodes]
        shapes.append(
            ramp("edge+2", caller, cluster.edge, callee.username, rates, args.step_s, daemons)
        )
        report["shapes"] = shapes

        print("== failover: node 2 killed under 10 calls/s", flush=True)
        report["failover"] = failover(cluster, caller, callee.username)
    finally:
        if device:
            device.stop()
        alone.stop()
        api.stop()
        cluster.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-s", type=float, default=6.0)
    parser.add_argument("--rates", default="10,20,30,40,50,60,80,100,120,150")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    print("\nshape     max calls/s (<1 % failed)")
    for shape in report["shapes"]:
        print(f"{shape['shape']:9} {shape['max_calls_per_s']}")
    print(f"failover: {report['failover']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cluster-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
