"""Issue 11: one process dying never takes the platform down.

`centrex up` runs for real here, with an Asterisk instance and a database of its own. Its
call-control daemon is killed with SIGKILL while two calls are in progress: the API and Asterisk
keep serving, `centrex up` starts the daemon again at once, and the calls are still counted, cut
on time and recorded once each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sip_agent import SipEndpoint, free_udp_port, start_calls

from centrex.config import Settings, settings_env
from centrex.guard.nft import table_name
from centrex.sandbox.postgres import PostgresCluster, free_port

pytestmark = pytest.mark.integration

MAX_S = 8  # the lines' maximum call duration: both calls are cut while the test watches
TOKEN = "supervision-token"


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class Up:
    """A running `centrex up` and where its parts listen."""

    def __init__(self, settings: Settings, process: subprocess.Popen[bytes], log: Path) -> None:
        self.settings = settings
        self.process = process
        self.log = log
        s = settings
        self.api = httpx.Client(
            base_url=f"http://{s.api_host}:{s.api_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=10,
        )
        self.daemon_ready = f"http://{s.control_http_host}:{s.control_http_port}/health/ready"
        self.cdr_ready = f"http://{s.cdr_http_host}:{s.cdr_http_port}/health/ready"
        self.restarts = f"http://{s.api_host}:{s.supervisor_http_port}/metrics"

    def child_pid(self, command: str) -> int:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid), "-f", f"centrex {command}$"],
            capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        assert len(out) == 1, f"`centrex {command}` children of centrex up: {out}"
        return int(out[0])

    def channels(self) -> list[dict]:
        s = self.settings
        response = httpx.get(
            f"{s.ari_url}/channels",
            auth=(s.ari_username, s.ari_password.get_secret_value()),
            timeout=5,
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def up(settings: Settings, database, database_url: str, tmp_path_factory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("up")
    # The session's own cluster creates databases as its bootstrap role (the application's
    # role may not); on an external server, as the URL's role.
    server = database.cluster or PostgresCluster(
        Settings(_env_file=None, database_url=database_url)
    )
    name = f"centrex_up_{uuid.uuid4().hex[:8]}"
    url = asyncio.run(server.create_database(name))
    sip_port = free_port()
    mine = settings.model_copy(
        update={
            "var_dir": work / "var",
            "database_url": url,
            "asterisk_instance": f"uptest{os.environ.get('CENTREX_TEST_PORT_OFFSET', '')}",
            "node_name": "uptest",
            "sip_port": sip_port,
            "ami_port": free_port(),
            "http_port": free_port(),
            "api_port": free_port(),
            "control_http_port": free_port(),
            "cdr_http_port": free_port(),
            "supervisor_http_port": free_port(),
            "guard_http_port": free_port(),
            # The guard runs under `centrex up` too: the test's phones are never rate-limited.
            "sip_ban_allow": ["127.0.0.1/32"],
            "api_token": TOKEN,
        }
    )
    env = {**os.environ, **settings_env(mine)}
    env.pop("DATABASE_URL", None)
    log = work / "up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "centrex", "up"], cwd=work, env=env,
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = Up(mine, process, log)
    try:
        _wait(
            lambda: process.poll() is None
            and _ok(running.daemon_ready) and _ok(running.cdr_ready)
            and b"centrex is running" in log.read_bytes(),
            90, f"centrex up (log: {log})",
        )  # fmt: skip
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        running.api.close()
        asyncio.run(server.drop_database(name))
        # The guard's table outlives it on purpose (bans hold with the guard down): not here.
        table = table_name(mine.asterisk_instance)
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)


def _line(up: Up, customer: dict) -> tuple[dict, SipEndpoint]:
    body = {"customer_id": customer["id"], "label": "s", "max_call_duration_s": MAX_S}
    response = up.api.post("/v1/lines", json=body)
    assert response.status_code == 201, response.text
    line = response.json()
    server = f"{up.settings.asterisk_host}:{up.settings.sip_port}"
    return line, SipEndpoint(line["sip_username"], line["sip_password"], server)


def test_daemon_killed_under_centrex_up(up: Up):
    customer = up.api.post("/v1/customers", json={"name": "supervised"}).json()
    line, caller = _line(up, customer)
    target_line, target = _line(up, customer)
    up.api.patch(f"/v1/lines/{target_line['id']}", json={"max_calls": 10})
    port = free_udp_port()
    target.register(port).expect_success()
    device = target.answer(port, calls=10, ring_ms=100, timeout_s=120)
    server = f"{up.settings.asterisk_host}:{up.settings.sip_port}"
    calls = start_calls(
        "uac_call_until_cut.xml", server, [(caller.username, caller.password)] * 2,
        target.username, timeout_s=60,
    )  # fmt: skip

    def in_progress() -> list[dict]:
        return up.api.get(f"/v1/lines/{line['id']}/calls").json()

    _wait(lambda: len(in_progress()) == 2 and all(c["deadline_at"] for c in in_progress()),
          15, "two calls answered")  # fmt: skip
    daemon = up.child_pid("control")
    api_pid, cdr_pid = up.child_pid("api"), up.child_pid("cdr")
    os.kill(daemon, signal.SIGKILL)
    killed_at = time.monotonic()
    # Nothing else went down with it: the API answers, Asterisk still holds both calls.
    assert up.api.get("/health/live").status_code == 200
    assert len([c for c in up.channels() if c["state"] == "Up"]) >= 2
    assert up.process.poll() is None
    # The daemon is back (ARI connected, journal followed, database reachable) within 5 s.
    _wait(lambda: _ok(up.daemon_ready) and up.child_pid("control") != daemon, 5, "daemon back")
    back_after = time.monotonic() - killed_at
    assert (up.child_pid("api"), up.child_pid("cdr")) == (api_pid, cdr_pid)
    restarts = httpx.get(up.restarts).text
    assert 'centrex_child_restarts_total{process="control"} 1.0' in restarts, restarts
    # The calls still count: a third call from the line is refused at its limit ...
    caller.call_refused(target.username, 486).expect_success()
    assert len(in_progress()) == 2
    # ... and both are cut on time, by the restarted daemon.
    calls.outcomes()
    held = calls.held_ms()
    assert len(held) == 2 and all(MAX_S * 1000 - 100 <= d < MAX_S * 1000 + 1000 for d in held), held
    _wait(lambda: in_progress() == [], 10, "calls released")
    device.process.kill()

    def cdrs() -> list[dict]:
        return up.api.get("/v1/cdrs", params={"line_id": line["id"]}).json()["items"]

    # One CDR per call: the two cut calls and the refused one.
    _wait(lambda: len(cdrs()) >= 3, 20, "three CDRs")
    records = cdrs()
    assert len(records) == 3 and len({r["linkedid"] for r in records}) == 3, records
    assert sorted(r["disposition"] for r in records) == ["cut", "cut", "refused_limit"], records
    assert all(r["billed_s"] == MAX_S for r in records if r["disposition"] == "cut"), records
    print(f"daemon ready again {back_after:.2f}s after SIGKILL")
