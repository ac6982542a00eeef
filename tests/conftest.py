"""Real parts for the tests: a private PostgreSQL, a real Asterisk, the API and the daemon as
real processes. Everything listens on loopback on ports of its own, so a running `centrex up`
is not disturbed.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sip_agent import Carrier, SipEndpoint, free_udp_port
from smtp_sink import Inbox, SmtpSink

from centrex.config import Settings
from centrex.sandbox import processes
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import (
    TEST_ASTERISK_DB_PASSWORD,
    TEST_EDGE_DB_PASSWORD,
    ScratchDatabase,
    free_port,
    scratch_database,
)
from centrex.sandbox.processes import API_READY, CDR_READY, DAEMON_READY, ServiceProcess
from centrex.tls import generate_self_signed

API_TOKEN = "test-operator-token"


def _port_block() -> dict[str, int]:
    # A fixed block away from the defaults (5060/5038/8088) and from the sandbox unit tests;
    # CENTREX_TEST_PORT_OFFSET moves it, so two test runs can share a machine.
    offset = int(os.environ.get("CENTREX_TEST_PORT_OFFSET", "0"))
    return {"sip_port": 25060 + offset, "ami_port": 25038 + offset, "http_port": 28088 + offset}


@pytest.fixture(scope="session")
async def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchDatabase]:
    async with scratch_database(tmp_path_factory.mktemp("pg")) as db:
        yield db


@pytest.fixture(scope="session")
def database_url(database: ScratchDatabase) -> str:
    return database.url


@pytest.fixture(scope="session")
def operator_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The certificate and key an operator would install for SIP/TLS (docs/tls.md)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    generate_self_signed(cert, key, "127.0.0.1")
    return cert, key


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    operator_certificate: tuple[Path, Path],
) -> Settings:
    return Settings(
        _env_file=None,
        var_dir=tmp_path_factory.mktemp("var"),
        database_url=database_url,
        asterisk_instance=f"pytest{os.environ.get('CENTREX_TEST_PORT_OFFSET', '')}",
        api_port=free_port(),
        control_http_port=free_port(),
        cdr_http_port=free_port(),
        supervisor_http_port=0,
        guard_http_port=free_port(),
        smtp_port=free_port(),  # the tests' own SMTP server (smtp_server)
        api_token=API_TOKEN,
        # The suite makes thousands of requests with one token as fast as it can (2,700 in
        # test_api_robustness.py alone): no rate limit here; test_api_limits.py starts an API
        # of its own with a low one.
        api_rate_limit_per_s=0,
        ami_secret="test-ami-secret",
        ari_password="test-ari-password",
        ari_control_password="test-ari-control-password",
        ari_cdr_password="test-ari-cdr-password",
        # What Asterisk reads lines and trunks from the database as (the scratch cluster's).
        asterisk_db_password=TEST_ASTERISK_DB_PASSWORD,
        edge_db_password=TEST_EDGE_DB_PASSWORD,  # what Kamailio writes registrations as
        # sipp 3.6.1 devices cannot answer an OPTIONS outside a call (each new Call-ID is a
        # call of their scenario): no keep-alives here, test_nat.py shows them on its own.
        sip_qualify_frequency_s=0,
        reconcile_interval_s=2,
        call_sweep_interval_s=1,
        ring_timeout_s=5,  # an unanswered call gives up after 5 s, not 60
        # Unanswered calls end (480, 486) as these tests expect, instead of reaching a mailbox
        # and waiting for a message; tests/test_voicemail.py turns mailboxes on line by line.
        voicemail_default_enabled=False,
        voicemail_email_retry_s=0.5,  # an SMTP server back up is tried again at once
        stasis_wait_s=4,  # a call nobody decides is ended by Asterisk after 4 s, not 10
        # The daemon's database deadline on the call path (1 s in production): on a shared
        # 2-CPU runner a burst of 50 calls can starve PostgreSQL past 1 s and turn an honest
        # admission into a 503. Still under stasis_wait_s, so test_faults.py's frozen-database
        # refusals are the daemon's own, not Asterisk's.
        call_path_db_timeout_s=2.5,
        number_quarantine_s=3,
        # The API process's contracts scheduler (real clock) passes once, at its start: tests
        # move the clock themselves (tests/test_contracts*.py), none in a race with it.
        contracts_interval_s=86400,
        sip_tls_cert_file=operator_certificate[0],
        sip_tls_key_file=operator_certificate[1],
        **_port_block(),
    )


@pytest.fixture(scope="session")
def asterisk(settings: Settings) -> Iterator[AsteriskSandbox]:
    sandbox = AsteriskSandbox(settings)
    sandbox.ensure_installed()
    sandbox.render_config()
    sandbox.wipe_provisioned_state()
    sandbox.wipe_call_journal()
    sandbox.start()
    yield sandbox
    sandbox.stop()


Service = ServiceProcess


def _wait_until(predicate, timeout: float, what: str) -> None:
    try:
        processes.wait_until(predicate, timeout, what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


@pytest.fixture(scope="session")
def api_service(
    settings: Settings, asterisk: AsteriskSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    service = Service("api", settings, tmp_path_factory.mktemp("logs"))
    service.start_and_wait(API_READY)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def cdr_service(
    settings: Settings, asterisk: AsteriskSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    service = Service("cdr", settings, tmp_path_factory.mktemp("logs"))
    service.start_and_wait(CDR_READY)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def control_service(
    settings: Settings,
    asterisk: AsteriskSandbox,
    cdr_service: Service,  # the platform's calls come with their CDRs
    tmp_path_factory: pytest.TempPathFactory,
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


CARRIER_IP = "127.0.0.2"


@pytest.fixture(scope="module")
def carrier(api: httpx.Client, settings: Settings) -> Iterator[Carrier]:
    """The public network: a trunk to sipp on its own loopback address (Asterisk recognises a
    trunk's calls by source address; lines all speak from 127.0.0.1)."""
    # Calls out take the oldest trunk: one an earlier module failed to delete would take this
    # module's calls elsewhere (one leaked trunk once failed 24 tests after it). Removed, said.
    for leaked in api.get("/v1/trunks").json():
        warnings.warn(f"trunk {leaked['name']} left by an earlier module: deleted", stacklevel=1)
        assert api.delete(f"/v1/trunks/{leaked['id']}").status_code == 204
    port = free_udp_port(CARRIER_IP)
    body = {"name": "carrier", "host": CARRIER_IP, "port": port}
    response = api.post("/v1/trunks", json=body)
    assert response.status_code == 201, response.text
    yield Carrier(CARRIER_IP, port, f"{settings.asterisk_host}:{settings.sip_port}")
    api.delete(f"/v1/trunks/{response.json()['id']}")


@pytest.fixture(scope="session")
def smtp_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    """A real SMTP server (aiosmtpd), a process of its own on the settings' SMTP port: a test
    may stop it and start it again (tests/test_voicemail.py)."""
    sink = SmtpSink(settings.smtp_port, tmp_path_factory.mktemp("smtp"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def smtp_inbox(smtp_server: SmtpSink) -> Inbox:
    """Where the platform's notices arrive: the messages so far, as a list."""
    return Inbox(smtp_server)


@pytest.fixture
def make_line(api: httpx.Client, customer: dict, settings: Settings):
    """Lines of the test module's ``customer`` (a fixture each module defines), with their SIP
    endpoint as a device would use it."""

    def make(label: str = "line", **fields: object) -> tuple[dict, SipEndpoint]:
        body = {"customer_id": customer["id"], "label": label, **fields}
        response = api.post("/v1/lines", json=body)
        assert response.status_code == 201, response.text
        line = response.json()
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        return line, SipEndpoint(line["sip_username"], line["sip_password"], server)

    return make


@pytest.fixture
def answering_line(make_line):
    """Lines whose device answers everything (limit raised so only callers' limits bite)."""
    devices = []

    def make(*, ring_ms: int = 100, calls: int = 1000, **limits) -> tuple[dict, SipEndpoint]:
        line, endpoint = make_line(max_calls=1000, **limits)
        port = free_udp_port()
        endpoint.register(port).expect_success()
        devices.append(endpoint.answer(port, calls=calls, ring_ms=ring_ms, timeout_s=600))
        return line, endpoint

    yield make
    for device in devices:
        device.process.kill()
