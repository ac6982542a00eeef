"""Phones behind NAT (docs/sip-edge.md): a phone writes its private address in Via, Contact and
SDP; the platform must answer, call and send media to where its packets come from."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from rtp_capture import UdpCounter
from sip_agent import _scenario, free_udp_port, run_sipp

from centrex.config import Settings
from centrex.sandbox.asterisk import AsteriskSandbox

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
