"""Issue 6: the API's and the daemon's metrics, scraped by a real Prometheus (Debian's package)
while sipp places calls; the shipped Prometheus config, alert rules and Grafana dashboards."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from sip_agent import SipEndpoint, free_udp_port, start_calls

from centrex.metrics import SUPERVISOR_REGISTRY
from centrex.sandbox.postgres import free_port
from centrex.sandbox.processes import GUARD_READY, ServiceProcess

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> float | None:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        assert response.status_code == 200, response.text
        result = response.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def guard_port(settings, asterisk, tmp_path_factory) -> Iterator[int]:
    """``centrex guard`` in a table of its own, banning nobody (the allow-list is everyone): its
    /metrics is what this module looks at."""
    table = f"centrex_bans_metrics_{settings.asterisk_instance}"
    guard_settings = settings.model_copy(
        update={"guard_http_port": free_port(), "sip_ban_table": table,
                "sip_ban_allow": ["0.0.0.0/0", "::/0"]}
    )  # fmt: skip
    guard = ServiceProcess("guard", guard_settings, tmp_path_factory.mktemp("guard"))
    guard.start_and_wait(GUARD_READY)
    yield guard_settings.guard_http_port
    guard.stop()
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)


@pytest.fixture(scope="module")
def prometheus(
    settings, api_service, control_service, guard_port, tmp_path_factory
) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(DEPLOY / "prometheus" / "alerts.yml")]
    targets = {
        "centrex-api": settings.api_port,
        "centrex-control": settings.control_http_port,
        "centrex-cdr": settings.cdr_http_port,
        "centrex-guard": guard_port,
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "wb"),
    )  # fmt: skip
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{prom.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError((work / "prometheus.log").read_text()[-2000:])
        deadline = time.monotonic() + 20
        while prom.query('min(up{job=~"centrex-.*"})') != 1 or prom.query("count(up)") != 4:
            assert time.monotonic() < deadline, "Prometheus cannot scrape the API and the daemon"
            time.sleep(0.5)
        yield prom
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "metrics"}).json()


@pytest.fixture
def line(api: httpx.Client, customer, settings):
    server = f"{settings.asterisk_host}:{settings.sip_port}"

    def make(**fields: object) -> tuple[dict, SipEndpoint]:
        created = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "m",
                                               **fields}).json()  # fmt: skip
        return created, SipEndpoint(created["sip_username"], created["sip_password"], server)

    return make


def settle(prom: Prometheus, expr: str, expected: float, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while (value := prom.query(expr)) != expected:
        assert time.monotonic() < deadline, f"{expr} = {value}, expected {expected}"
        time.sleep(0.3)


def test_calls_in_progress_and_refusals_as_prometheus_sees_them(prometheus, line, settings):
    _, alice = line(max_calls=2)
    _, bob = line(max_calls=1000)
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, calls=1000, ring_ms=100, timeout_s=60)
    server = f"{settings.asterisk_host}:{settings.sip_port}"
    try:
        settle(prometheus, "sum(centrex_calls_in_progress)", 0)
        refused_before = prometheus.query('centrex_calls_refused_total{reason="line_limit"}') or 0
        batch = start_calls("uac_call_or_busy.xml", server,
                            [(alice.username, alice.password)] * 7, bob.username,
                            hold_ms=8000)  # fmt: skip
        # Two held open (the line's limit), five refused at once.
        settle(prometheus, "sum(centrex_calls_in_progress)", 2)
        settle(prometheus, 'sum(centrex_calls_in_progress{direction="on-net"})', 2)
        outcome = batch.outcomes(timeout=60)
        assert (outcome.answered, outcome.busy) == (2, 5)
        settle(prometheus, 'centrex_calls_refused_total{reason="line_limit"}',
               refused_before + outcome.busy)  # fmt: skip
        settle(prometheus, "sum(centrex_calls_in_progress)", 0)
        time.sleep(2)  # and no more than that
        assert prometheus.query('centrex_calls_refused_total{reason="line_limit"}') == (
            refused_before + outcome.busy
        )
        assert prometheus.query('centrex_asterisk_connected{job="centrex-control"}') == 1
        decided = 'centrex_admission_decision_seconds_count{job="centrex-control"}'
        assert (prometheus.query(decided) or 0) >= 7
        # Their CDRs, counted by the daemon's shipper.
        settle(prometheus, 'centrex_cdr_pending_calls{job="centrex-cdr"}', 0)
        assert (prometheus.query('centrex_cdrs_written_total{job="centrex-cdr"}') or 0) >= 7
    finally:
        device.process.kill()


def test_the_shipped_prometheus_config_and_rules_are_valid():
    for args in (["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                 ["check", "rules", str(DEPLOY / "prometheus" / "alerts.yml")]):  # fmt: skip
        result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def exported_names(*texts: str) -> set[str]:
    names = set()
    for text in texts:
        for match in re.finditer(r"^# TYPE (\S+) (\S+)", text, re.MULTILINE):
            name, kind = match.groups()
            names.add(name)
            if kind == "counter":
                names.add(name + "_total" if not name.endswith("_total") else name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_dashboards_and_alerts_use_only_metrics_the_code_exports(
    api, settings, control_service, guard_port
):
    api_text = api.get("/metrics").text
    daemon_text = httpx.get(f"http://127.0.0.1:{settings.control_http_port}/metrics").text
    cdr_text = httpx.get(f"http://127.0.0.1:{settings.cdr_http_port}/metrics").text
    # `centrex up`'s own (its children's restarts): tests/test_supervision.py scrapes it live.
    supervisor_text = generate_latest(SUPERVISOR_REGISTRY).decode()
    guard_text = httpx.get(f"http://127.0.0.1:{guard_port}/metrics").text
    exported = exported_names(api_text, daemon_text, cdr_text, guard_text, supervisor_text)
    expressions = []
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        dashboard = json.loads(path.read_text())
        expressions += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expressions += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for e in expressions for name in re.findall(r"\bcentrex_[a-z0-9_]+", e)}
    assert used, "no centrex metric in the dashboards"
    assert used - exported == set(), f"not exported: {sorted(used - exported)}"
    # Every alert has a runbook entry.
    runbook = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"### {rule['alert']}" in runbook, rule["alert"]


def test_readiness_of_the_api_and_the_daemon(api, settings, control_service, guard_port):
    assert api.get("/health/ready").json() == {
        "status": "ready", "checks": {"database": True, "asterisk": True},
    }  # fmt: skip
    daemon = httpx.get(f"http://127.0.0.1:{settings.control_http_port}/health/ready").json()
    assert daemon == {"status": "ready", "checks": {"ari": True, "cel": True, "database": True}}
    cdr = httpx.get(f"http://127.0.0.1:{settings.cdr_http_port}/health/ready").json()
    assert cdr == {"status": "ready", "checks": {"database": True, "journal": True}}
    guard = httpx.get(f"http://127.0.0.1:{guard_port}/health/ready").json()
    assert guard == {"status": "ready", "checks": {"database": True, "nftables": True}}


def test_each_process_exports_the_metrics_it_updates_and_no_other(
    api, settings, control_service, guard_port
):
    """docs/metrics.md says which process a metric comes from; each /metrics holds exactly those
    (a counter the API never updates must not read 0 there, where sum() and absent() see it)."""
    runbook = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    row = r"^\| `(centrex_[a-z0-9_]+)` \| \w+ \|[^|]*\| ([a-zA-Z, ]+) \|"
    documented = re.findall(row, runbook, re.MULTILINE)
    assert len(documented) >= 15, documented
    exported = {
        "API": exported_names(api.get("/metrics").text),
        "daemon": exported_names(
            httpx.get(f"http://127.0.0.1:{settings.control_http_port}/metrics").text
        ),
        "cdr": exported_names(httpx.get(f"http://127.0.0.1:{settings.cdr_http_port}/metrics").text),
        "guard": exported_names(httpx.get(f"http://127.0.0.1:{guard_port}/metrics").text),
    }
    for process, names in exported.items():
        for name, source in documented:
            if process in source.split(", "):
                assert name in names, f"{name} missing from the {process}'s /metrics"
            else:
                assert name not in names, f"{name} (from the {source}) on the {process}'s /metrics"
        assert "process_cpu_seconds_total" in names, process
