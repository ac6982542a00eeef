"""Hold and music on hold (issue 15): a phone's hold (re-INVITE with a=sendonly) makes Asterisk
play its default music to the other party, as RTP, while the call stays counted. Real Asterisk
(the music Debian ships, docs/transfers.md), sipp as both phones, a packet counter on loopback."""

from __future__ import annotations

import httpx
import pytest
from rtp_capture import UdpCounter
from sip_agent import _scenario, free_udp_port, run_sipp, wait_bound

pytestmark = pytest.mark.integration

HELD_PACKETS = 50  # one second of 20 ms packets: music, not a stray packet


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "hold"}).json()


def test_the_held_party_hears_music_from_asterisk_and_the_call_still_counts(
    api, make_line, control_service, wait_until
):
    caller, alice = make_line("holder", max_calls=1)
    _, bob = make_line("held")
    port, bob_media = free_udp_port(), free_udp_port()
    bob.register(port).expect_success()
    with UdpCounter("127.0.0.1", bob_media) as to_bob:
        answering = run_sipp(
            _scenario("uas_answer.xml"), bob.server, local_port=port, media_port=bob_media,
            extra=["-d", "100"],
        )  # fmt: skip
        device = wait_bound(answering, port)
        # Neither phone sends audio: whatever reaches Bob's media socket is Asterisk's own.
        call = run_sipp(
            _scenario("uac_call_hold.xml"), alice.server, service=bob.username,
            user=alice.username, password=alice.password, keys={"caller": alice.username},
            extra=["-d", "1500"],
        )  # fmt: skip

        def answered() -> bool:
            calls = api.get(f"/v1/lines/{caller['id']}/calls").json()
            return bool(calls) and calls[0]["answered_at"] is not None

        wait_until(answered, 15, "the call answered")
        before_hold = to_bob.count
        wait_until(lambda: to_bob.count >= before_hold + HELD_PACKETS, 15,
                   f"{HELD_PACKETS} RTP packets of music on hold to Bob")  # fmt: skip
        # On hold, the call still takes the caller's one place.
        assert len(api.get(f"/v1/lines/{caller['id']}/calls").json()) == 1
        alice.call_refused(bob.username, 486).expect_success()
        call.expect_success()
        device.expect_success()
    assert before_hold == 0, f"{before_hold} packets reached Bob before the hold"
