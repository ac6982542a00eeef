"""Issue 2: provisioned lines register and call each other through a real Asterisk."""

from __future__ import annotations

import httpx
import pytest
from helpers import ari_object
from sip_agent import SipEndpoint, free_udp_port

from centrex.config import Settings
from centrex.sandbox.asterisk import AsteriskSandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    response = api.post("/v1/customers", json={"name": "Acme SARL"})
    assert response.status_code == 201, response.text
    return response.json()


def test_created_line_is_in_asterisk_with_the_contract_settings(make_line, settings: Settings):
    line, _ = make_line()
    assert line["sync_state"] == "synced", line
    assert line["sip_server"] == f"127.0.0.1:{settings.sip_port}"
    assert len(line["sip_password"]) >= 20
    endpoint = ari_object(settings, "endpoint", line["sip_username"])
    aor = ari_object(settings, "aor", line["sip_username"])
    auth = ari_object(settings, "auth", line["sip_username"])
    assert endpoint and aor and auth
    assert endpoint["direct_media"] == "false"
    assert endpoint["context"] == "centrex-lines"
    assert set(endpoint["allow"].strip("()").split("|")) == {"alaw", "ulaw"}
    assert aor["max_contacts"] == "1"
    assert aor["remove_existing"] == "true"
    # The password itself is stored nowhere: Asterisk holds the digest hash only.
    assert line["sip_password"] not in str(auth)


def test_password_is_shown_only_at_creation(api: httpx.Client, make_line):
    line, _ = make_line()
    again = api.get(f"/v1/lines/{line['id']}").json()
    assert "sip_password" not in again
    assert again["sip_username"] == line["sip_username"]


def test_line_calls_line_answered_and_torn_down(make_line, control_service):
    _, alice = make_line("alice")
    _, bob = make_line("bob")
    device_port = free_udp_port()
    bob.register(device_port).expect_success()
    bob_device = bob.answer(device_port)
    alice.call(bob.username, hold_ms=500).expect_success()
    bob_device.expect_success()
    assert f"{alice.username} -> {bob.username} admitted" in control_service.log_text()


def test_wrong_password_is_refused(make_line):
    _, bob = make_line()
    impostor = SipEndpoint(bob.username, bob.password + "x", bob.server)
    impostor.register_refused(free_udp_port()).expect_success()


def test_second_device_replaces_the_first(make_line, asterisk: AsteriskSandbox, control_service):
    _, alice = make_line()
    _, bob = make_line()
    first, second = free_udp_port(), free_udp_port()
    bob.register(first).expect_success()
    bob.register(second).expect_success()
    contacts = asterisk.cli(f"pjsip show aor {bob.username}")
    assert f":{second}" in contacts and f":{first}" not in contacts, contacts
    # And calls go to the device registered last.
    device = bob.answer(second)
    alice.call(bob.username, hold_ms=200).expect_success()
    device.expect_success()


def test_call_to_unknown_line_gets_404(make_line, control_service):
    _, alice = make_line()
    alice.call_refused("nosuchline", 404).expect_success()


def test_call_to_unregistered_line_is_not_answered(make_line, control_service):
    _, alice = make_line()
    _, bob = make_line()
    alice.call_refused(bob.username, 480).expect_success()


def test_deleted_line_leaves_asterisk(api: httpx.Client, make_line, settings: Settings):
    line, _ = make_line()
    assert api.delete(f"/v1/lines/{line['id']}").status_code == 204
    assert ari_object(settings, "endpoint", line["sip_username"]) is None
    assert ari_object(settings, "auth", line["sip_username"]) is None
    assert api.get(f"/v1/lines/{line['id']}").status_code == 404
    assert api.delete(f"/v1/lines/{line['id']}").status_code == 404
