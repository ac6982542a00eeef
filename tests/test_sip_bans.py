"""Issue 12: an address that keeps guessing a line's password is banned in the kernel (real
Asterisk, sipp, nftables and PostgreSQL on loopback), while the line itself keeps working from
elsewhere; bans are listed, lifted and expire."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from sip_agent import SippRun, _scenario, free_udp_port, run_sipp

from centrex.config import Settings
from centrex.guard.nft import table_name
from centrex.sandbox.postgres import free_port
from centrex.sandbox.processes import GUARD_READY, ServiceProcess

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nft") is None, reason="nftables (nft) is not installed"),
]


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "bans"}).json()


@pytest.fixture
def start_guard(settings: Settings, asterisk, tmp_path) -> Iterator:
    """``centrex guard`` with the test's own ban settings; its table is deleted afterwards.
    The test phones' own addresses (127.0.0.1, the carrier's .2) are allow-listed, so the rest
    of the suite is never banned nor rate-limited by it."""
    started: list[ServiceProcess] = []
    table = table_name(settings.asterisk_instance)

    def start(**overrides: object) -> tuple[ServiceProcess, str]:
        guard_settings = settings.model_copy(
            update={
                "guard_http_port": free_port(),
                "sip_ban_reconcile_s": 0.5,
                "sip_ban_allow": ["127.0.0.1/32", "127.0.0.2/32", *overrides.pop("allow", [])],
                **overrides,
            }
        )
        guard = ServiceProcess("guard", guard_settings, tmp_path)
        guard.start_and_wait(GUARD_READY)
        started.append(guard)
        return guard, f"http://127.0.0.1:{guard_settings.guard_http_port}/metrics"

    yield start
    for guard in started:
        guard.stop()
    subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True)


def guesses(settings: Settings, username: str, source: str, count: int) -> SippRun:
    """``count`` REGISTERs from ``source``, each answering the challenge with a wrong password."""
    return run_sipp(
        _scenario("register_refused.xml"), f"{settings.asterisk_host}:{settings.sip_port}",
        service=username, user=username, password="wrong-guess", calls=count, rate=20,
        limit=5, timeout_s=4, local_ip=source,
        keys={"contact_port": str(free_udp_port(source)), "expires": "300"},
    )  # fmt: skip


def register(settings: Settings, username: str, password: str, source: str) -> int:
    """The right password from ``source``: sipp's exit status (0 registered; a banned source
    gets no answer and times out)."""
    port = free_udp_port(source)
    run = run_sipp(
        _scenario("register.xml"), f"{settings.asterisk_host}:{settings.sip_port}",
        service=username, user=username, password=password, local_port=port, local_ip=source,
        timeout_s=2, keys={"contact_port": str(port), "expires": "60"},
    )  # fmt: skip
    return run.wait(30)


def bans(api: httpx.Client) -> dict[str, dict]:
    response = api.get("/v1/sip-bans")
    assert response.status_code == 200, response.text
    return {ban["address"]: ban for ban in response.json()}


def every_ban(api: httpx.Client, address: str) -> list[dict]:
    """Bans of ``address`` in force or ended, newest first."""
    response = api.get("/v1/sip-bans", params={"include_ended": "true"})
    assert response.status_code == 200, response.text
    return [ban for ban in response.json() if ban["address"] == address]


def kernel_bans(settings: Settings) -> str:
    table = table_name(settings.asterisk_instance)
    return subprocess.run(
        ["nft", "list", "set", "inet", table, "banned4"], capture_output=True, text=True
    ).stdout


def metric(url: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(url).text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_guessing_bans_the_source_not_the_line(api, settings, make_line, start_guard, wait_until):
    line, endpoint = make_line("guessed")
    _, metrics_url = start_guard(sip_ban_s=300)

    guesses(settings, line["sip_username"], "127.0.0.77", 40).wait(60)
    wait_until(lambda: "127.0.0.77" in bans(api), 15, "the ban of 127.0.0.77")
    ban = bans(api)["127.0.0.77"]
    assert ban["failures"] == 5 and ban["rule"] == "5 failed authentications in 600s"
    events = ban["evidence"]["events"]
    assert len(events) == 5
    assert {e["event"] for e in events} == {"ChallengeResponseFailed"}
    # Banned at the threshold: Asterisk saw a handful of the 40 guesses, not all of them.
    counted = metric(metrics_url, 'centrex_sip_auth_failures_total{outcome="counted"}')
    assert 5 <= counted < 20, counted
    assert metric(metrics_url, 'centrex_sip_bans_total{event="issued"}') == 1

    # Even the right password gets no answer from the banned address ...
    assert register(settings, endpoint.username, endpoint.password, "127.0.0.77") != 0
    # ... while the line's own phone, elsewhere, registers.
    assert register(settings, endpoint.username, endpoint.password, "127.0.0.78") == 0

    # A kernel set emptied behind the guard's back is repaired from the database.
    table = table_name(settings.asterisk_instance)
    subprocess.run(["nft", "flush", "set", "inet", table, "banned4"], check=True)
    wait_until(lambda: "127.0.0.77" in kernel_bans(settings), 10, "the ban restored")

    # Lifted: the right password registers from .77 again.
    assert api.delete("/v1/sip-bans/127.0.0.77").status_code == 204
    assert "127.0.0.77" not in bans(api)
    wait_until(lambda: "127.0.0.77" not in kernel_bans(settings), 10, "the ban lifted")
    assert register(settings, endpoint.username, endpoint.password, "127.0.0.77") == 0
    wait_until(
        lambda: metric(metrics_url, 'centrex_sip_bans_total{event="lifted"}') == 1, 10, "lifted"
    )
    assert api.delete("/v1/sip-bans/127.0.0.77").status_code == 404
    bad = api.delete("/v1/sip-bans/not-an-address")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "address"]


def test_bans_expire_and_repeat_offenders_are_banned_longer(
    api, settings, make_line, start_guard, wait_until
):
    line, endpoint = make_line("expiring")
    _, metrics_url = start_guard(sip_ban_s=2, sip_ban_max_s=60)

    # A 2 s ban may be over before sipp gives up on its unanswered guesses: looked for at once,
    # in the bans that ended too.
    run = guesses(settings, line["sip_username"], "127.0.0.79", 10)
    wait_until(lambda: len(every_ban(api, "127.0.0.79")) == 1, 15, "the ban of 127.0.0.79")
    run.wait(60)
    (first,) = every_ban(api, "127.0.0.79")
    wait_until(lambda: "127.0.0.79" not in bans(api), 20, "the ban's expiry")
    wait_until(lambda: "127.0.0.79" not in kernel_bans(settings), 10, "the kernel's expiry")
    assert register(settings, endpoint.username, endpoint.password, "127.0.0.79") == 0
    wait_until(
        lambda: metric(metrics_url, 'centrex_sip_bans_total{event="expired"}') == 1, 10, "expired"
    )

    run = guesses(settings, line["sip_username"], "127.0.0.79", 10)
    wait_until(lambda: len(every_ban(api, "127.0.0.79")) == 2, 15, "the second ban")
    run.wait(60)
    second = every_ban(api, "127.0.0.79")[0]  # newest first

    def seconds(ban: dict) -> float:
        return (
            datetime.fromisoformat(ban["until"]) - datetime.fromisoformat(ban["banned_at"])
        ).total_seconds()

    assert round(seconds(first)) == 2 and round(seconds(second)) == 4


def forged_guesses(settings: Settings, username: str, source: str, forged: str, count: int):
    """Wrong passwords whose Call-ID carries ``",RemoteAddress="IPV4/UDP/<forged>/5060``:
    Asterisk writes it into the security line as is, before the real RemoteAddress."""
    host, sip_port = settings.asterisk_host, settings.sip_port
    fake = f"IPV4/UDP/{forged}/5060"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(2)
        port = sock.getsockname()[1]

        def send(i: int, cseq: int, extra: str = "") -> str:
            message = (
                f"REGISTER sip:{host}:{sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{i}c{cseq}\r\n"
                f"From: <sip:{username}@{host}>;tag={i}\r\nTo: <sip:{username}@{host}>\r\n"
                f'Call-ID: {i}x",RemoteAddress="{fake}",LocalAddress="{fake}\r\n'
                f"CSeq: {cseq} REGISTER\r\nContact: <sip:{username}@{source}:{port}>\r\n"
                f"{extra}Max-Forwards: 70\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(message.encode(), (host, sip_port))
            try:
                return sock.recvfrom(65535)[0].decode(errors="replace")
            except TimeoutError:
                return ""

        for i in range(count):
            nonce = re.search(r'nonce="([^"]+)"', send(i, 1))
            if nonce is None:
                return  # banned: no more answers
            send(
                i, 2,
                f'Authorization: Digest username="{username}",realm="{settings.sip_realm}",'
                f'nonce="{nonce.group(1)}",uri="sip:{host}:{sip_port}",'
                'response="0123456789abcdef0123456789abcdef",algorithm=MD5\r\n',
            )  # fmt: skip


def test_a_forged_address_in_the_callers_text_bans_only_the_real_source(
    api, settings, make_line, start_guard, wait_until
):
    line, _ = make_line("forged")
    _, metrics_url = start_guard(sip_ban_s=300, allow=["127.0.0.80/32"])

    forged_guesses(settings, line["sip_username"], "127.0.0.81", "127.0.0.82", 8)
    wait_until(lambda: "127.0.0.81" in bans(api), 15, "the ban of the real source")
    assert "127.0.0.82" not in bans(api)
    assert "127.0.0.82" not in kernel_bans(settings)

    # The allow-list: guessing from .80 is counted as allowed, never banned.
    guesses(settings, line["sip_username"], "127.0.0.80", 10).wait(60)
    wait_until(
        lambda: metric(metrics_url, 'centrex_sip_auth_failures_total{outcome="allowed"}') >= 10,
        15,
        "the allow-listed failures",
    )
    assert "127.0.0.80" not in bans(api)
    assert "127.0.0.80" not in kernel_bans(settings)


def test_a_manual_ban_through_the_api_reaches_the_kernel(
    api, settings, make_line, start_guard, wait_until
):
    """POST /v1/sip-bans (issue 19): the guard applies a ban it did not issue, like any other
    ban in force in the database, and lets the address through once it is lifted."""
    _, endpoint = make_line("manual")
    start_guard()
    added = api.post("/v1/sip-bans", json={"address": "127.0.0.84", "seconds": 300})
    assert added.status_code == 201, added.text
    assert added.json()["rule"] == "manual" and added.json()["evidence"]["reason"] == ""
    wait_until(lambda: "127.0.0.84" in kernel_bans(settings), 10, "the manual ban in the kernel")
    assert register(settings, endpoint.username, endpoint.password, "127.0.0.84") != 0
    assert api.delete("/v1/sip-bans/127.0.0.84").status_code == 204
    wait_until(lambda: "127.0.0.84" not in kernel_bans(settings), 10, "the manual ban lifted")
    assert register(settings, endpoint.username, endpoint.password, "127.0.0.84") == 0
