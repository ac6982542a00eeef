"""Issue 14: the API as several processes (CENTREX_API_WORKERS): every worker serves, exactly
one runs the background work (reconciler, schedulers, mailer: centrex.api.leader), and another
takes it over when that one dies. Real processes and PostgreSQL; no Asterisk needed."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import API_TOKEN

from centrex.api.leader import LEADING, RETRY_S
from centrex.config import Settings
from centrex.sandbox.postgres import free_port, scratch_database
from centrex.sandbox.processes import API_READY, ServiceProcess

pytestmark = pytest.mark.integration

LEADER = re.compile(re.escape(LEADING) + r" \(pid (\d+)\)")


@pytest.fixture(scope="module")
async def two_workers(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    async with scratch_database(tmp_path_factory.mktemp("pg-workers")) as db:
        own = settings.model_copy(update={
            "database_url": db.url, "api_port": free_port(), "api_workers": 2,
            "ami_port": free_port(), "http_port": free_port(), "api_rate_limit_per_s": 0,
        })  # fmt: skip
        service = ServiceProcess("api", own, tmp_path_factory.mktemp("workers-logs"))
        service.start_and_wait(API_READY)
        try:
            yield service
        finally:
            service.stop()


def leaders(service: ServiceProcess) -> list[int]:
    return [int(pid) for pid in LEADER.findall(service.log_text())]


def test_both_workers_serve_and_one_runs_the_background_work(two_workers, wait_until):
    s = two_workers.settings
    # Both started (uvicorn logs one start per worker) and answer.
    wait_until(lambda: two_workers.log_text().count(API_READY[0]) >= 2, 30, "two workers up")
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(base_url=f"http://{s.api_host}:{s.api_port}", headers=headers) as api:
        for i in range(40):
            response = api.post("/v1/customers", json={"name": f"w{i}"})
            assert response.status_code == 201, response.text
    wait_until(lambda: leaders(two_workers), 20, "a worker leading the background work")
    # Exactly one, and it stays one: the other asks for the lock every RETRY_S in vain. (An
    # absence can only be watched for a while: three of its attempts.)
    first = leaders(two_workers)
    deadline = time.monotonic() + 3 * RETRY_S
    while time.monotonic() < deadline:
        assert leaders(two_workers) == first, two_workers.log_text()[-3000:]
        time.sleep(0.2)


def test_another_worker_takes_the_background_work_over_when_the_leader_dies(
    two_workers, wait_until
):
    wait_until(lambda: leaders(two_workers), 20, "a worker leading the background work")
    (leader,) = leaders(two_workers)
    os.kill(leader, signal.SIGKILL)  # its connection, and the lock, go with it
    wait_until(lambda: len(leaders(two_workers)) == 2, 30, "a second leader after the first died")
    assert leaders(two_workers)[1] != leader
