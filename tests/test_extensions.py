"""Issue 15: short extensions inside a customer, on a real Asterisk, sipp phones and
PostgreSQL. Another customer's extensions do not exist for a line."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from sip_agent import SipEndpoint, SippRun, free_udp_port, received_invites

pytestmark = pytest.mark.integration


@dataclass
class Phone:
    line: dict
    sip: SipEndpoint
    port: int

    def answers(self, timeout_s: int = 30) -> SippRun:
        return self.sip.answer(self.port, ring_ms=100, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def company(api: httpx.Client, settings):
    """Lines of a new customer, registered."""

    def make_customer(name: str):
        customer = api.post("/v1/customers", json={"name": name}).json()["id"]

        def phone(**fields: object) -> Phone:
            response = api.post("/v1/lines", json={"customer_id": customer, "label": name,
                                                   **fields})  # fmt: skip
            assert response.status_code == 201, response.text
            line = response.json()
            server = f"{settings.asterisk_host}:{settings.sip_port}"
            sip = SipEndpoint(line["sip_username"], line["sip_password"], server)
            port = free_udp_port()
            sip.register(port).expect_success()
            return Phone(line, sip, port)

        phone.customer_id = customer  # type: ignore[attr-defined]
        return phone

    return make_customer


def test_an_extension_reaches_its_own_customer_s_line_only(company, control_service):
    acme, other = company("Acme"), company("Other")
    a1, a2 = acme(), acme(extension="2345")
    b1, b2 = other(), other()
    assert (a1.line["extension"], a2.line["extension"]) == ("200", "2345")
    assert (b1.line["extension"], b2.line["extension"]) == ("200", "201")

    device = a2.answers()
    a1.sip.call("2345", hold_ms=200).expect_success()
    device.expect_success()

    # Acme's 2345 does not exist for Other's lines; Other's 200 is Other's, not Acme's.
    b2.sip.call_refused("2345", 404).expect_success()
    acme_200, other_200 = a1.answers(), b1.answers()
    b2.sip.call("200", hold_ms=200).expect_success()
    other_200.expect_success()
    acme_200.process.kill()
    acme_200.process.wait()
    assert received_invites(acme_200) == []


def test_a_ring_group_extension_rings_its_members(api, company, control_service):
    acme = company("Groups")
    caller, member = acme(), acme()
    body = {"customer_id": acme.customer_id, "name": "sales", "strategy": "ring_all",
            "members": [member.line["id"]], "extension": "500"}  # fmt: skip
    group = api.post("/v1/ring-groups", json=body)
    assert group.status_code == 201, group.text
    assert group.json()["extension"] == "500"
    device = member.answers()
    caller.sip.call("500", hold_ms=200).expect_success()
    device.expect_success()


def test_extension_input_is_checked_and_unique_in_the_customer(api, company):
    acme = company("Rules")
    first = acme(extension="777")
    customer = acme.customer_id

    def create(**fields) -> httpx.Response:
        return api.post("/v1/lines", json={"customer_id": customer, "label": "x", **fields})

    taken = create(extension="777")
    assert taken.status_code == 409 and taken.json()["detail"][0]["loc"] == ["body", "extension"]
    for bad in ("3949", "112", "1", "0123", "12a"):
        response = create(extension=bad)
        assert response.status_code == 422, (bad, response.text)
        assert "extension" in response.json()["detail"][0]["loc"], response.text
    group = {"customer_id": customer, "name": "g", "strategy": "hunt", "members": [],
             "extension": "777"}  # fmt: skip
    assert api.post("/v1/ring-groups", json=group).status_code == 409

    # Changed: reachable at the new one, the old one free for another line.
    moved = api.patch(f"/v1/lines/{first.line['id']}", json={"extension": "778"})
    assert moved.status_code == 200 and moved.json()["extension"] == "778", moved.text
    assert create(extension="777").json()["extension"] == "777"
    # Deleted: its extension is free again.
    assert api.delete(f"/v1/lines/{first.line['id']}").status_code in (202, 204)
    assert create(extension="778").status_code == 201


def test_lines_created_at_once_in_one_customer_each_get_their_own_extension(api: httpx.Client):
    """16 creations in flight for one customer, none choosing: each gets the next free
    extension (they are given one at a time per customer), none fails."""
    import concurrent.futures

    customer = api.post("/v1/customers", json={"name": "rush"}).json()["id"]

    def create(i: int) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, headers=api.headers) as client:
            return client.post("/v1/lines", json={"customer_id": customer, "label": f"rush {i}"})

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(create, range(48)))
    assert [r.status_code for r in responses] == [201] * 48, [r.text for r in responses]
    extensions = sorted(int(r.json()["extension"]) for r in responses)
    assert extensions == list(range(200, 248))
