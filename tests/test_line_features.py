"""Issue 15: a line's features through the API and through feature codes dialled by the line
(real Asterisk, sipp phones and carrier, PostgreSQL): do-not-disturb, the unconditional forward
set and cancelled with *21*…# / #21#, 3651 caller-ID privacy, pickup of a ringing line."""

from __future__ import annotations

import uuid

import httpx
import pytest
from feature_phones import calls_of, header, make_company, set_features
from sip_agent import received_invites

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def block(api: httpx.Client) -> None:
    response = api.post("/v1/number-blocks", json={"first": "0236200000", "last": "0236200199"})
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def company(api, settings, block):
    return lambda name: make_company(api, settings, name)


def test_features_through_the_api_checked_named_scoped_and_audited(api, company, settings):
    acme, other = company("Acme features"), company("Other features")
    alice = acme(register=False)
    acme(register=False, extension="2468")  # the busy forward's target
    stranger = other(register=False)
    url = f"/v1/lines/{alice.id}/features"
    assert api.get(url).json() == {
        "line_id": alice.id, "forward_unconditional": None, "forward_busy": None,
        "forward_no_answer": None, "forward_no_answer_s": 20, "forward_unregistered": None,
        "dnd": False, "privacy": False,
    }  # fmt: skip
    changed = set_features(api, alice, forward_busy="2468", forward_no_answer="01 45 67 89 01",
                           forward_no_answer_s=15, dnd=True, privacy=True)  # fmt: skip
    assert changed["forward_busy"] == "2468" and changed["forward_no_answer"] == "+33145678901"
    assert api.get(url).json() == changed

    def refused(field: str, value: object, status: int = 422) -> None:
        before = api.get(url).json()
        response = api.patch(url, json={field: value})
        assert response.status_code == status, (field, value, response.text)
        assert response.json()["detail"][0]["loc"][-1] == field, response.text
        assert api.get(url).json() == before  # nothing changed

    api.delete("/v1/destinations/44")
    for value in ("112", "0899123456", "+442071234567", "9999", "abc", "'; DROP TABLE x", "x" * 40,
                  alice.national, str(alice.line["extension"])):  # fmt: skip
        refused("forward_unconditional", value)
    refused("forward_no_answer_s", 3)
    refused("dnd", None)
    refused("colour", "red")
    # Another customer's extension is no extension here; its number is an outside number of
    # the platform's own, which stays on-net and is allowed.
    refused("forward_busy", str(stranger.line["extension"]))
    assert (
        set_features(api, alice, forward_busy=stranger.national)["forward_busy"] == stranger.number
    )
    assert set_features(api, alice, forward_busy=None)["forward_busy"] is None

    body = {"name": f"c {uuid.uuid4().hex[:6]}", "scope": "customer",
            "customer_id": acme.customer_id}  # fmt: skip
    token = api.post("/v1/tokens", json=body).json()["token"]
    base = f"http://{settings.api_host}:{settings.api_port}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as customer:
        assert customer.patch(url, json={"dnd": False}).status_code == 200
        assert customer.get(f"/v1/lines/{stranger.id}/features").status_code == 404
        assert customer.patch(f"/v1/lines/{stranger.id}/features",
                              json={"dnd": True}).status_code == 404  # fmt: skip
    rows = api.get("/v1/audit", params={"object_type": "line_features", "object_id": alice.id})
    operations = [r["operation"] for r in rows.json()["items"]]
    assert operations.count("PATCH /v1/lines/{line_id}/features") == 4, operations


def test_dnd_by_feature_code(api, company, control_service, wait_until):
    acme = company("DND")
    alice, bob = acme(), acme()
    bob.until_hung_up("*78").expect_success()
    assert api.get(f"/v1/lines/{bob.id}/features").json()["dnd"] is True
    alice.sip.call_refused(bob.national, 486).expect_success()

    def cdrs() -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": alice.id}).json()["items"]

    wait_until(lambda: len(cdrs()) == 1, 20, "the refused call's CDR")
    assert cdrs()[0]["disposition"] == "busy", cdrs()  # busy, not a policy refusal
    # Emergency calls out are never affected by the line's own do-not-disturb.
    bob.until_hung_up("*79").expect_success()
    assert api.get(f"/v1/lines/{bob.id}/features").json()["dnd"] is False
    device = bob.answers()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    device.expect_success()


def test_unconditional_forward_by_feature_code(api, company, control_service):
    acme = company("Codes")
    alice, bob, carol = acme(), acme(), acme()
    bob.until_hung_up(f"*21*{carol.line['extension']}%23").expect_success()
    assert (
        api.get(f"/v1/lines/{bob.id}/features").json()["forward_unconditional"]
        == (carol.line["extension"])
    )
    device = carol.answers()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    device.expect_success()
    (invite,) = received_invites(device)
    assert header(invite, "Diversion") and bob.number in header(invite, "Diversion")

    # Refused, and nothing changed: a premium number, a malformed code.
    bob.sip.call_refused("*21*0899123456%23", 403).expect_success()
    bob.sip.call_refused("*21*%23", 484).expect_success()
    bob.sip.call_refused("*2", 484).expect_success()
    assert (
        api.get(f"/v1/lines/{bob.id}/features").json()["forward_unconditional"]
        == (carol.line["extension"])
    )
    bob.until_hung_up("*21*0145678901%23").expect_success()  # outside, allowed: kept in E.164
    assert api.get(f"/v1/lines/{bob.id}/features").json()["forward_unconditional"] == (
        "+33145678901"
    )
    bob.until_hung_up("%2321%23").expect_success()
    assert api.get(f"/v1/lines/{bob.id}/features").json()["forward_unconditional"] is None


def test_3651_hides_the_number_from_the_callee_not_from_the_carrier(
    api, company, carrier, control_service
):
    acme = company("Privacy")
    alice, bob = acme(), acme()
    device = bob.answers()
    alice.sip.call(f"3651{bob.national}", hold_ms=200).expect_success()
    device.expect_success()
    (invite,) = received_invites(device)
    assert alice.number not in invite and alice.national not in invite
    assert "anonymous" in (header(invite, "From") or "").lower()

    network = carrier.answer()
    alice.sip.call("36510145678901", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:+33145678901@" in invite
    assert "anonymous" in (header(invite, "From") or "").lower()
    assert f"<sip:{alice.number}@" in (header(invite, "P-Asserted-Identity") or "")
    assert header(invite, "Privacy") == "id"

    # Per line: every call hidden, without the prefix; emergency calls never are.
    set_features(api, alice, privacy=True)
    device = bob.answers()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    device.expect_success()
    assert alice.number not in received_invites(device)[0]
    network = carrier.answer()
    alice.sip.call("112", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert f"From: <sip:{alice.number}@" in invite and header(invite, "Privacy") is None


def test_pickup_of_a_ringing_line_of_the_same_customer(api, company, control_service, wait_until):
    acme, other = company("Pickup"), company("Pickup other")
    alice, bob, carol = acme(), acme(), acme()
    outsider = other()
    outsider.sip.call_refused("*8", 404).expect_success()  # nothing of its customer rings

    ringing = bob.sip.ring_unanswered(bob.port)
    call = alice.until_hung_up(bob.national)
    wait_until(lambda: calls_of(api, bob) == 1, 10, "bob's phone ringing")
    outsider.sip.call_refused("*8", 404).expect_success()  # another customer's: not seen
    pickup = carol.sip.call("*8", hold_ms=3000)  # picked up, talked, hung up
    # While they talk, the call counts on carol, who picked it up, no longer on bob.
    wait_until(lambda: calls_of(api, carol) == 1 and calls_of(api, bob) == 0, 10, "picked up")
    assert calls_of(api, alice) == 1
    pickup.expect_success()
    call.expect_success()  # alice's call was answered (by carol), then ended by her
    ringing.expect_success()  # bob's phone stopped ringing
    wait_until(lambda: calls_of(api, carol) == calls_of(api, alice) == 0, 10, "released")
