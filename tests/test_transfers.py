"""Issue 11: a transfer (SIP REFER) from a line is refused, so no leg escapes the control plane:
not counted against a line, not cut at the maximum duration, not in the CDRs. Real Asterisk,
sipp as both devices, PostgreSQL."""

from __future__ import annotations

import re

import httpx
import pytest
from helpers import ari_object, put_ari_object
from sip_agent import SipEndpoint, SippRun, free_udp_port

pytestmark = pytest.mark.integration

# What a line's REFER gets: see docs/call-control.md, "Transfers".
REFUSED = 603


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "transfers"}).json()


@pytest.fixture
def line(api: httpx.Client, customer, settings):
    def make(**fields: object) -> tuple[dict, SipEndpoint]:
        body = {"customer_id": customer["id"], "label": "transfer", **fields}
        created = api.post("/v1/lines", json=body).json()
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        return created, SipEndpoint(created["sip_username"], created["sip_password"], server)

    return make


# A final response to a REFER, in sipp's -trace_msg log: its status line, then its headers.
REFER_ANSWER = re.compile(r"^SIP/2\.0 ([2-6]\d\d) .*\n(?:.+\n)*?CSeq: *\d+ REFER", re.MULTILINE)


def refer_answer(run: SippRun) -> int | None:
    """The final SIP code this sipp run's REFER got so far; None: not answered yet."""
    log = "".join(p.read_text(errors="replace") for p in run.workdir.glob("*_messages.log"))
    found = REFER_ANSWER.search(log)
    return int(found.group(1)) if found else None


def cdrs_once_over(api: httpx.Client, line: dict, count: int, wait_until) -> list[dict]:
    """The line's CDRs, once it has no call in progress and ``count`` CDRs."""

    def fetch() -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": line["id"]}).json()["items"]

    wait_until(lambda: len(fetch()) >= count
               and not api.get(f"/v1/lines/{line['id']}/calls").json(), 20,
               f"the line's calls over and {count} CDRs")  # fmt: skip
    return fetch()


def test_a_caller_s_transfer_is_refused_and_the_call_stays_controlled(
    api, line, control_service, wait_until
):
    caller, alice = line(max_calls=1)
    callee, bob = line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, ring_ms=100)
    call = alice.call_and_refer(bob.username, REFUSED, hold_ms=5000)
    wait_until(lambda: refer_answer(call) is not None, 15, "an answer to the REFER")
    assert refer_answer(call) == REFUSED, call.output
    (held,) = api.get(f"/v1/lines/{caller['id']}/calls").json()
    assert held["answered_at"] is not None and held["peer"]
    alice.call_refused(bob.username, 486).expect_success()  # still counted: at its limit of 1
    call.expect_success()
    device.expect_success()
    # One CDR for the call the REFER tried to transfer, one for the call refused at the limit.
    records = cdrs_once_over(api, caller, 2, wait_until)
    assert sorted(r["disposition"] for r in records) == ["answered", "refused_limit"], records
    assert all(r["callee_line_id"] == callee["id"] for r in records)


def test_a_callee_s_transfer_is_refused_and_the_call_stays_controlled(
    api, line, control_service, wait_until
):
    caller, alice = line()
    callee, bob = line(max_calls=1)
    _, carol = line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer_and_refer(port, REFUSED)
    call = alice.call(bob.username, hold_ms=5000)
    wait_until(lambda: refer_answer(device) is not None, 15, "an answer to the REFER")
    assert refer_answer(device) == REFUSED, device.output
    (held,) = api.get(f"/v1/lines/{callee['id']}/calls").json()
    assert held["answered_at"] is not None and held["direction"] == "inbound"
    carol.call_refused(bob.username, 486).expect_success()  # still counted: at its limit of 1
    call.expect_success()
    device.expect_success()
    records = cdrs_once_over(api, callee, 2, wait_until)
    assert sorted(r["disposition"] for r in records) == ["answered", "refused_limit"], records
    (answered,) = [r for r in records if r["disposition"] == "answered"]
    assert answered["caller_line_id"] == caller["id"]


def test_a_line_pushed_when_transfers_were_allowed_is_repaired_by_the_reconciler(
    api, line, control_service, settings, wait_until
):
    """Lines provisioned before this rule hold allow_transfer=yes in Asterisk's astdb."""
    _, alice = line()
    put_ari_object(settings, "endpoint", alice.username, {"allow_transfer": "yes"})
    wait_until(lambda: ari_object(settings, "endpoint", alice.username)["allow_transfer"]
               == "false", 15, "the reconciler to refuse transfers again")  # fmt: skip
    _, bob = line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, ring_ms=100)
    alice.call_and_refer(bob.username, REFUSED, hold_ms=200).expect_success()
    device.expect_success()
