"""Issue 15: voicemail in the customer's personal data (art. 13), on real parts: a message left
by a sipp caller with RTP audio in Asterisk's app_voicemail, the export listing it with its
download link, and the erasure deleting its audio (and the mailbox's email)."""

from __future__ import annotations

import httpx
import pytest
from test_voicemail import leave_message, poll, shows_pin, voicemail_on, wav_bytes

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    response = api.post("/v1/customers", json={"name": "Voicemail GDPR SARL"})
    assert response.status_code == 201, response.text
    return response.json()


def test_messages_are_exported_with_their_link_and_erased_with_the_customer(
    api, make_line, control_service, customer
) -> None:
    callee, _ = make_line("away")
    _, caller = make_line("caller")
    voicemail_on(api, callee, email="someone@example.com", pin="2580")
    greeting = api.put(f"/v1/lines/{callee['id']}/voicemail/greeting", content=wav_bytes(1.0),
                       headers={"Content-Type": "audio/wav"})  # fmt: skip
    assert greeting.status_code == 200, greeting.text
    # Not registered: the mailbox answers at once.
    leave_message(caller, callee["sip_username"], hold_ms=10000).expect_success(60)
    listed = poll(lambda: api.get(f"/v1/lines/{callee['id']}/voicemails").json()["items"], 20,
                  "the message")  # fmt: skip
    (message,) = listed

    url = f"/v1/customers/{customer['id']}/personal-data"

    def exported() -> dict:
        response = api.get(url)
        assert response.status_code == 200, response.text
        return response.json()["voicemail"]

    data = exported()
    (box,) = data["mailboxes"]
    assert (box["line_id"], box["email"], box["pin_set"]) == (callee["id"], "someone@example.com",
                                                              True)  # fmt: skip
    assert not shows_pin(data, "2580"), data
    (item,) = data["messages"]
    assert (item["line_id"], item["id"], item["caller_id"]) == (
        callee["id"], message["id"], message["caller_id"])  # fmt: skip
    audio = api.get(item["download"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    assert len(audio.content) == item["size_bytes"] > 1000

    # Erasure: refused while lines are in service; then the messages' audio and metadata go.
    assert api.post(f"/v1/customers/{customer['id']}/erasure").status_code == 409
    for line in api.get("/v1/lines", params={"customer_id": customer["id"]}).json()["items"]:
        assert api.delete(f"/v1/lines/{line['id']}").status_code in (202, 204)
    # A deleted line's messages are still held (until their retention ends): exported, with
    # no link (the API no longer serves that line).
    assert api.get(f"/v1/lines/{callee['id']}").status_code == 404
    (held,) = exported()["messages"]
    assert held["id"] == message["id"] and held["download"] is None
    erased = api.post(f"/v1/customers/{customer['id']}/erasure")
    assert erased.status_code == 200, erased.text
    assert erased.json()["voicemail_messages"] == 1
    data = exported()
    assert data["messages"] == []
    assert [(b["email"], b["pin_set"], b["greeting_seconds"]) for b in data["mailboxes"]] == [
        (None, False, None)]  # fmt: skip
    trail = api.get("/v1/audit", params={"object_type": "voicemail_box"}).json()["items"]
    assert any(e["change"] == "erased" and e["object_id"] == callee["id"] for e in trail)
