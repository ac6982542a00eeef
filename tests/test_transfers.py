"""Issue 15: blind transfers (SIP REFER with Refer-To) go back through the control plane: the
transferee's new call is decided as one the transferer places, counted against the right lines,
cut at its deadline, in the CDRs part by part with who paid. Real Asterisk, sipp as every
phone and as the carrier, PostgreSQL. docs/transfers.md."""

from __future__ import annotations

import httpx
import pytest
from helpers import sql
from sip_agent import SipEndpoint, SippRun, free_udp_port, received

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "transfers"}).json()


def calls_of(api: httpx.Client, line: dict) -> list[dict]:
    return api.get(f"/v1/lines/{line['id']}/calls").json()


def counts(api: httpx.Client, *lines: dict) -> list[int]:
    return [len(calls_of(api, ln)) for ln in lines]


def registered_answering(endpoint: SipEndpoint, **kw: object) -> SippRun:
    port = free_udp_port()
    endpoint.register(port).expect_success()
    return endpoint.answer(port, **kw)  # type: ignore[arg-type]


def registered_transferring(endpoint: SipEndpoint, target: str, talk_ms: int = 500) -> SippRun:
    port = free_udp_port()
    endpoint.register(port).expect_success()
    return endpoint.answer_and_transfer(port, target, talk_ms=talk_ms)


def cdrs_of(api: httpx.Client, line: dict) -> list[dict]:
    return api.get("/v1/cdrs", params={"line_id": line["id"], "limit": 100}).json()["items"]


def notify_fragments(run: SippRun) -> list[str]:
    """The sipfrag status lines of the NOTIFYs the transferer got."""
    return [
        body.strip().splitlines()[0]
        for m in received(run) if m.first_line.startswith("NOTIFY")
        for body in [m.text.split("\n\n", 1)[1] if "\n\n" in m.text else ""] if body.strip()
    ]  # fmt: skip


def test_a_blind_transfer_on_net_moves_the_call_to_the_target_and_frees_the_transferer(
    api, make_line, control_service, wait_until, database_url
):
    a, alice = make_line("transferee", max_calls=1)
    b, bob = make_line("transferer", max_calls=1)
    c, carol = make_line("target", max_calls=1)
    target = registered_answering(carol, ring_ms=300)
    transferer = registered_transferring(bob, carol.username)
    call = alice.call(bob.username, hold_ms=6000)
    # After the transfer: Alice and Carol hold the call, Bob's place is free again.
    wait_until(lambda: counts(api, a, b, c) == [1, 0, 1]
               and calls_of(api, c)[0]["answered_at"] is not None, 20,
               "the call moved to Carol and answered")  # fmt: skip
    transferer.expect_success()
    (moved,) = calls_of(api, a)
    assert moved["peer"] and calls_of(api, c)[0]["id"] == moved["id"]
    legs = sql(database_url,
               "SELECT g.line_id, g.role, c.transfer_of FROM active_call_legs g"
               " JOIN active_calls c ON c.id = g.call_id WHERE g.call_id = $1", moved["id"])
    names = {a["id"]: "a", c["id"]: "c"}
    assert sorted((names[str(r["line_id"])], r["role"]) for r in legs) == [
        ("a", "caller"), ("c", "callee")], legs
    assert legs[0]["transfer_of"] is not None
    # Bob is free: a call to him gets through (his phone is gone: not registered there, 480).
    call.expect_success()
    target.expect_success()
    wait_until(lambda: counts(api, a, b, c) == [0, 0, 0], 10, "every line free")
    wait_until(lambda: len(cdrs_of(api, a)) >= 2, 20, "two CDR parts")
    first, second = sorted(cdrs_of(api, a), key=lambda r: r["start_at"])
    assert (first["callee_line_id"], first["disposition"]) == (b["id"], "answered"), first
    assert (second["caller_line_id"], second["callee_line_id"]) == (a["id"], c["id"]), second
    assert second["disposition"] == "answered" and second["transfer_of"] == first["call_id"]
    assert second["linkedid"] == f"{first['linkedid']}/t1"
    assert second["paid_by_line_id"] is None  # on-net: nobody pays
    print(notify_fragments(transferer))
