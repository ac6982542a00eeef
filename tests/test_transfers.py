"""Issue 15: blind transfers (SIP REFER with Refer-To) go back through the control plane: the
transferee's new call is decided as one the transferer places, counted against the right lines,
cut at its deadline, in the CDRs part by part with who paid. Real Asterisk, sipp as every
phone and as the carrier, PostgreSQL. docs/transfers.md."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from helpers import sql
from sip_agent import (
    SipEndpoint,
    SippRun,
    _scenario,
    free_udp_port,
    received,
    run_sipp,
    wait_bound,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    """A customer whose lines can have numbers (to call out with)."""
    block = {"first": "0236000000", "last": "0236000099"}
    assert api.post("/v1/number-blocks", json=block).status_code == 201
    created = api.post("/v1/customers", json={"name": "transfers", "residence_country": "FR"})
    response = api.patch(f"/v1/customers/{created.json()['id']}",
                         json={"documents_verified": True})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def give_number(api: httpx.Client, customer: dict, line: dict) -> str:
    number = api.post(
        "/v1/numbers/allocate",
        json={"customer_id": customer["id"], "kind": "geographic", "zone": "2"},
    )
    response = api.patch(f"/v1/lines/{line['id']}", json={"main_number": number.json()["national"]})
    assert response.status_code == 200, response.text
    return response.json()["main_number"]


def calls_of(api: httpx.Client, line: dict) -> list[dict]:
    return api.get(f"/v1/lines/{line['id']}/calls").json()


def counts(api: httpx.Client, *lines: dict) -> list[int]:
    return [len(calls_of(api, ln)) for ln in lines]


def registered_answering(endpoint: SipEndpoint, **kw: object) -> SippRun:
    port = free_udp_port()
    endpoint.register(port).expect_success()
    return endpoint.answer(port, **kw)  # type: ignore[arg-type]


def registered_transferring(
    endpoint: SipEndpoint, target: str, notifies: int = 3, talk_ms: int = 500
) -> SippRun:
    port = free_udp_port()
    endpoint.register(port).expect_success()
    return endpoint.answer_and_transfer(port, target, notifies=notifies, talk_ms=talk_ms)


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
    transferer = registered_transferring(bob, carol.username, talk_ms=3000)
    call = alice.call(bob.username, hold_ms=8000)
    # Before the transfer (Bob talks 3 s): Alice and Bob hold the call.
    wait_until(lambda: counts(api, a, b, c) == [1, 1, 0]
               and calls_of(api, b)[0]["answered_at"] is not None, 10,
               "Alice's call to Bob answered")  # fmt: skip
    # After the transfer: Alice and Carol hold the call, Bob's place is free again.
    wait_until(lambda: counts(api, a, b, c) == [1, 0, 1]
               and calls_of(api, c)[0]["answered_at"] is not None, 20,
               "the call moved to Carol and answered")  # fmt: skip
    transferer.expect_success()
    (moved,) = calls_of(api, a)
    assert moved["peer"] and calls_of(api, c)[0]["id"] == moved["id"]
    legs = sql(
        database_url,
        "SELECT g.line_id, g.role, c.transfer_of FROM active_call_legs g"
        " JOIN active_calls c ON c.id = g.call_id WHERE g.call_id = $1",
        moved["id"],
    )
    names = {a["id"]: "a", c["id"]: "c"}
    assert sorted((names[str(r["line_id"])], r["role"]) for r in legs) == [
        ("a", "caller"),
        ("c", "callee"),
    ], legs
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
    assert notify_fragments(transferer) == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
    ]


def test_a_caller_s_transfer_moves_the_callee_and_the_cutoff_still_cuts_at_the_first_deadline(
    api, make_line, control_service, wait_until, database_url
):
    """Alice calls Bob and sends him to Carol: Bob and Carol hold the call, Alice is free. On-net,
    nobody pays: the call keeps the deadline of Alice's call (6 s from its answer) and the
    daemon cuts it there, both remaining phones getting a BYE."""
    a, alice = make_line("transferer", max_calls=1, max_call_duration_s=6)
    b, bob = make_line("transferee", max_calls=1)
    c, carol = make_line("target", max_calls=1)
    transferee = registered_answering(bob, ring_ms=100)
    target = registered_answering(carol, ring_ms=300)
    call = alice.call_and_transfer(bob.username, carol.username, talk_ms=500)
    wait_until(lambda: counts(api, a, b, c) == [0, 1, 1]
               and calls_of(api, c)[0]["answered_at"] is not None, 20,
               "the call moved to Bob and Carol, answered")  # fmt: skip
    call.expect_success()
    (moved,) = calls_of(api, b)
    # Cut by the daemon at the deadline of the call it continues, both phones hung up.
    transferee.expect_success()
    target.expect_success()
    wait_until(lambda: counts(api, a, b, c) == [0, 0, 0], 10, "every line free")
    # The cutoff's record is written after the hangup (evidence, not control): the line may be
    # free a moment before it is there.
    query = "SELECT * FROM call_cutoffs WHERE call_id = $1"
    wait_until(lambda: sql(database_url, query, moved["id"]), 10, "the cutoff recorded")
    (cut,) = sql(database_url, query, moved["id"])
    assert cut["enforced_by"] == "daemon" and cut["callee_line_id"] is not None
    # It was cut 6 s after the first answer (Alice's call), not 6 s after Carol's.
    assert moved["deadline_at"] is not None
    wait_until(lambda: len(cdrs_of(api, b)) >= 2, 20, "two CDR parts")
    first_part, second_part = sorted(cdrs_of(api, b), key=lambda r: r["start_at"])
    assert (first_part["caller_line_id"], first_part["callee_line_id"]) == (a["id"], b["id"])
    assert (second_part["caller_line_id"], second_part["callee_line_id"]) == (b["id"], c["id"])
    assert second_part["transfer_of"] == first_part["call_id"]
    assert second_part["disposition"] == "cut", second_part


def test_a_transfer_outside_is_an_outbound_call_paid_by_the_transferer(
    api, customer, make_line, carrier, control_service, wait_until
):
    """Bob sends Alice to an outside number: the carrier gets Bob's number as caller ID, Bob
    keeps a place for the outbound leg he pays (his phone gone), and its CDR part says so."""
    api.post("/v1/destinations", json={"code": "44"})
    a, alice = make_line("transferee", max_calls=1)
    b, bob = make_line("transferer", max_calls=1)
    number = give_number(api, customer, b)
    network = carrier.answer()
    transferer = registered_transferring(bob, "+442079460123")
    call = alice.call(bob.username, hold_ms=5000)
    wait_until(lambda: transferer.process.poll() is not None and counts(api, a, b) == [1, 1],
               20, "Bob's phone gone, the outbound leg counted on Bob")  # fmt: skip
    transferer.expect_success()
    (paid,) = calls_of(api, b)
    assert paid["id"] == calls_of(api, a)[0]["id"]
    # Bob pays a call in progress: at his limit of 1, a call to him is refused.
    _, dave = make_line("other")
    dave.call_refused(bob.username, 486).expect_success()
    call.expect_success()
    network.expect_success()
    (invite,) = [m for m in received(network) if m.first_line.startswith("INVITE")]
    assert f"<sip:{number}@" in invite.text.split("From:", 1)[1].splitlines()[0], invite.text
    wait_until(lambda: counts(api, a, b) == [0, 0], 10, "every line free")
    wait_until(lambda: len(cdrs_of(api, a)) >= 2, 20, "two CDR parts")
    part = max(cdrs_of(api, a), key=lambda r: r["start_at"])
    assert (part["direction"], part["paid_by_line_id"], part["callee"]) == (
        "outbound",
        b["id"],
        "+442079460123",
    ), part
    assert part["disposition"] == "answered" and part["transfer_of"] is not None
    # Billing: the outbound part is Bob's placed call, not Alice's.
    assert part in cdrs_of(api, b)


def test_a_transfer_to_a_forbidden_destination_is_refused_and_leaves_nothing_counted(
    api, customer, make_line, carrier, control_service, wait_until
):
    """Bob sends Alice to a destination not on the operator's list: refused as Bob's own call
    would be. Asterisk has already taken Alice from Bob (a blind transfer is executed before
    anyone is asked), so Alice's call ends; nothing stays counted; the CDR part says why."""
    api.delete("/v1/destinations/49")
    a, alice = make_line("transferee", max_calls=1)
    b, bob = make_line("transferer", max_calls=1)
    give_number(api, customer, b)
    transferer = registered_transferring(bob, "+4930123456", notifies=2)
    call = run_sipp(
        _scenario("uac_call_until_cut.xml"), alice.server, service=bob.username,
        user=alice.username, password=alice.password, keys={"caller": alice.username},
    )  # fmt: skip
    call.expect_success()  # Alice got a BYE
    transferer.expect_success()
    assert notify_fragments(transferer) == ["SIP/2.0 100 Trying", "SIP/2.0 503 Service Unavailable"]
    wait_until(lambda: counts(api, a, b) == [0, 0], 10, "every line free")
    wait_until(lambda: len(cdrs_of(api, a)) >= 2, 20, "two CDR parts")
    part = max(cdrs_of(api, a), key=lambda r: r["start_at"])
    assert part["disposition"] == "refused_policy", part
    assert "not on the operator's list" in part["reason"]


def dialog_of(run: SippRun) -> tuple[str, str, str]:
    """Call-ID, our tag, the other end's tag, from the 200 OK a sipp UAC got."""
    (ok,) = [m.text for m in received(run) if m.first_line.startswith("SIP/2.0 200")
             and "INVITE" in m.text.split("CSeq:", 1)[1].splitlines()[0]][:1]  # fmt: skip
    headers = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
               for ln in ok.splitlines()[1:] if ":" in ln}  # fmt: skip

    def tag(value: str) -> str:
        return value.split("tag=", 1)[1].split(";", 1)[0].strip()

    return headers["call-id"], tag(headers["from"]), tag(headers["to"])


def test_an_attended_transfer_joins_the_two_calls_counted_once_and_cut_at_the_first_deadline(
    api, make_line, control_service, wait_until, database_url
):
    """Bob calls Carol (the consultation), Alice calls Bob, Bob joins Alice and Carol (REFER
    with Replaces naming the consultation): Asterisk joins them in its bridges; the daemon makes
    the two calls one, counted on Alice and Carol, Bob free, cut at the earlier deadline (Alice's
    6 s). sipp plays Bob's phone as two processes, one per dialog: sipp runs one dialog per
    call, so the REFER's Replaces is filled from the consultation's dialog once it is up."""
    a, alice = make_line("transferee", max_calls=1, max_call_duration_s=6)
    b, bob = make_line("transferer")
    c, carol = make_line("target", max_calls=1)
    target = registered_answering(carol, ring_ms=100)
    port = free_udp_port()
    bob.register(port).expect_success()
    consult = run_sipp(
        _scenario("uac_call_until_cut.xml"), bob.server, service=carol.username,
        user=bob.username, password=bob.password, keys={"caller": bob.username},
        extra=["-trace_msg"],
    )  # fmt: skip
    wait_until(lambda: counts(api, b, c) == [1, 1] and calls_of(api, c)[0]["answered_at"],
               15, "the consultation answered")  # fmt: skip
    call_id, ours, theirs = dialog_of(consult)
    replaces = "?Replaces=" + quote(f"{call_id};to-tag={theirs};from-tag={ours}", safe="")
    transferer = bob.answer_and_transfer(port, carol.username, headers=replaces, notifies=2)
    call = run_sipp(
        _scenario("uac_call_until_cut.xml"), alice.server, service=bob.username,
        user=alice.username, password=alice.password, keys={"caller": alice.username},
    )  # fmt: skip
    wait_until(lambda: counts(api, a, b, c) == [1, 0, 1], 20, "Alice and Carol joined, Bob free")
    (joined,) = calls_of(api, a)
    assert calls_of(api, c)[0]["id"] == joined["id"]
    transferer.expect_success()
    consult.expect_success()  # Asterisk hung Bob's consultation leg up
    call.expect_success()  # cut
    target.expect_success()
    wait_until(lambda: counts(api, a, b, c) == [0, 0, 0], 10, "every line free")
    (cut,) = sql(database_url, "SELECT * FROM call_cutoffs WHERE call_id = $1", joined["id"])
    assert cut["enforced_by"] == "daemon"
    assert (str(cut["caller_line_id"]), str(cut["callee_line_id"])) == (a["id"], c["id"])
    # CDRs: Alice's call to Bob and Bob's consultation end at the transfer; the joined part
    # (Alice and Carol) is a CDR of its own, from the transfer to the cut.
    wait_until(lambda: len(cdrs_of(api, c)) >= 2, 20, "Carol's two CDRs")
    by_caller = {r["caller_line_id"]: r for r in cdrs_of(api, b)}
    first, consultation = by_caller[a["id"]], by_caller[b["id"]]
    assert (first["callee_line_id"], consultation["callee_line_id"]) == (b["id"], c["id"])
    assert first["end_at"] == consultation["end_at"], (first, consultation)  # the transfer
    (part,) = [r for r in cdrs_of(api, c) if r["transfer_of"]]
    assert (part["caller_line_id"], part["callee_line_id"]) == (a["id"], c["id"]), part
    assert part["transfer_of"] == first["call_id"] and part["linkedid"].endswith("/t1")
    assert part["disposition"] == "cut" and part["start_at"] >= first["end_at"], part


def test_a_carrier_s_refer_is_declined_and_the_call_goes_on_counted(
    api, customer, make_line, carrier, control_service, wait_until
):
    """The carrier does not transfer our customers' calls: its REFER gets 603 (trunks keep
    allow_transfer=no) and the outbound call goes on, counted on the line."""
    api.post("/v1/destinations", json={"code": "44"})
    a, alice = make_line("caller", max_calls=1)
    give_number(api, customer, a)
    network = run_sipp(
        _scenario("uas_answer_refer.xml.tmpl", code="603"), carrier.server,
        local_port=carrier.port, local_ip=carrier.ip, extra=["-d", "100", "-trace_msg"],
    )  # fmt: skip
    wait_bound(network, carrier.port, carrier.ip)
    call = alice.call("+442079460124", hold_ms=3000)
    wait_until(lambda: any(m.first_line.startswith("SIP/2.0 603") for m in received(network)),
               15, "the carrier's REFER declined")  # fmt: skip
    (held,) = calls_of(api, a)
    assert held["answered_at"] is not None and held["direction"] == "outbound"
    call.expect_success()
    network.expect_success()


def test_a_transfer_to_a_line_at_its_limit_is_refused_and_leaves_nothing_counted(
    api, make_line, control_service, wait_until
):
    """Carol is in a call already (her limit: 1): Bob's transfer of Alice to her is refused
    486 like any call to her would be; Alice's call ends, Carol's call is untouched."""
    a, alice = make_line("transferee", max_calls=1)
    b, bob = make_line("transferer", max_calls=1)
    c, carol = make_line("target", max_calls=1)
    _, dave = make_line("busy with carol")
    busy = registered_answering(carol, ring_ms=100)
    held = dave.call(carol.username, hold_ms=8000)
    wait_until(lambda: counts(api, c) == [1], 15, "Carol in a call")
    transferer = registered_transferring(bob, carol.username, notifies=2)
    call = run_sipp(
        _scenario("uac_call_until_cut.xml"), alice.server, service=bob.username,
        user=alice.username, password=alice.password, keys={"caller": alice.username},
    )  # fmt: skip
    call.expect_success()  # Alice got a BYE
    transferer.expect_success()
    # res_pjsip_refer reports any failed transfer as 503; why is in the CDR part.
    assert notify_fragments(transferer) == ["SIP/2.0 100 Trying", "SIP/2.0 503 Service Unavailable"]
    wait_until(lambda: counts(api, a, b) == [0, 0], 10, "Alice and Bob free")
    assert counts(api, c) == [1]  # her own call only
    wait_until(lambda: len(cdrs_of(api, a)) >= 2, 20, "two CDR parts")
    part = max(cdrs_of(api, a), key=lambda r: r["start_at"])
    assert (part["disposition"], part["callee_line_id"]) == ("refused_limit", c["id"]), part
    held.expect_success()
    busy.expect_success()
