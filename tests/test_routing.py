"""Issue 4 (routing): out through the trunk in E.164 with the line's number, on-net between
platform numbers, in from the trunk to the line that owns the number. sipp plays the lines and,
on 127.0.0.2, the carrier."""

from __future__ import annotations

import httpx
import pytest
from sip_agent import SipEndpoint, free_udp_port, received_invites

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    customer = api.post("/v1/customers", json={"name": "Routing", "residence_country": "FR"})
    api.patch(f"/v1/customers/{customer.json()['id']}", json={"documents_verified": True})
    assert api.post("/v1/number-blocks", json={"first": "0233000000", "last": "0233000099"})
    return customer.json()


@pytest.fixture
def numbered_line(api: httpx.Client, customer, settings):
    def make() -> tuple[dict, SipEndpoint]:
        line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "r"}).json()
        number = api.post(
            "/v1/numbers/allocate",
            json={"customer_id": customer["id"], "kind": "geographic", "zone": "2"},
        ).json()
        response = api.patch(f"/v1/lines/{line['id']}", json={"main_number": number["national"]})
        assert response.status_code == 200, response.text
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        return response.json(), SipEndpoint(line["sip_username"], line["sip_password"], server)

    return make


def test_outbound_leaves_through_the_trunk_in_e164(numbered_line, carrier, control_service):
    line, alice = numbered_line()
    network = carrier.answer()
    alice.call("01 45 67 89 01".replace(" ", ""), hold_ms=300).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:+33145678901@" in invite
    assert f"P-Asserted-Identity: <sip:{line['main_number']}@" in invite
    assert f"From: <sip:{line['main_number']}@" in invite
    assert line["sip_username"] not in invite  # nothing internal leaks to the network


def test_emergency_goes_to_the_trunk(numbered_line, carrier, control_service):
    _, alice = numbered_line()
    network = carrier.answer()
    alice.call("112", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:112@" in invite


def test_on_net_between_platform_numbers_never_touches_the_trunk(
    numbered_line, carrier, control_service
):
    _, alice = numbered_line()
    bob_line, bob = numbered_line()
    network = carrier.answer(timeout_s=5)  # must receive nothing
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port)
    national = "0" + bob_line["main_number"].removeprefix("+33")
    alice.call(national, hold_ms=200).expect_success()
    device.expect_success()
    network.wait(10)
    assert received_invites(network) == []


def test_inbound_reaches_the_line_that_owns_the_number(numbered_line, carrier, control_service):
    bob_line, bob = numbered_line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port)
    carrier.call(bob_line["main_number"]).expect_success()
    device.expect_success()


def test_inbound_to_an_unknown_number_gets_404(carrier, control_service):
    carrier.call_refused("+33233009999", 404).expect_success()  # not in any block


@pytest.mark.parametrize("dialled", ["9" * 100, "+" + "3" * 70, "+", "0"])
def test_nonsense_from_the_carrier_gets_404_and_nothing_breaks(carrier, control_service, dialled):
    errors_before = control_service.log_text().count("internal error")
    carrier.call_refused(dialled, 404).expect_success()
    assert control_service.log_text().count("internal error") == errors_before


@pytest.mark.parametrize(
    "dialled",
    ["9" * 100, "+" + "3" * 70, "abc*#", "*", "#31#0145678901", "+", "00"],
)
def test_nonsense_dialled_by_a_line_gets_484_and_nothing_breaks(
    api, numbered_line, carrier, control_service, dialled, wait_until
):
    """Whatever a device dials (too long for any column, letters and service codes): 484 Address
    Incomplete, never an internal error (503) and never a call out."""
    line, alice = numbered_line()
    errors_before = control_service.log_text().count("internal error")
    alice.call_refused(dialled, 484).expect_success()
    assert control_service.log_text().count("internal error") == errors_before
    # Its CDR is written, with what was dialled as far as the column holds it: a row PostgreSQL
    # refused would stop every CDR after it.
    wait_until(
        lambda: api.get("/v1/cdrs", params={"line_id": line["id"]}).json()["items"], 20, "CDR"
    )
    (cdr,) = api.get("/v1/cdrs", params={"line_id": line["id"]}).json()["items"]
    assert cdr["dialled_number"] == dialled[:64] and cdr["sip_code"] == 484


def test_a_line_without_number_cannot_call_out(api, customer, settings, carrier, control_service):
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "n"}).json()
    server = f"{settings.asterisk_host}:{settings.sip_port}"
    nobody = SipEndpoint(line["sip_username"], line["sip_password"], server)
    nobody.call_refused("0145678901", 403).expect_success()


def test_main_number_must_belong_to_the_customer(api, customer):
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "m"}).json()
    response = api.patch(f"/v1/lines/{line['id']}", json={"main_number": "0233000098"})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["body", "main_number"]
