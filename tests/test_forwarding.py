"""Issue 15: forwarding on a real Asterisk, sipp phones and carrier, PostgreSQL.

An outside forward is a call of the forwarding line: it reaches the carrier with the caller's
number and a Diversion header naming the line, counts against the line's limit (a third call to
a line with two in progress and a busy forward outside is refused: the forward would be its
third call), passes the destination list (a suspended destination refuses it), and is cut like
any call. Forwards on busy (the phone's 486), no answer and unregistered go where they are set;
loops end with 482; call waiting stays within the limit."""

from __future__ import annotations

import httpx
import pytest
from feature_phones import calls_of, header, make_company, set_features
from helpers import sql
from sip_agent import received_invites

pytestmark = pytest.mark.integration

ACTOR = {"actor": "noc-test", "reason": "test"}


@pytest.fixture(scope="module")
def block(api: httpx.Client) -> None:
    response = api.post("/v1/number-blocks", json={"first": "0236100000", "last": "0236100199"})
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def company(api, settings, block):
    return lambda name: make_company(api, settings, name)


def test_an_outside_forward_reaches_the_carrier_as_a_call_of_the_forwarding_line(
    api, company, carrier, control_service, wait_until, database_url
):
    acme = company("Forward out")
    alice, bob = acme(), acme(register=False)
    set_features(api, bob, forward_unconditional="01 45 67 89 01")
    network = carrier.answer(timeout_s=20)
    call = alice.sip.call(bob.national, hold_ms=3000)
    # While it is up it counts on both lines: alice's call, and bob's forward.
    wait_until(lambda: calls_of(api, bob) == 1 and calls_of(api, alice) == 1, 10, "counted")
    call.expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:+33145678901@" in invite
    assert f"<sip:{alice.number}@" in (header(invite, "P-Asserted-Identity") or "")
    assert f"<sip:{alice.number}@" in (header(invite, "From") or "")
    diversion = header(invite, "Diversion") or ""
    assert f"<sip:{bob.number}@" in diversion and "reason=unconditional" in diversion, invite
    assert bob.line["sip_username"] not in invite and alice.line["sip_username"] not in invite
    wait_until(lambda: calls_of(api, bob) == calls_of(api, alice) == 0, 10, "released")
    # Bob's distinct numbers this period (art. 16) count the forward's destination.
    rows = sql(database_url, "SELECT number FROM line_period_numbers WHERE line_id = $1::uuid",
               bob.id)  # fmt: skip
    assert [r["number"] for r in rows] == ["+33145678901"]

    # Two records: alice's call to bob, and bob's forward out, billed to bob, linked to it.
    def cdrs() -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": bob.id}).json()["items"]

    wait_until(lambda: len(cdrs()) == 2, 20, "the call's and the forward's CDRs")
    (call,) = [c for c in cdrs() if c["leg_of"] is None]
    (leg,) = [c for c in cdrs() if c["leg_of"] is not None]
    assert (call["caller"], call["callee"], call["caller_line_id"], call["callee_line_id"]) == (
        alice.number, bob.number, alice.id, bob.id)  # fmt: skip
    assert leg["leg_of"] == call["id"] and leg["caller_line_id"] == bob.id
    assert (leg["caller"], leg["callee"], leg["direction"]) == (
        bob.number, "+33145678901", "outbound")  # fmt: skip
    assert leg["destination"] == "33" and leg["disposition"] == call["disposition"] == "answered"
    assert leg["billed_s"] == call["billed_s"] and leg["customer_id"] == call["customer_id"]


def test_an_outside_forward_is_cut_at_the_forwarding_line_s_maximum(
    api, company, carrier, control_service, database_url, wait_until
):
    acme = company("Forward cut")
    alice, bob = acme(), acme(register=False, max_call_duration_s=3)
    set_features(api, bob, forward_unconditional="0145678901")
    network = carrier.answer(timeout_s=20)  # answers, then waits for the platform's BYE
    alice.until_hung_up(bob.national).expect_success()  # cut: the BYE comes from the platform
    network.expect_success()
    cut = sql(database_url, "SELECT reason, callee_line_id::text AS line FROM call_cutoffs"
              " WHERE caller_line_id = $1::uuid", alice.id)  # fmt: skip
    assert [(r["reason"], r["line"]) for r in cut] == [("max_duration", bob.id)]
    wait_until(lambda: calls_of(api, bob) == calls_of(api, alice) == 0, 10, "released")


def test_a_call_from_outside_forwarded_outside_keeps_the_caller_s_number(
    api, company, carrier, control_service
):
    acme = company("In and out")
    bob = acme(register=False)
    set_features(api, bob, forward_unconditional="0145678901")
    network = carrier.answer()
    carrier.call(bob.number, caller="+33611223344").expect_success()
    network.expect_success()
    invite = next(i for i in received_invites(network) if "INVITE sip:+33145678901@" in i)
    assert "<sip:+33611223344@" in (header(invite, "From") or ""), invite
    assert f"<sip:{bob.number}@" in (header(invite, "Diversion") or ""), invite
    # A caller ID that is no E.164 number is not sent on: the forwarding line's number is.
    network = carrier.answer()
    carrier.call(bob.number, caller="anonymous").expect_success()
    network.expect_success()
    invite = next(i for i in received_invites(network) if "INVITE sip:+33145678901@" in i)
    assert f"<sip:{bob.number}@" in (header(invite, "From") or ""), invite


def test_a_third_call_to_a_line_with_two_in_progress(api, company, carrier, control_service,
                                                     wait_until):  # fmt: skip
    acme = company("Third call")
    alice, bob, carol, dave = acme(), acme(), acme(), acme()
    set_features(api, bob, forward_busy="0145678901")
    device = bob.answers(calls=2, timeout_s=30)
    first = alice.until_hung_up(bob.national)
    second = carol.until_hung_up(bob.national)
    wait_until(lambda: calls_of(api, bob) == 2, 10, "bob in two calls")
    # Bob is at his limit; his busy forward would be his third call: refused, busy.
    network = carrier.answer(timeout_s=5)
    dave.sip.call_refused(bob.national, 486).expect_success()
    network.wait(10)
    assert received_invites(network) == []
    # Forwarded to a line of the platform instead, the third call rings there.
    eve = acme()
    set_features(api, bob, forward_busy=eve.line["extension"])
    phone = eve.answers()
    dave.sip.call(bob.national, hold_ms=200).expect_success()
    phone.expect_success()
    assert calls_of(api, bob) == 2

    # Its CDRs: the call (answered by eve, not the refusal bob's limit first gave it), and the
    # forward's own, from bob to eve.
    def eve_cdrs() -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": eve.id}).json()["items"]

    wait_until(lambda: len(eve_cdrs()) == 2, 20, "the call's and the forward's CDRs")
    (call,) = [c for c in eve_cdrs() if c["leg_of"] is None]
    (leg,) = [c for c in eve_cdrs() if c["leg_of"] == call["id"]]
    assert (call["caller_line_id"], call["callee_line_id"], call["disposition"]) == (
        dave.id, eve.id, "answered")  # fmt: skip
    assert (leg["caller_line_id"], leg["callee_line_id"], leg["direction"]) == (
        bob.id, eve.id, "on-net")  # fmt: skip
    for call in api.get(f"/v1/lines/{bob.id}/calls").json():
        assert api.delete(f"/v1/calls/{call['id']}").status_code == 204
    first.expect_success()
    second.expect_success()
    device.expect_success()


def test_a_forward_to_a_suspended_or_unlisted_destination_is_refused(
    api, company, carrier, control_service
):
    acme = company("Forward policy")
    alice, bob = acme(), acme(register=False)
    uk = "+442071234567"
    api.delete("/v1/destinations/44")
    refused = api.patch(f"/v1/lines/{bob.id}/features", json={"forward_unconditional": uk})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"][-1] == "forward_unconditional"
    assert "not on the operator's list" in refused.text
    assert api.post("/v1/destinations", json={"code": "44"}).status_code == 201
    set_features(api, bob, forward_unconditional=uk)
    network = carrier.answer()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    network.expect_success()
    # Suspended after the forward was set: the forwarded call is refused when used.
    assert api.post("/v1/destinations/44/suspend", json=ACTOR).status_code == 200
    try:
        network = carrier.answer(timeout_s=5)
        alice.sip.call_refused(bob.national, 403).expect_success()
        network.wait(10)
        assert received_invites(network) == []
        again = api.patch(f"/v1/lines/{bob.id}/features", json={"forward_busy": uk})
        assert again.status_code == 422 and "suspended" in again.text
    finally:
        api.post("/v1/destinations/44/resume", json=ACTOR)


def test_forwards_on_busy_no_answer_and_unregistered(api, company, control_service):
    acme = company("Forward when")
    alice, bob, carol = acme(), acme(), acme()
    target = carol.line["extension"]
    set_features(api, bob, forward_busy=target, forward_no_answer=target, forward_no_answer_s=5,
                 forward_unregistered=target)  # fmt: skip
    # The phone answers 486.
    busy = bob.sip.busy(bob.port)
    phone = carol.answers()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    busy.expect_success()
    phone.expect_success()
    assert bob.number in (header(received_invites(phone)[0], "Diversion") or "")
    # Nobody answers within 5 s.
    ringing = bob.sip.ring_unanswered(bob.port)
    phone = carol.answers()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    ringing.expect_success()
    phone.expect_success()
    assert "reason=no-answer" in (header(received_invites(phone)[0], "Diversion") or "")
    # Not registered.
    dan = acme(register=False)
    set_features(api, dan, forward_unregistered=target)
    phone = carol.answers()
    alice.sip.call(dan.national, hold_ms=200).expect_success()
    phone.expect_success()


def test_a_forward_to_a_ring_group_extension_rings_its_members(api, company, control_service):
    acme = company("Forward group")
    alice, bob, member = acme(), acme(register=False), acme()
    body = {"customer_id": acme.customer_id, "name": "desk", "strategy": "ring_all",
            "members": [member.id], "extension": "555"}  # fmt: skip
    assert api.post("/v1/ring-groups", json=body).status_code == 201
    set_features(api, bob, forward_unconditional="555")
    phone = member.answers()
    alice.sip.call(bob.national, hold_ms=200).expect_success()
    phone.expect_success()
    assert bob.number in (header(received_invites(phone)[0], "Diversion") or "")


def test_a_forwarding_loop_is_detected(api, company, control_service):
    acme = company("Loop")
    alice, bob, carol = acme(), acme(register=False), acme(register=False)
    set_features(api, bob, forward_unconditional=carol.line["extension"])
    set_features(api, carol, forward_unconditional=bob.line["extension"])
    alice.sip.call_refused(bob.national, 482).expect_success()
    assert calls_of(api, alice) == 0


def test_call_waiting_within_the_limit(api, company, control_service, wait_until):
    acme = company("Waiting")
    alice, bob, carol, dave = acme(), acme(), acme(), acme()
    device = bob.answers(calls=2, timeout_s=30)
    first = alice.until_hung_up(bob.national)
    wait_until(lambda: calls_of(api, bob) == 1, 10, "bob in a call")
    second = carol.until_hung_up(bob.national)  # presented to bob, in his call
    wait_until(lambda: calls_of(api, bob) == 2, 10, "the second call presented")
    dave.sip.call_refused(bob.national, 486).expect_success()
    for call in api.get(f"/v1/lines/{bob.id}/calls").json():
        api.delete(f"/v1/calls/{call['id']}")
    first.expect_success()
    second.expect_success()
    device.expect_success()


def test_emergency_calls_out_ignore_the_line_s_features_and_the_call_back_rings_the_line(
    api, company, carrier, control_service
):
    acme = company("Emergency")
    alice, bob = acme(), acme()
    for line in (alice, bob):
        set_features(api, line, dnd=True, privacy=True, forward_unconditional="0145678901")
    network = carrier.answer()
    alice.sip.call("112", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:112@" in invite and f"From: <sip:{alice.number}@" in invite
    # The emergency service calls back: alice's phone rings, whatever her do-not-disturb and
    # forward say. Bob, who called no emergency number, stays forwarded.
    phone = alice.answers()
    carrier.call(alice.number, caller="+33112345678").expect_success()
    phone.expect_success()
    network = carrier.answer()
    carrier.call(bob.number, caller="+33112345678").expect_success()
    network.expect_success()
    assert any("INVITE sip:+33145678901@" in i for i in received_invites(network))
