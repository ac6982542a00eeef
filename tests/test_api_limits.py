"""Abuse limits of the real API process: an oversized body is refused before it is read or held,
and a token past its rate gets 429 with Retry-After."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import API_TOKEN

from centrex.config import Settings
from centrex.sandbox.postgres import free_port
from centrex.sandbox.processes import API_READY, ServiceProcess

pytestmark = pytest.mark.integration

TEN_MB = 10 * 1024 * 1024
CHUNK = 64 * 1024


def raw_exchange(settings: Settings, head: str, body: Iterable[bytes] = ()) -> tuple[int, bytes]:
    """Send ``head`` and ``body`` on a socket of its own, then read the answer to the end: the
    status and the response body. A server that closes without reading all of the body resets
    the connection (after its answer): that ends the exchange."""
    answer = b""
    with (
        socket.create_connection((settings.api_host, settings.api_port), timeout=10) as sock,
        contextlib.suppress(BrokenPipeError, ConnectionResetError),
    ):
        sock.sendall(head.replace("\n", "\r\n").encode())
        for chunk in body:
            sock.sendall(chunk)
        while data := sock.recv(65536):
            answer += data
    head_out, _, content = answer.partition(b"\r\n\r\n")
    return int(head_out.split()[1]), content


def refused(client: httpx.Client, reason: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^centrex_api_requests_refused_total{{reason="{reason}"}} (\S+)$', text,
                      re.MULTILINE)  # fmt: skip
    assert match, f"no refused-requests counter for {reason}"
    return float(match.group(1))


def peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


def test_ten_megabytes_declared_are_refused_without_being_sent(api, settings):
    before = refused(api, "body_too_large")
    # Only the head goes out: the answer cannot wait for a body that never comes.
    status, body = raw_exchange(
        settings,
        f"POST /v1/customers HTTP/1.1\nHost: api\nAuthorization: Bearer {API_TOKEN}\n"
        f"Content-Type: application/json\n"
        f"Content-Length: {TEN_MB}\n\n",
    )
    assert status == 413
    assert json.loads(body) == {"detail": f"request body larger than {1024 * 1024} bytes"}
    assert refused(api, "body_too_large") == before + 1


def test_a_chunked_body_is_refused_before_it_ends(api, settings):
    # One chunk past the limit, and never the last chunk: only the limit can answer this.
    chunks = [b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n"] * (
        settings.api_max_body_bytes // CHUNK + 1
    )
    status, body = raw_exchange(
        settings,
        f"POST /v1/customers HTTP/1.1\nHost: api\nAuthorization: Bearer {API_TOKEN}\n"
        "Transfer-Encoding: chunked\n\n",
        chunks,
    )
    assert status == 413
    assert json.loads(body)["detail"] == f"request body larger than {1024 * 1024} bytes"


def test_a_ten_megabyte_stream_is_refused_without_being_held(api, api_service):
    pid = api_service.process.pid

    def ten_megabytes() -> Iterator[bytes]:  # no length known in advance: sent chunked
        for _ in range(TEN_MB // CHUNK):
            yield b" " * CHUNK

    # Reset the API process's peak memory (VmHWM) to what it holds now: the peak after the
    # request then says whether the body was ever held, even if it was freed since.
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    start = peak_rss_kb(pid)
    response = api.post(
        "/v1/customers", content=ten_megabytes(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json() == {"detail": f"request body larger than {1024 * 1024} bytes"}
    grown_kb = peak_rss_kb(pid) - start
    assert grown_kb < 4 * 1024, f"the API's memory grew by {grown_kb} kB"


@pytest.fixture(scope="module")
def limited(settings: Settings, asterisk, tmp_path_factory) -> Iterator[Settings]:
    """An API of its own: 3 requests at once, then one every 2 s per token (the session's has no
    limit). Slow enough that a loaded machine cannot earn a token back within the test."""
    mine = settings.model_copy(
        update={"api_port": free_port(), "api_rate_limit_per_s": 0.5, "api_rate_limit_burst": 3,
                "reconcile_interval_s": 3600},
    )  # fmt: skip
    service = ServiceProcess("api", mine, tmp_path_factory.mktemp("limited-api"))
    service.start_and_wait(API_READY)
    yield mine
    service.stop()


def test_a_token_past_its_rate_gets_429_with_retry_after(limited):
    base = f"http://{limited.api_host}:{limited.api_port}"
    token = {"Authorization": f"Bearer {limited.api_token.get_secret_value()}"}
    with httpx.Client(base_url=base, headers=token, timeout=15) as client:
        before = refused(client, "rate_limited")
        assert [client.get("/v1/lines?limit=1").status_code for _ in range(3)] == [200] * 3
        response = client.get("/v1/lines?limit=1")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert response.json() == {"detail": "rate limit exceeded: retry in 2 s"}
        # The rate is checked first: an oversized body past it is not even looked at.
        status, _ = raw_exchange(
            limited,
            f"POST /v1/customers HTTP/1.1\nHost: api\nAuthorization: {token['Authorization']}\n"
            f"Content-Length: {TEN_MB}\n\n",
        )
        assert status == 429
        # Monitoring is never refused, nor is another token (here a wrong one: 401, not 429).
        for path in ("/health/live", "/health/ready", "/metrics") * 5:
            assert client.get(path).status_code == 200, path
        other = {"Authorization": "Bearer another-token"}
        assert [client.get("/v1/lines", headers=other).status_code for _ in range(3)] == [401] * 3
        assert refused(client, "rate_limited") == before + 2
        time.sleep(int(response.headers["Retry-After"]))
        assert client.get("/v1/lines?limit=1").status_code == 200
