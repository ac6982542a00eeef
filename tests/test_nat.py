"""Phones behind NAT (docs/sip-edge.md): a phone writes its private address in Via, Contact and
SDP; the platform must answer, call and send media to where its packets come from."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rtp_capture import UdpCounter
from sip_agent import _scenario, free_udp_port, received, run_sipp
from test_sandbox_asterisk import started_sandbox

from centrex.asterisk.ari import AriClient
from centrex.config import Settings
from centrex.core.credentials import digest_ha1
from centrex.db.models import Line
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.services.provisioning import AsteriskProjector

pytestmark = pytest.mark.integration

PRIVATE = "127.0.0.99:5999"  # what the phone believes its address is; nothing listens there


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "Behind NAT"}).json()


def test_phone_behind_nat_is_called_at_its_real_socket_and_media_flows_both_ways(
    make_line, asterisk: AsteriskSandbox, settings: Settings, control_service, tmp_path: Path,
    wait_until,
):  # fmt: skip
    _, alice = make_line("caller")
    _, phone = make_line("behind nat")
    audio = tmp_path / "one-second.alaw"
    audio.write_bytes(b"\xd5" * 8000)  # 1 s of A-law silence: 50 packets of 20 ms
    port, media_port = free_udp_port(), free_udp_port()
    device = run_sipp(
        _scenario("nat_phone.xml"), phone.server, local_port=port, media_port=media_port,
        service=phone.username, user=phone.username, password=phone.password,
        extra=["-oocsf", str(_scenario("nat_phone_answer.xml.tmpl", audio=str(audio))),
               "-trace_screen"],
    )  # fmt: skip

    def contact() -> str:
        lines = asterisk.cli(f"pjsip show aor {phone.username}").splitlines()
        return next((ln for ln in lines if "Contact:" in ln and phone.username in ln), "")

    wait_until(lambda: contact() != "" or device.process.poll() is not None, 15, "registered")
    # Registered where its REGISTER came from, not where its Contact said.
    assert f"127.0.0.1:{port}" in contact(), f"{contact()}\n{device.output}"

    caller_media = free_udp_port()
    with (
        UdpCounter("127.0.0.1", media_port) as to_phone,
        UdpCounter("127.0.0.1", caller_media) as to_caller,
    ):
        # The caller echoes every RTP packet it gets back to Asterisk.
        caller = run_sipp(
            _scenario("uac_call.xml"), alice.server, service=phone.username,
            user=alice.username, password=alice.password, keys={"caller": alice.username},
            media_port=caller_media, extra=["-d", "2500", "-rtp_echo"],
        )  # fmt: skip
        caller.expect_success()
        device.expect_success()
    # The phone's RTP reached the caller through Asterisk, and the caller's echo came back
    # through Asterisk to the phone's real media socket, which no SIP or SDP line names:
    # Asterisk sent it where the phone's RTP came from.
    assert (to_caller.count > 0, to_phone.count > 0) == (True, True), (
        f"caller's socket got {to_caller.count} RTP packets, phone's real socket "
        f"{to_phone.count}\n{caller.output}\n{device.output}"
    )


# --- keeping the phone's NAT binding open -----------------------------------------------------
QUALIFY_S = 1  # production's is 30 (CENTREX_SIP_QUALIFY_FREQUENCY_S): a second keeps this short


@pytest.fixture(scope="module")
def qualifying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskSandbox]:
    """An Asterisk of this test's own: the session's runs without keep-alives, which its sipp
    devices (one call per Call-ID) could not answer."""
    with started_sandbox(tmp_path_factory, "keepalive") as sandbox:
        yield sandbox


def _push_line(settings: Settings, username: str, password: str) -> None:
    """The line as Asterisk serves it (centrex.services.provisioning), with ``settings``: this
    Asterisk has no database, so written over ARI into astdb (sorcery.conf's last wizard)."""
    line = Line(
        sip_username=username, sip_ha1=digest_ha1(username, settings.sip_realm, password),
        sip_realm=settings.sip_realm, media_encryption="none",
    )  # fmt: skip

    async def push() -> None:
        async with AriClient.from_settings(settings, "api") as ari:
            for obj in AsteriskProjector.from_settings(settings).line_objects(line):
                await ari.put_object("res_pjsip", obj.type, obj.id, obj.fields)

    asyncio.run(push())


def test_asterisk_keeps_a_phone_s_nat_binding_open_and_sees_when_it_is_gone(
    qualifying: AsteriskSandbox, wait_until
):
    settings = qualifying.settings.model_copy(update={"sip_qualify_frequency_s": QUALIFY_S})
    username, password = "keepalive1", "a-long-enough-password"
    _push_line(settings, username, password)
    port = free_udp_port()
    phone = run_sipp(
        _scenario("keepalive_phone.xml"), f"127.0.0.1:{settings.sip_port}", local_port=port,
        service=username, user=username, password=password, timeout_s=20,
        extra=["-oocsf", str(_scenario("answer_options.xml")), "-trace_msg"],
    )  # fmt: skip

    def contact() -> str:
        lines = qualifying.cli(f"pjsip show aor {username}").splitlines()
        return next((ln for ln in lines if "Contact:" in ln and username in ln), "")

    wait_until(lambda: "Avail" in contact() or phone.process.poll() is not None, 15, "qualified")
    assert f"127.0.0.1:{port}" in contact() and "Avail" in contact(), contact()
    # Three OPTIONS, a second apart, reached the phone at the socket its REGISTER came from:
    # the router's binding sees traffic from the platform, and stays open.
    phone.expect_success(timeout=20)
    options = [m for m in received(phone) if m.first_line.startswith("OPTIONS sip:")]
    assert len(options) >= 3, phone.output
    assert options[-1].at - options[0].at >= QUALIFY_S, [m.at for m in options]
    # The phone is gone (its binding closed, say): the next OPTIONS goes unanswered and the
    # phone is unreachable, so a call to the line fails at once instead of ringing no one.
    wait_until(lambda: "Unavail" in contact(), 10, "unreachable once it stopped answering")
