"""Real parts for the tests: a private PostgreSQL, a real Asterisk, the API and the daemon as
real processes. Everything listens on loopback on ports of its own, so a running `centrex up`
is not disturbed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from centrex.config import Settings, settings_env
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import free_port, migrated_test_database

API_TOKEN = "test-operator-token"
DAEMON_READY = "Stasis app 'centrex' registered"


def _port_block() -> dict[str, int]:
    # A fixed block away from the defaults (5060/5038/8088) and from the sandbox unit tests.
    return {"sip_port": 25060, "ami_port": 25038, "http_port": 28088}


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    async with migrated_test_database(tmp_path_factory.mktemp("pg")) as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        _env_file=None,
        var_dir=tmp_path_factory.mktemp("var"),
        database_url=database_url,
        asterisk_instance="pytest",
        api_port=free_port(),
        api_token=API_TOKEN,
        ami_secret="test-ami-secret",
        ari_password="test-ari-password",
        reconcile_interval_s=2,
        call_sweep_interval_s=1,
        **_port_block(),
    )


@pytest.fixture(scope="session")
def asterisk(settings: Settings) -> Iterator[AsteriskSandbox]:
    sandbox = AsteriskSandbox(settings)
    sandbox.ensure_installed()
    sandbox.render_config()
    sandbox.wipe_provisioned_state()
    sandbox.start()
    yield sandbox
    sandbox.stop()


class Service:
    """A centrex process (``centrex api`` / ``centrex control``) run for real, with its log."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        self.name = name
        self.settings = settings
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self.settings)}
        env.pop("DATABASE_URL", None)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "centrex", self.name],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """``kill -9``: no cleanup, no goodbye."""
        self.stop(kill=True)

    def start_and_wait(self, marker: str, timeout: float = 30) -> None:
        """Start, and wait until the log says ``marker`` one more time than before."""
        seen = self.log_text().count(marker)
        self.start()
        try:
            _wait_until(lambda: self.log_text().count(marker) > seen, timeout, self.name)
        except AssertionError:
            self.stop()
            raise AssertionError(f"{self.name} did not start:\n{self.log_text()[-3000:]}") from None


def _wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def api_service(
    settings: Settings, asterisk: AsteriskSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    service = Service("api", settings, tmp_path_factory.mktemp("logs"))
    service.start()

    def ready() -> bool:
        try:
            url = f"http://{settings.api_host}:{settings.api_port}/health/live"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait_until(ready, 30, "the API")
    except AssertionError:
        service.stop()
        raise AssertionError(f"API did not start:\n{service.log_text()[-3000:]}") from None
    yield service
    service.stop()


@pytest.fixture(scope="session")
def control_service(
    settings: Settings, asterisk: AsteriskSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    service = Service("control", settings, tmp_path_factory.mktemp("logs"))
    service.start_and_wait(DAEMON_READY)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def api(settings: Settings, api_service: Service) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"http://{settings.api_host}:{settings.api_port}",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=15,
    ) as client:
        yield client


@pytest.fixture
def wait_until():
    return _wait_until
