"""Issue 15: forwards to voicemail, on a real Asterisk (app_voicemail reading PostgreSQL),
sipp callers streaming RTP audio, and a real SMTP server process.

A line forwards (unconditionally, on busy, on no answer, when unregistered) to its own mailbox
(``voicemail``) or to the mailbox of another line of its customer (``voicemail:<extension>``):
the caller reaches that mailbox, the message lands there (its email, its API list). A mailbox
that is off is as if there were no forward."""

from __future__ import annotations

import httpx
import pytest
from feature_phones import calls_of, make_company, set_features
from test_voicemail import leave_message, poll, voicemail_on, wav_bytes, wav_seconds

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def block(api: httpx.Client) -> None:
    response = api.post("/v1/number-blocks", json={"first": "0236300000", "last": "0236300099"})
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def company(api, settings, block):
    return lambda name: make_company(api, settings, name)


def messages(api: httpx.Client, phone) -> list[dict]:
    response = api.get(f"/v1/lines/{phone.id}/voicemails")
    assert response.status_code == 200, response.text
    return response.json()["items"]


def short_greeting(api: httpx.Client, phone) -> None:
    """A 1 s greeting: Asterisk's default one spells the mailbox's name, which takes most of
    the caller's time on a loaded machine."""
    response = api.put(f"/v1/lines/{phone.id}/voicemail/greeting", content=wav_bytes(1.0),
                       headers={"Content-Type": "audio/wav"})  # fmt: skip
    assert response.status_code == 200, response.text


def test_an_unconditional_forward_to_a_mailbox_takes_the_message_there(
    api, company, control_service, smtp_server, wait_until
):
    acme = company("Forward to voicemail")
    alice, bob, carol = acme(), acme(), acme(register=False)
    # Bob's phone would answer: with the forward, it is never rung.
    phone = bob.answers(timeout_s=150)
    voicemail_on(api, bob.line, email="bob@example.com")
    voicemail_on(api, carol.line, email="carol@example.com")
    short_greeting(api, bob)
    short_greeting(api, carol)

    # Bob's own mailbox, before his phone rings.
    set_features(api, bob, forward_unconditional="voicemail")
    before = len(smtp_server.messages())
    leave_message(alice.sip, bob.national, hold_ms=14000).expect_success(60)
    mails = poll(lambda: smtp_server.messages()[before:], 30, "bob's voicemail email")
    assert [m["To"] for m in mails] == ["bob@example.com"]
    (attachment,) = list(mails[0].iter_attachments())
    assert wav_seconds(attachment.get_content()) >= 2.0
    (message,) = messages(api, bob)
    assert alice.sip.username in message["caller_id"] or alice.number in message["caller_id"]

    # Carol's mailbox, named by her extension: the message is hers, bob's mailbox unchanged.
    set_features(api, bob, forward_unconditional=f"voicemail:{carol.line['extension']}")
    before = len(smtp_server.messages())
    leave_message(alice.sip, bob.national, hold_ms=14000).expect_success(60)
    mails = poll(lambda: smtp_server.messages()[before:], 30, "carol's voicemail email")
    assert [m["To"] for m in mails] == ["carol@example.com"]
    assert len(messages(api, carol)) == 1 and len(messages(api, bob)) == 1
    wait_until(lambda: calls_of(api, alice) == 0, 10, "released")

    # The forward has its CDR (bob's, to the mailbox, linked to the call).
    def legs() -> list[dict]:
        items = api.get("/v1/cdrs", params={"line_id": carol.id}).json()["items"]
        return [c for c in items if c["leg_of"] is not None]

    wait_until(lambda: len(legs()) == 1, 20, "the forward's CDR")
    (leg,) = legs()
    assert (leg["caller_line_id"], leg["callee_line_id"], leg["callee"]) == (
        bob.id, carol.id, "voicemail")  # fmt: skip
    assert leg["disposition"] == "voicemail"

    # Carol's mailbox off: as if bob had no forward, his line rings: his phone answers (the
    # first call it gets: the two before never reached it).
    off = api.patch(f"/v1/lines/{carol.id}/voicemail", json={"enabled": False})
    assert off.status_code == 200, off.text
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    phone.expect_success()


def test_forwards_after_ringing_reach_another_line_s_mailbox(
    api, company, control_service, wait_until
):
    acme = company("Forward to a colleague's voicemail")
    alice, bob, carol = acme(), acme(), acme(register=False)
    voicemail_on(api, carol.line)
    short_greeting(api, carol)
    box = f"voicemail:{carol.line['extension']}"
    # Bob's own mailbox is off (the tests' default): without the forward, 480 / 486.
    set_features(api, bob, forward_no_answer=box, forward_no_answer_s=5)
    device = bob.sip.ring_unanswered(bob.port)
    leave_message(alice.sip, bob.national, hold_ms=12000).expect_success(60)
    device.expect_success(30)
    poll(lambda: len(messages(api, carol)) == 1, 20, "the no-answer message in carol's mailbox")

    set_features(api, bob, forward_no_answer=None, forward_busy=box)
    device = bob.sip.busy(bob.port)
    leave_message(alice.sip, bob.national, hold_ms=12000).expect_success(60)
    device.wait(10)
    poll(lambda: len(messages(api, carol)) == 2, 20, "the busy message in carol's mailbox")

    dave = acme(register=False)
    set_features(api, dave, forward_unregistered=box)
    leave_message(alice.sip, dave.national, hold_ms=12000).expect_success(60)
    poll(lambda: len(messages(api, carol)) == 3, 20, "the unregistered message")
    assert messages(api, bob) == [] and messages(api, dave) == []
    wait_until(lambda: calls_of(api, alice) == 0, 10, "released")


def test_a_mailbox_target_is_checked_when_set(api, company):
    acme = company("Mailbox targets")
    bob = acme(register=False)
    own = f"voicemail:{bob.line['extension']}"
    assert set_features(api, bob, forward_busy=own)["forward_busy"] == own
    for bad in ("voicemail:9999", "voicemail:x1", "voicemail:"):
        response = api.patch(f"/v1/lines/{bob.id}/features", json={"forward_busy": bad})
        assert response.status_code == 422, (bad, response.text)
        assert "forward_busy" in response.text
    assert api.get(f"/v1/lines/{bob.id}/features").json()["forward_busy"] == own
