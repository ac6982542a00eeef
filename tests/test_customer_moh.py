"""Per-customer music on hold (issue 15): a customer uploads a WAV, and the party its line puts
on hold hears it (RTP from Asterisk, decoded and compared with the uploaded tone), without a
reload of Asterisk; DELETE brings the default music back. Hostile uploads are refused (400
naming the field) and change nothing. Real Asterisk (realtime classes from PostgreSQL), sipp as
both phones, a packet socket on loopback recording the held phone's audio."""

from __future__ import annotations

import io
import math
import time
import wave

import httpx
import pytest
from rtp_audio import RtpRecorder, tone_share
from sip_agent import SipEndpoint, _scenario, free_udp_port, run_sipp, wait_bound

pytestmark = pytest.mark.integration

TONE_HZ = 1000.0


def wav(seconds: float, *, hz: float = TONE_HZ, rate: int = 8000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        samples = (
            int(12000 * math.sin(2 * math.pi * hz * n / rate)) for n in range(int(rate * seconds))
        )
        w.writeframes(b"".join(s.to_bytes(2, "little", signed=True) * channels for s in samples))
    return out.getvalue()


def customer_client(api: httpx.Client, customer_id: str) -> httpx.Client:
    body = {"name": "moh", "scope": "customer", "customer_id": customer_id}
    token = api.post("/v1/tokens", json=body).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=str(api.base_url), timeout=15, headers=headers)


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "hold music"}).json()


def held_audio(api, make_line, held_line=None) -> list[int]:
    """A call from a line of the customer to another (``held_line``'s: another customer's), put
    on hold by the caller for 4 s: the samples the held phone received (neither phone sends
    audio: all of it is Asterisk's)."""
    _, alice = make_line("holder")
    _, bob = (held_line or make_line)("held")
    port, bob_media = free_udp_port(), free_udp_port()
    bob.register(port).expect_success()
    with RtpRecorder("127.0.0.1", bob_media) as heard:
        answering = run_sipp(
            _scenario("uas_answer.xml"), bob.server, local_port=port, media_port=bob_media,
            extra=["-d", "100"],
        )  # fmt: skip
        device = wait_bound(answering, port)
        call = run_sipp(
            _scenario("uac_call_hold.xml"), alice.server, service=bob.username,
            user=alice.username, password=alice.password, keys={"caller": alice.username},
            extra=["-d", "1500"],
        )  # fmt: skip
        call.expect_success()
        device.expect_success()
    assert len(heard.samples) >= 8000, f"{len(heard.samples)} samples of music on hold"
    return heard.samples


def test_the_held_party_hears_the_customer_s_own_music(api, make_line, control_service, customer):
    url = f"/v1/customers/{customer['id']}/music-on-hold"
    assert api.get(url).json()["music"] == "default"
    # Hostile or unusable files: 400 naming the field, nothing stored.
    # (A WAV cut short: its header announces more audio than it has.)
    for bad in (b"not a wav", wav(2.0, rate=16000), wav(2.0, channels=2), wav(0.5),
                wav(2.0)[:-3000], b"RIFF\xff\xff\xff\xffWAVEfmt "):  # fmt: skip
        refused = api.put(url, content=bad, headers={"Content-Type": "audio/wav"})
        assert refused.status_code == 400, (bad[:16], refused.text)
        assert refused.json()["detail"][0]["loc"][-1] == "music", refused.text
    assert api.get(url).json()["music"] == "default"
    other = api.post("/v1/customers", json={"name": "someone else"}).json()
    with customer_client(api, other["id"]) as theirs:
        assert theirs.put(url, content=wav(2.0)).status_code == 404
        assert theirs.get(url).status_code == 404

    # The default music first: not the tone.
    default = held_audio(api, make_line)
    assert tone_share(default, TONE_HZ) < 0.3, tone_share(default, TONE_HZ)

    with customer_client(api, customer["id"]) as own:  # the customer's own token
        uploaded = own.put(url, content=wav(3.0), headers={"Content-Type": "audio/wav"})
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["music"] == "uploaded" and uploaded.json()["seconds"] == 3.0
    # The daemon reads which customers have music every 2 s: the next held calls hear it
    # (polled with a deadline on what the phone hears, never a sleep).
    deadline = time.monotonic() + 60
    while True:
        heard = held_audio(api, make_line)
        share = tone_share(heard, TONE_HZ)
        if share > 0.8 or time.monotonic() > deadline:
            break
    assert share > 0.8, f"the held phone heard {share:.2f} of its energy at {TONE_HZ} Hz"
    print(
        f"music on hold: tone share {share:.2f} (default music {tone_share(default, TONE_HZ):.2f})"
    )

    # A line of another customer (no music of its own) held by this customer's line hears this
    # customer's music: the callee's channel gets the caller customer's class (the dialplan's
    # centrex-answered; ExecIf, app_exec.so: not loaded, its own class was heard instead).
    def others_line(label: str) -> tuple[dict, SipEndpoint]:
        body = {"customer_id": other["id"], "label": label}
        created = api.post("/v1/lines", json=body)
        assert created.status_code == 201, created.text
        c = created.json()
        return c, SipEndpoint(c["sip_username"], c["sip_password"], c["sip_server"])

    across = tone_share(held_audio(api, make_line, others_line), TONE_HZ)
    assert across > 0.8, f"another customer's held phone heard {across:.2f} at {TONE_HZ} Hz"

    # Back to the default music.
    assert api.delete(url).json()["music"] == "default"
    again = held_audio(api, make_line)
    assert tone_share(again, TONE_HZ) < 0.3
    trail = api.get("/v1/audit", params={"object_type": "music_on_hold"}).json()["items"]
    assert {e["change"] for e in trail} >= {"created", "deleted"}
