"""Issue 15: pickup (*8) of a call ringing a ring group, on a real Asterisk with sipp phones.

The documented rule (docs/features.md): *8 takes the oldest unanswered call ringing any line of
the picker's customer, a ring group's members included; never another customer's. The picker's
leg replaces every ringing leg of the call (a picker that is itself a ringing member is counted
once)."""

from __future__ import annotations

import httpx
import pytest
from feature_phones import calls_of, make_company

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def block(api: httpx.Client) -> None:
    response = api.post("/v1/number-blocks", json={"first": "0236400000", "last": "0236400099"})
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def company(api, settings, block):
    return lambda name: make_company(api, settings, name)


def test_pickup_of_a_call_ringing_a_ring_group(api, company, control_service, wait_until):
    acme, other = company("Group pickup"), company("Group pickup other")
    alice, m1, m2, carol = acme(), acme(), acme(), acme()
    outsider = other()
    body = {"customer_id": acme.customer_id, "name": "sales", "strategy": "ring_all",
            "members": [m1.id, m2.id, carol.id], "extension": "600"}  # fmt: skip
    group = api.post("/v1/ring-groups", json=body)
    assert group.status_code == 201, group.text

    ringing = [p.sip.ring_unanswered(p.port) for p in (m1, m2, carol)]
    call = alice.until_hung_up("600")
    wait_until(
        lambda: calls_of(api, m1) == calls_of(api, m2) == calls_of(api, carol) == 1,
        10, "the group's members ringing",
    )  # fmt: skip
    # Another customer's line sees nothing to pick up.
    outsider.sip.call_refused("*8", 404).expect_success()
    # Carol, herself a member of the group, picks it up from another phone of her line.
    pickup = carol.sip.call("*8", hold_ms=3000)
    wait_until(
        lambda: calls_of(api, carol) == 1 and calls_of(api, m1) == calls_of(api, m2) == 0,
        10, "picked up: counted once on carol, no longer on the members",
    )  # fmt: skip
    assert calls_of(api, alice) == 1
    pickup.expect_success()
    call.expect_success()  # answered (by carol), then ended by her
    for phone in ringing:
        phone.expect_success()  # every member's phone stopped ringing
    wait_until(lambda: calls_of(api, carol) == calls_of(api, alice) == 0, 10, "released")


def test_pickup_by_a_line_outside_the_group(api, company, control_service, wait_until):
    acme = company("Group pickup by a colleague")
    alice, member, dave = acme(), acme(), acme()
    body = {"customer_id": acme.customer_id, "name": "support", "strategy": "hunt",
            "members": [member.id], "extension": "610"}  # fmt: skip
    assert api.post("/v1/ring-groups", json=body).status_code == 201
    ringing = member.sip.ring_unanswered(member.port)
    call = alice.until_hung_up("610")
    wait_until(lambda: calls_of(api, member) == 1, 10, "the hunt's member ringing")
    pickup = dave.sip.call("*8", hold_ms=2000)
    wait_until(lambda: calls_of(api, dave) == 1 and calls_of(api, member) == 0, 10, "picked up")
    pickup.expect_success()
    call.expect_success()
    ringing.expect_success()
    wait_until(lambda: calls_of(api, dave) == calls_of(api, alice) == 0, 10, "released")
