"""Issue 4 (aliases and ring groups): a number with no line of its own rings a line or a group.

sipp plays the carrier (on 127.0.0.2, through the trunk) and every member's registered device:
one that answers, and ones that ring until they are cancelled."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
import pytest
from sip_agent import SipEndpoint, SippRun, free_udp_port, received

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    customer = api.post("/v1/customers", json={"name": "Groups", "residence_country": "FR"})
    api.patch(f"/v1/customers/{customer.json()['id']}", json={"documents_verified": True})
    response = api.post("/v1/number-blocks", json={"first": "0334000000", "last": "0334000099"})
    assert response.status_code == 201, response.text
    return customer.json()


@dataclass
class Member:
    line: dict
    sip: SipEndpoint
    port: int  # where its device registered

    def answers(self, ring_ms: int = 300, timeout_s: int = 30) -> SippRun:
        return self.sip.answer(self.port, ring_ms=ring_ms, timeout_s=timeout_s)

    def rings(self, timeout_s: int = 30) -> SippRun:
        return self.sip.ring_unanswered(self.port, timeout_s=timeout_s)


@pytest.fixture
def member(api: httpx.Client, customer, settings):
    def make(**fields: object) -> Member:
        body = {"customer_id": customer["id"], "label": "member", **fields}
        line = api.post("/v1/lines", json=body).json()
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        sip = SipEndpoint(line["sip_username"], line["sip_password"], server)
        port = free_udp_port()
        sip.register(port).expect_success()
        return Member(line, sip, port)

    return make


@pytest.fixture
def alias(api: httpx.Client, customer):
    def make(**destination: str) -> str:
        number = api.post(
            "/v1/numbers/allocate",
            json={"customer_id": customer["id"], "kind": "geographic", "zone": "3"},
        ).json()
        if destination:
            response = api.put(f"/v1/numbers/{number['e164']}/destination", json=destination)
            assert response.status_code == 200, response.text
        return number["e164"]

    return make


@pytest.fixture
def group(api: httpx.Client, customer):
    def make(strategy: str, members: list[Member], ring_timeout_s: int = 20) -> dict:
        body = {
            "customer_id": customer["id"], "name": f"{strategy} group", "strategy": strategy,
            "ring_timeout_s": ring_timeout_s, "members": [m.line["id"] for m in members],
        }  # fmt: skip
        response = api.post("/v1/ring-groups", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    return make


def invite_at(run: SippRun) -> float:
    (invite,) = [m for m in received(run) if m.first_line.startswith("INVITE ")]
    return invite.at


def cancel_of(run: SippRun) -> str:
    (cancel,) = [m for m in received(run) if m.first_line.startswith("CANCEL ")]
    return cancel.text


def no_calls_left(api: httpx.Client, members: list[Member]) -> bool:
    return all(api.get(f"/v1/lines/{m.line['id']}/calls").json() == [] for m in members)


def test_inbound_alias_rings_all_members_and_the_first_answer_wins(
    api, member, alias, group, carrier, control_service, wait_until
):
    a, b, c = member(), member(), member()
    number = alias(ring_group_id=group("ring_all", [a, b, c])["id"])
    answering = a.answers(ring_ms=1500)
    ringing = [b.rings(), c.rings()]
    carrier.call(number, hold_ms=500).expect_success()
    answering.expect_success()
    for run in ringing:
        run.expect_success()  # rung, then cancelled
    # All three at once, before anyone answered.
    invites = [invite_at(r) for r in (answering, *ringing)]
    assert max(invites) - min(invites) < 0.5, invites
    for run in ringing:
        assert "Call completed elsewhere" in cancel_of(run)
    wait_until(lambda: no_calls_left(api, [a, b, c]), 10, "member legs released")


def test_hunt_rings_members_one_after_another_in_order(
    api, member, alias, group, carrier, control_service, wait_until
):
    first, second, never = member(), member(), member()
    number = alias(ring_group_id=group("hunt", [first, second, never], ring_timeout_s=5)["id"])
    unanswered = first.rings()
    answering = second.answers()
    untouched = never.answers(timeout_s=15)
    carrier.call(number, hold_ms=300).expect_success(timeout=40)
    unanswered.expect_success()
    answering.expect_success()
    assert "Call completed elsewhere" not in cancel_of(unanswered)  # its ring timeout ran out
    waited = invite_at(answering) - invite_at(unanswered)
    assert 4.5 <= waited <= 7, waited
    assert untouched.wait(30) != 0
    assert [m for m in received(untouched) if m.first_line.startswith("INVITE")] == []
    wait_until(lambda: no_calls_left(api, [first, second, never]), 10, "member legs released")


def test_a_member_at_its_limit_is_skipped_not_rung(
    api, member, alias, group, carrier, control_service, wait_until
):
    busy, free = member(max_calls=1), member()
    other = member()
    number = alias(ring_group_id=group("ring_all", [busy, free])["id"])
    # busy's one call: to another line, held while the group is called.
    other_device = other.answers(ring_ms=100)
    held = busy.sip.call(other.line["sip_username"], hold_ms=6000)
    wait_until(
        lambda: len(api.get(f"/v1/lines/{busy.line['id']}/calls").json()) == 1, 10, "busy's call"
    )
    busy_device = busy.answers(timeout_s=8)  # must receive nothing
    answering = free.answers()
    carrier.call(number, hold_ms=300).expect_success()
    answering.expect_success()
    held.expect_success()
    other_device.expect_success()
    assert busy_device.wait(20) != 0
    assert [m for m in received(busy_device) if m.first_line.startswith("INVITE")] == []
    wait_until(lambda: no_calls_left(api, [busy, free, other]), 10, "calls released")


def test_an_alias_attached_to_a_line_reaches_it_in_and_on_net(
    api, member, alias, carrier, control_service
):
    owner, colleague = member(), member()
    number = alias(line_id=owner.line["id"])
    device = owner.answers()
    carrier.call(number).expect_success()
    device.expect_success()
    device = owner.answers()
    colleague.sip.call("0" + number.removeprefix("+33"), hold_ms=300).expect_success()
    device.expect_success()


def test_an_unattached_alias_is_not_in_service(api, alias, carrier, control_service):
    number = alias()
    started = time.monotonic()
    run = carrier.call_refused(number, 404)
    run.expect_success()
    progress = [m for m in received(run) if m.first_line.startswith("SIP/2.0 183")]
    assert progress, "no announcement (183 with early media) before the 404"
    assert "m=audio" in progress[0].text
    assert time.monotonic() - started > 2  # the announcement played before the 404
    # Detached again after being attached: not in service again.
    assert api.delete(f"/v1/numbers/{number}/destination").status_code == 200


def test_ring_group_and_destination_input_errors(api: httpx.Client, customer, member, alias):
    a = member()
    other = api.post("/v1/customers", json={"name": "Other"}).json()
    foreign = api.post("/v1/lines", json={"customer_id": other["id"], "label": "x"}).json()
    base = {"customer_id": customer["id"], "name": "g", "strategy": "hunt"}

    def error(response: httpx.Response, status: int, field: str) -> str:
        assert response.status_code == status, response.text
        (detail,) = [d for d in response.json()["detail"] if field in d["loc"]]
        return detail["msg"]

    post = lambda body: api.post("/v1/ring-groups", json=body)  # noqa: E731
    error(post({**base, "strategy": "random", "members": []}), 422, "strategy")
    error(post({**base, "ring_timeout_s": 1, "members": []}), 422, "ring_timeout_s")
    unknown = "00000000-0000-0000-0000-000000000000"
    assert "no line" in error(post({**base, "members": [unknown]}), 422, "members")
    assert "twice" in error(post({**base, "members": [a.line["id"]] * 2}), 400, "members")
    assert "another customer" in error(post({**base, "members": [foreign["id"]]}), 400, "members")
    group = post({**base, "members": [a.line["id"]]}).json()

    number = alias()
    put = lambda body: api.put(f"/v1/numbers/{number}/destination", json=body)  # noqa: E731
    assert "exactly one" in put({}).text and put({}).status_code == 422
    both = {"line_id": a.line["id"], "ring_group_id": group["id"]}
    assert put(both).status_code == 422
    assert "another customer" in error(put({"line_id": foreign["id"]}), 400, "line_id")
    error(put({"ring_group_id": unknown}), 422, "ring_group_id")
    error(api.put("/v1/numbers/0334009999/destination", json={"line_id": a.line["id"]}), 404,
          "number")  # fmt: skip
    error(api.put("/v1/numbers/12/destination", json={"line_id": a.line["id"]}), 400, "number")
    # A line's main number is not an alias.
    assert api.patch(f"/v1/lines/{a.line['id']}", json={"main_number": number}).status_code == 200
    assert "main number" in error(put({"ring_group_id": group["id"]}), 409, "number")
    # A group with numbers routed to it is not deleted from under them.
    routed = alias(ring_group_id=group["id"])
    assert "detach them first" in error(api.delete(f"/v1/ring-groups/{group['id']}"), 409,
                                        "ring_group_id")  # fmt: skip
    assert api.delete(f"/v1/numbers/{routed}/destination").json()["ring_group_id"] is None
    assert api.delete(f"/v1/ring-groups/{group['id']}").status_code == 204
    error(api.get(f"/v1/ring-groups/{group['id']}"), 404, "ring_group_id")


def test_ring_group_members_can_be_reordered_and_leave_when_deleted(api, customer, member):
    a, b = member(), member()
    body = {"customer_id": customer["id"], "name": "g", "strategy": "hunt",
            "members": [a.line["id"], b.line["id"]]}  # fmt: skip
    group = api.post("/v1/ring-groups", json=body).json()
    patched = api.patch(
        f"/v1/ring-groups/{group['id']}",
        json={"members": [b.line["id"], a.line["id"]], "strategy": "ring_all"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["members"] == [b.line["id"], a.line["id"]]
    assert patched.json()["strategy"] == "ring_all"
    nulled = api.patch(f"/v1/ring-groups/{group['id']}", json={"members": None})
    assert nulled.status_code == 422 and nulled.json()["detail"][0]["loc"] == ["body", "members"]
    assert api.delete(f"/v1/lines/{b.line['id']}").status_code == 204
    assert api.get(f"/v1/ring-groups/{group['id']}").json()["members"] == [a.line["id"]]
