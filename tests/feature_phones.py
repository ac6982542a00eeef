"""Phones of a customer with numbers, for the line-feature tests (issue 15): each line gets a
number of the module's block, a registered sipp device when asked, and the helpers the tests
share (a call held until the platform hangs it up, the INVITEs a device received)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sip_agent import SipEndpoint, SippRun, _scenario, free_udp_port, run_sipp


@dataclass
class Phone:
    line: dict
    sip: SipEndpoint
    port: int

    @property
    def id(self) -> str:
        return self.line["id"]

    @property
    def number(self) -> str:
        return self.line["main_number"]

    @property
    def national(self) -> str:
        return "0" + self.number.removeprefix("+33")

    def answers(self, *, calls: int = 1, ring_ms: int = 100, timeout_s: int = 30) -> SippRun:
        return self.sip.answer(self.port, calls=calls, ring_ms=ring_ms, timeout_s=timeout_s)

    def until_hung_up(self, dialled: str) -> SippRun:
        """A call answered, then hung up by the other side: a feature code (a tone, then
        the platform hangs up), or a call someone else ends."""
        return run_sipp(
            _scenario("uac_call_until_cut.xml"), self.sip.server, service=dialled,
            user=self.sip.username, password=self.sip.password,
            keys={"caller": self.sip.username}, timeout_s=15,
        )  # fmt: skip


def make_company(api: httpx.Client, settings, name: str):
    """A customer allowed French numbers, and a function making its phones."""
    customer = api.post("/v1/customers", json={"name": name, "residence_country": "FR"}).json()
    verified = api.patch(f"/v1/customers/{customer['id']}", json={"documents_verified": True})
    assert verified.status_code == 200, verified.text

    def phone(*, register: bool = True, **fields: object) -> Phone:
        body = {"customer_id": customer["id"], "label": name, **fields}
        response = api.post("/v1/lines", json=body)
        assert response.status_code == 201, response.text
        line = response.json()
        number = api.post(
            "/v1/numbers/allocate",
            json={"customer_id": customer["id"], "kind": "geographic", "zone": "2"},
        )
        assert number.status_code in (200, 201), number.text
        patched = api.patch(f"/v1/lines/{line['id']}",
                            json={"main_number": number.json()["national"]})  # fmt: skip
        assert patched.status_code == 200, patched.text
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        sip = SipEndpoint(line["sip_username"], line["sip_password"], server)
        port = free_udp_port()
        if register:
            sip.register(port).expect_success()
        return Phone({**patched.json(), "sip_password": line["sip_password"]}, sip, port)

    phone.customer_id = customer["id"]  # type: ignore[attr-defined]
    return phone


def set_features(api: httpx.Client, phone: Phone, **fields: object) -> dict:
    response = api.patch(f"/v1/lines/{phone.id}/features", json=fields)
    assert response.status_code == 200, response.text
    return response.json()


def calls_of(api: httpx.Client, phone: Phone) -> int:
    return len(api.get(f"/v1/lines/{phone.id}/calls").json())


def header(invite: str, name: str) -> str | None:
    """The value of header ``name`` in a message as sipp logged it."""
    for line in invite.splitlines():
        key, _, value = line.strip().partition(":")
        if key.lower() == name.lower():
            return value.strip()
    return None
