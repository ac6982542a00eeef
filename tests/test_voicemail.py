"""Voicemail to email (issue 15), on real parts: Asterisk's app_voicemail reading its mailboxes
from PostgreSQL (realtime), sipp callers streaming RTP audio, a sipp phone subscribed to its
mailbox's message-waiting state, and a real SMTP server as a process of its own."""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
import uuid
import wave
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sip_agent import SCENARIOS, _scenario, free_udp_port, run_sipp
from smtp_sink import SmtpSink

pytestmark = pytest.mark.integration


# --- audio ----------------------------------------------------------------------------------------
def tone_samples(seconds: float, hz: float = 440.0) -> list[int]:
    return [int(8000 * math.sin(2 * math.pi * hz * n / 8000)) for n in range(int(8000 * seconds))]


def wav_bytes(seconds: float, *, rate: int = 8000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = b"".join(s.to_bytes(2, "little", signed=True) for s in tone_samples(seconds))
        w.writeframes(frames * channels)
    return out.getvalue()


def _alaw(sample: int) -> int:
    """G.711 A-law of one 16-bit sample (ITU-T G.711)."""
    sign = 0x80 if sample >= 0 else 0
    magnitude = min(abs(sample) >> 3, 0xFFF)
    if magnitude < 32:
        code = magnitude >> 1
    else:
        exponent = magnitude.bit_length() - 5
        code = (exponent << 4) | ((magnitude >> exponent) & 0x0F)
    return (code | sign) ^ 0x55


def alaw_file(seconds: float) -> Path:
    """A tone as raw A-law (what sipp's rtp_stream sends as payload 8)."""
    path = Path(tempfile.mkdtemp(prefix="vm-audio-")) / "tone.alaw"
    path.write_bytes(bytes(_alaw(s) for s in tone_samples(seconds)))
    return path


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


# --- the SMTP server ---------------------------------------------------------------------------
@pytest.fixture
def smtp(smtp_server: SmtpSink):
    """The session's SMTP server (tests/conftest.py), running again after each test."""
    yield smtp_server
    if not smtp_server.running:
        smtp_server.start()


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    response = api.post("/v1/customers", json={"name": "Voicemail SARL"})
    assert response.status_code == 201, response.text
    return response.json()


def customer_token(api: httpx.Client, customer_id: str | None) -> httpx.Client:
    """A client with a customer token: of ``customer_id``, or of a new customer."""
    if customer_id is None:
        customer_id = api.post("/v1/customers", json={"name": "Someone Else"}).json()["id"]
    body = {"name": "self-service", "scope": "customer", "customer_id": customer_id}
    token = api.post("/v1/tokens", json=body)
    assert token.status_code == 201, token.text
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    return httpx.Client(base_url=str(api.base_url), headers=headers, timeout=15)


def voicemail_on(api: httpx.Client, line: dict, **fields: object) -> dict:
    response = api.patch(f"/v1/lines/{line['id']}/voicemail", json={"enabled": True, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def leave_message(caller, dialled: str, *, hold_ms: int, timeout_s: int = 60):
    """The caller's sipp: answered by the mailbox, streams a tone for ``hold_ms``, hangs up."""
    return run_sipp(
        _scenario("uac_voicemail.xml.tmpl", audio=str(alaw_file(2.0))),
        caller.server, service=dialled, user=caller.username, password=caller.password,
        keys={"caller": caller.username}, extra=["-d", str(hold_ms)], timeout_s=timeout_s,
    )  # fmt: skip


def subscribe_mwi(line_endpoint):
    return run_sipp(
        SCENARIOS / "subscribe_mwi.xml", line_endpoint.server, service=line_endpoint.username,
        user=line_endpoint.username, password=line_endpoint.password, timeout_s=120,
        extra=["-trace_msg"],
    )  # fmt: skip


def notifies(run) -> list[str]:
    """The NOTIFYs the subscribed phone received so far (its -trace_msg log, read while sipp
    writes it: a last record may be incomplete, and is then left for the next read)."""
    text = "".join(p.read_text(errors="replace") for p in run.workdir.glob("*_messages.log"))
    out = []
    for record in text.split("\n" + "-" * 47)[1:]:
        head, _, message = record.partition("\n\n")
        if "message received" in head and message.startswith("NOTIFY ") and "\n\n" in message:
            out.append(message)
    return out


def mwi_log(run) -> str:
    return "".join(p.read_text(errors="replace") for p in run.workdir.glob("*_messages.log"))


def shows_pin(document: object, pin: str) -> bool:
    """Whether a JSON document holds ``pin`` in any value but an id or a timestamp (looked for
    value by value, not in the whole text: "2580" can be part of a UUID or of microseconds)."""
    if isinstance(document, dict):
        return any(shows_pin(item, pin) for item in document.values())
    if isinstance(document, list):
        return any(shows_pin(item, pin) for item in document)
    text = str(document)
    if pin not in text:
        return False
    for kind in (uuid.UUID, datetime.fromisoformat):
        with contextlib.suppress(ValueError):
            kind(text)
            return False
    return True


def poll(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


# --- tests ----------------------------------------------------------------------------------------
def test_unanswered_call_leaves_a_message_emailed_listed_served_and_lit(
    api, make_line, control_service, smtp, settings, customer
) -> None:
    callee, callee_phone = make_line("callee")
    _, caller = make_line("caller")
    voicemail_on(api, callee, email="alice@example.com", pin="2580")
    # The customer records its own greeting, with its own token.
    own, other = customer_token(api, customer["id"]), customer_token(api, None)
    greeting = own.put(f"/v1/lines/{callee['id']}/voicemail/greeting", content=wav_bytes(1.0),
                       headers={"Content-Type": "audio/wav"})  # fmt: skip
    assert greeting.status_code == 200, greeting.text
    assert greeting.json()["greeting"] == "uploaded"
    refused = other.put(f"/v1/lines/{callee['id']}/voicemail/greeting", content=wav_bytes(1.0))
    assert refused.status_code == 404

    port = free_udp_port()
    callee_phone.register(port).expect_success()
    mwi = subscribe_mwi(callee_phone)
    try:
        before = len(smtp.messages())
        device = callee_phone.ring_unanswered(port)  # rings out the 5 s ring timeout
        call = leave_message(caller, callee["sip_username"], hold_ms=12000)
        call.expect_success(90)
        device.expect_success(30)

        # The email, with the recording attached.
        mails = poll(lambda: smtp.messages()[before:], 30, "the voicemail email")
        assert len(mails) == 1
        mail = mails[0]
        assert mail["To"] == "alice@example.com"
        (attachment,) = list(mail.iter_attachments())
        assert attachment.get_content_type() == "audio/wav"
        audio = attachment.get_content()
        assert wav_seconds(audio) >= 2.0, wav_seconds(audio)

        # Listed, and served: the same WAV.
        listed = api.get(f"/v1/lines/{callee['id']}/voicemails")
        assert listed.status_code == 200, listed.text
        (message,) = listed.json()["items"]
        assert message["folder"] == "INBOX" and message["duration_s"] >= 2
        assert caller.username in message["caller_id"]
        served = api.get(f"/v1/lines/{callee['id']}/voicemails/{message['id']}")
        assert served.status_code == 200
        assert served.headers["content-type"] == "audio/wav"
        assert served.content == audio

        # The customer's own token reads them too; another customer's sees no such line.
        assert own.get(f"/v1/lines/{callee['id']}/voicemails").json()["items"] == [message]
        download = f"/v1/lines/{callee['id']}/voicemails/{message['id']}"
        assert own.get(download).content == audio
        assert other.get(f"/v1/lines/{callee['id']}/voicemails").status_code == 404
        assert other.get(download).status_code == 404
        assert other.delete(download).status_code == 404

        # The CDR says where the call went.
        def cdrs() -> list[dict]:
            r = api.get("/v1/cdrs", params={"line_id": callee["id"], "disposition": "voicemail"})
            return r.json()["items"] if r.status_code == 200 else []

        poll(cdrs, 30, "the CDR of the call")

        # Deleted (by the customer): gone from the list and the download, the lamp goes off.
        gone = own.delete(f"/v1/lines/{callee['id']}/voicemails/{message['id']}")
        assert gone.status_code == 204, gone.text
        assert api.get(f"/v1/lines/{callee['id']}/voicemails").json()["items"] == []
        assert api.get(f"/v1/lines/{callee['id']}/voicemails/{message['id']}").status_code == 404
        # The phone's lamp: the subscribed phone got a NOTIFY saying a message waits, then
        # (the message deleted) one saying none does; its sipp ends on that one.
        mwi.expect_success(60)
        lamp = [n for n in notifies(mwi) if "Messages-Waiting:" in n]
        assert "Messages-Waiting: no" in lamp[0], mwi_log(mwi)  # the SUBSCRIBE's answer
        lit = next(i for i, n in enumerate(lamp) if "Messages-Waiting: yes" in n)
        assert "Voice-Message: 1/0" in lamp[lit], lamp[lit]
        assert "Messages-Waiting: no" in lamp[-1] and len(lamp) > lit + 1
    finally:
        mwi.process.kill()
        own.close()
        other.close()

    # The PIN was set through the API: the audit trail names it, never its value.
    trail = api.get("/v1/audit", params={"object_type": "voicemail_box"}).json()["items"]
    assert any("pin" in entry["withheld"] for entry in trail)
    assert not shows_pin(trail, "2580"), trail
    # (Other tests' mailboxes share the session's trail: this line's deletions only.)
    deleted = [e for e in trail if e["change"] == "deleted"
               and e["object_id"].startswith(f"{callee['id']}/")]  # fmt: skip
    assert [e["object_id"] for e in deleted] == [f"{callee['id']}/{message['id']}"]
    assert deleted[0]["token_name"] == "self-service"


def test_a_disabled_mailbox_leaves_the_call_as_it_was(api, make_line, control_service) -> None:
    callee, callee_phone = make_line("no voicemail")
    _, caller = make_line("caller")
    off = api.patch(f"/v1/lines/{callee['id']}/voicemail", json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False
    port = free_udp_port()
    callee_phone.register(port).expect_success()
    device = callee_phone.ring_unanswered(port)
    caller.call_refused(callee["sip_username"], 480).expect_success(30)
    device.expect_success(30)


def test_an_unregistered_line_takes_messages_and_busy_goes_there_too(
    api, make_line, control_service
) -> None:
    callee, callee_phone = make_line("away")
    _, caller = make_line("caller")
    voicemail_on(api, callee)
    # Not registered: the mailbox answers at once (200), instead of 480.
    leave_message(caller, callee["sip_username"], hold_ms=500).expect_success(30)
    # A phone that says busy: the mailbox answers too.
    port = free_udp_port()
    callee_phone.register(port).expect_success()
    device = callee_phone.busy(port)
    leave_message(caller, callee["sip_username"], hold_ms=500).expect_success(30)
    device.wait(10)


def test_a_line_at_its_limit_sends_new_calls_to_its_mailbox(
    api, make_line, answering_line, control_service
) -> None:
    callee, callee_phone = make_line("full", max_calls=1)
    _, caller = make_line("caller")
    answerer, _ = answering_line()
    voicemail_on(api, callee)
    busy = callee_phone.call(answerer["sip_username"], hold_ms=20000)  # its one call
    calls = f"/v1/lines/{callee['id']}/calls"
    try:
        poll(lambda: len(api.get(calls).json()) == 1, 15, "the callee's own call")
        # Its mailbox answers (200) instead of 486, and the callee still has one call only.
        leave_message(caller, callee["sip_username"], hold_ms=1000).expect_success(30)
        assert len(api.get(calls).json()) == 1
        # Off: 486, as before voicemail.
        api.patch(f"/v1/lines/{callee['id']}/voicemail", json={"enabled": False})
        caller.call_refused(callee["sip_username"], 486).expect_success(30)
    finally:
        busy.process.kill()


def test_a_transferred_call_nobody_answers_reaches_the_target_s_mailbox(
    api, make_line, control_service, settings
) -> None:
    """Alice calls Bob, Bob transfers her to Carol, who does not answer: Carol's mailbox takes
    the call, not Bob's (which Alice's channel named for her first call)."""
    _, alice = make_line("transferee")
    bob_line, bob = make_line("transferer")
    carol_line, carol = make_line("target")
    voicemail_on(api, bob_line)
    voicemail_on(api, carol_line)
    carol_port = free_udp_port()
    carol.register(carol_port).expect_success()
    ringing = carol.ring_unanswered(carol_port)
    bob_port = free_udp_port()
    bob.register(bob_port).expect_success()
    transferer = bob.answer_and_transfer(bob_port, carol.username, notifies=2, talk_ms=1000)
    call = alice.call(bob.username, hold_ms=20000)
    try:
        auth = (settings.ari_username, settings.ari_password.get_secret_value())

        def in_voicemail() -> list[str]:
            channels = httpx.get(f"{settings.ari_url}/channels", auth=auth, timeout=5).json()
            return [
                c["dialplan"]["app_data"] for c in channels
                if c["dialplan"]["app_name"] == "VoiceMail"
            ]  # fmt: skip

        (box,) = poll(in_voicemail, 30, "the transferred call in a mailbox")
        assert box.startswith(f"{carol.username}@centrex"), box
    finally:
        for run in (call, transferer, ringing):
            run.process.kill()


def test_the_voicemail_code_opens_only_an_enabled_mailbox(
    api, make_line, control_service, settings
) -> None:
    line, phone = make_line("owner")
    # Off: refused (403), nothing to open.
    phone.call_refused("*98", 403).expect_success(30)
    voicemail_on(api, line, pin="2468")
    # On: answered, by VoiceMailMain on the line's own mailbox (it asks for the PIN).
    call = phone.call("*98", hold_ms=4000)

    def in_voicemail_main() -> list[dict]:
        auth = (settings.ari_username, settings.ari_password.get_secret_value())
        channels = httpx.get(f"{settings.ari_url}/channels", auth=auth, timeout=5).json()
        return [
            c for c in channels
            if c["dialplan"]["app_name"] == "VoiceMailMain"
            and c["dialplan"]["app_data"] == f"{line['sip_username']}@centrex"
        ]  # fmt: skip

    poll(in_voicemail_main, 15, "the call in VoiceMailMain")
    # A call of the line like any other: counted against its limit while it lasts.
    assert len(api.get(f"/v1/lines/{line['id']}/calls").json()) == 1
    call.expect_success(30)


def metric(api: httpx.Client, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_an_smtp_server_down_is_retried_and_counted(api, make_line, control_service, smtp) -> None:
    callee, _ = make_line("mail later")
    _, caller = make_line("caller")
    voicemail_on(api, callee, email="carol@example.com")
    api.put(f"/v1/lines/{callee['id']}/voicemail/greeting", content=wav_bytes(0.5))
    failed = 'centrex_voicemail_emails_total{outcome="failed"}'
    before = metric(api, failed)
    smtp.stop()
    try:
        # Not registered: the mailbox takes the call at once. After the greeting, Asterisk's
        # instructions and the beep (about 7 s), a few seconds of message.
        leave_message(caller, callee["sip_username"], hold_ms=11000).expect_success(30)
        poll(lambda: metric(api, failed) > before, 30, "a failed email attempt counted")
        assert len(api.get(f"/v1/lines/{callee['id']}/voicemails").json()["items"]) == 1
    finally:
        smtp.start()
    mails = poll(
        lambda: [m for m in smtp.messages() if m["To"] == "carol@example.com"], 30, "the email"
    )
    assert len(mails) == 1
    (attachment,) = list(mails[0].iter_attachments())
    assert wav_seconds(attachment.get_content()) >= 1.0


def test_mailbox_settings_and_greetings_refuse_what_they_cannot_use(
    api, make_line, control_service
) -> None:
    line, _ = make_line("settings")
    url = f"/v1/lines/{line['id']}/voicemail"
    got = api.get(url)
    assert got.status_code == 200
    # The tests' platform default is off (tests/conftest.py); no PIN, no email, no greeting.
    assert got.json() == {
        "enabled": False, "pin_set": False, "email": None, "greeting": "default",
        "greeting_seconds": None,
    }  # fmt: skip
    for body, field in [
        ({"pin": "1234"}, "pin"),  # a run
        ({"pin": "0000"}, "pin"),
        ({"pin": "12a4"}, "pin"),
        ({"pin": 2580}, "pin"),
        ({"pin": "123456789"}, "pin"),
        ({"email": "a@example.com\r\nBcc: x@example.com"}, "email"),
        ({"email": "Alice <a@example.com>"}, "email"),
        ({"enabled": "yes"}, "enabled"),
        ({"enabled": None}, "enabled"),
        ({"greeting": "x"}, "greeting"),
    ]:
        refused = api.patch(url, json=body)
        assert refused.status_code in (400, 422), (body, refused.text)
        assert field in str(refused.json()["detail"][0]["loc"]), (body, refused.text)
    assert api.get(url).json() == got.json()  # nothing changed

    ok = api.patch(url, json={"pin": "7391", "email": "bob@example.com"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["pin_set"] is True and "pin" not in ok.json()
    assert "7391" not in ok.text

    greeting = f"{url}/greeting"
    for data, why in [
        (b"not a wav at all", "WAV"),
        (wav_bytes(1.0, rate=16000), "8000 Hz"),
        (wav_bytes(1.0, channels=2), "mono"),
        (wav_bytes(0.1), "too short"),
        (wav_bytes(61.0), "too long"),
    ]:
        refused = api.put(greeting, content=data, headers={"Content-Type": "audio/wav"})
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"][0]["loc"] == ["body", "greeting"]
        assert why in refused.text, refused.text
    assert api.get(url).json()["greeting"] == "default"
    assert api.put(greeting, content=wav_bytes(1.0)).json()["greeting"] == "uploaded"
    assert api.delete(greeting).json()["greeting"] == "default"

    messages = f"/v1/lines/{line['id']}/voicemails"
    assert api.get(f"{messages}/..%2F..%2Fetc").status_code in (400, 404)
    assert api.get(f"{messages}/no-such-message").status_code == 404
    assert api.delete(f"{messages}/no-such-message").status_code == 404
