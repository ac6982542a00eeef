"""Issue 5: one CDR per call attempt, with the right disposition and durations, written from
Asterisk's CEL journal by the daemon's shipper (real Asterisk, sipp and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import time

import httpx
import pytest
from sip_agent import SipEndpoint, free_udp_port, start_calls

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "CDRs"}).json()


@pytest.fixture
def line(api: httpx.Client, customer, settings):
    def make(**fields: object) -> tuple[dict, SipEndpoint]:
        body = {"customer_id": customer["id"], "label": "cdr", **fields}
        created = api.post("/v1/lines", json=body).json()
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        return created, SipEndpoint(created["sip_username"], created["sip_password"], server)

    return make


def registered(endpoint: SipEndpoint) -> int:
    port = free_udp_port()
    endpoint.register(port).expect_success()
    return port


def cdrs_of(api: httpx.Client, line: dict, count: int, wait_until, **filters: str) -> list[dict]:
    """The line's CDRs, once there are ``count`` of them (and still ``count`` a moment later)."""
    params = {"line_id": line["id"], "limit": 1000, **filters}

    def fetch() -> list[dict]:
        response = api.get("/v1/cdrs", params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    wait_until(lambda: len(fetch()) >= count, 20, f"{count} CDRs for the line")
    time.sleep(1.0)
    found = fetch()
    assert len(found) == count, found
    return found


def test_each_kind_of_call_gets_one_cdr_with_its_disposition(
    api, line, control_service, wait_until
):
    caller, alice = line(max_calls=1)
    answering, bob = line()
    bob_port = registered(bob)
    busy, carol = line()
    carol_port = registered(carol)
    _, dave = line()
    dave_port = registered(dave)

    device = bob.answer(bob_port, ring_ms=200)
    alice.call(bob.username, hold_ms=2000).expect_success()
    device.expect_success()

    device = carol.busy(carol_port)
    alice.call_refused(carol.username, 486).expect_success()
    device.expect_success()

    device = dave.ring_unanswered(dave_port)  # the 5 s ring timeout of the tests
    alice.call_refused(dave.username, 480).expect_success()
    device.expect_success()

    # The line's one call in progress; a second is refused by its limit.
    device = bob.answer(bob_port, ring_ms=100)
    held = alice.call(bob.username, hold_ms=3000)
    wait_until(lambda: api.get(f"/v1/lines/{caller['id']}/calls").json(), 10, "held call")
    alice.call_refused(bob.username, 486).expect_success()
    held.expect_success()
    device.expect_success()

    alice.call_refused("nosuchline", 404).expect_success()

    records = cdrs_of(api, caller, 6, wait_until)
    by_disposition = {}
    for r in records:
        by_disposition.setdefault(r["disposition"], []).append(r)
    assert sorted(by_disposition) == ["answered", "busy", "failed", "no_answer", "refused_limit"]
    assert len(by_disposition["answered"]) == 2
    first = min(by_disposition["answered"], key=lambda r: r["start_at"])
    assert first["callee_line_id"] == answering["id"] and first["sip_code"] == 200
    assert abs(first["billed_s"] - 2) <= 1, first  # sipp held it 2 s after the answer
    assert first["direction"] == "on-net" and first["customer_id"] == caller["customer_id"]
    (b,) = by_disposition["busy"]
    assert (b["sip_code"], b["q850_cause"], b["billed_s"]) == (486, 17, 0)
    assert b["callee_line_id"] == busy["id"] and b["callee"] == carol.username
    (n,) = by_disposition["no_answer"]
    assert n["sip_code"] == 480 and 4 <= n["duration_ms"] / 1000 <= 7
    (refused,) = by_disposition["refused_limit"]
    assert refused["sip_code"] == 486 and refused["call_id"] is not None
    (failed,) = by_disposition["failed"]
    assert failed["sip_code"] == 404 and failed["call_id"] is None
    assert len({r["linkedid"] for r in records}) == 6


def test_a_cut_call_is_recorded_as_cut(api, line, control_service, wait_until, settings):
    caller, alice = line(max_call_duration_s=3)
    _, bob = line()
    port = registered(bob)
    device = bob.answer(port, ring_ms=100)
    batch = start_calls(
        "uac_call_until_cut.xml", f"{settings.asterisk_host}:{settings.sip_port}",
        [(alice.username, alice.password)], bob.username, timeout_s=30,
    )  # fmt: skip
    batch.outcomes(timeout=30)
    device.wait(10)
    (cdr,) = cdrs_of(api, caller, 1, wait_until)
    assert cdr["disposition"] == "cut" and cdr["billed_s"] == 3, cdr


def test_cdr_queries_exports_and_usage(api, line, control_service, wait_until):
    caller, alice = line()
    _, bob = line()
    port = registered(bob)
    device = bob.answer(port, calls=3, ring_ms=100)
    for _ in range(3):
        alice.call(bob.username, hold_ms=1100).expect_success()
    device.expect_success()
    records = cdrs_of(api, caller, 3, wait_until)
    # Paging with a cursor gives the same records, in start order.
    page1 = api.get("/v1/cdrs", params={"line_id": caller["id"], "limit": 2}).json()
    page2 = api.get(
        "/v1/cdrs", params={"line_id": caller["id"], "limit": 2, "cursor": page1["next_cursor"]}
    ).json()
    assert [r["id"] for r in page1["items"] + page2["items"]] == [r["id"] for r in records]
    assert page2["next_cursor"] is None
    # CSV export with the same filter.
    response = api.get("/v1/cdrs.csv", params={"line_id": caller["id"]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert rows[0]["disposition"] == "answered" and float(rows[0]["duration_s"]) > 1
    # Usage for the billing period.
    usage = api.get(
        f"/v1/lines/{caller['id']}/usage",
        params={"since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
    ).json()
    assert (usage["calls_placed"], usage["calls_answered"], usage["distinct_numbers_called"]) == (
        3, 3, 1,
    )  # fmt: skip
    assert 3 <= usage["billed_seconds"] <= 6


@pytest.mark.parametrize(
    ("params", "field", "status"),
    [
        ({"direction": "sideways"}, "direction", 422),
        ({"disposition": "maybe"}, "disposition", 422),
        ({"since": "yesterday"}, "since", 422),
        ({"number": "hello"}, "number", 422),  # the schema's pattern
        ({"number": "12"}, "number", 400),  # written as a number, but not a telephone number
        ({"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until", 400),
        ({"cursor": "garbage!"}, "cursor", 400),
        ({"limit": 0}, "limit", 422),
    ],
)
def test_bad_cdr_queries_are_refused(api: httpx.Client, params, field, status):
    response = api.get("/v1/cdrs", params=params)
    assert response.status_code == status, response.text
    assert ["query", field] in [e["loc"] for e in response.json()["detail"]]


def test_a_cdr_postgresql_refuses_is_skipped_and_logged_not_retried_forever(
    api, line, asterisk, control_service, cdr_service, wait_until
):
    """A row PostgreSQL cannot store (here a hangup cause beyond its integer) must not block the
    CDRs written with it or after it: its batch is written call by call, and that call is
    skipped and logged whole."""
    caller, alice = line()
    now = time.time()
    bad, good = f"crafted-{now:.6f}-bad", f"crafted-{now:.6f}-good"

    def call_lines(linkedid: str, cause: int) -> str:
        channel = f"PJSIP/{alice.username}-0000ffff"
        extra = f'{{""hangupcause"":{cause},""hangupsource"":"""",""dialstatus"":""""}}'
        return "".join(
            f'"{event}","{now + dt:.6f}","{linkedid}","{linkedid}","{channel}","nosuchline",'
            f'"centrex-lines","","{x}",""\n'
            for event, dt, x in (("CHAN_START", 0, ""), ("HANGUP", 0.1, extra),
                                 ("LINKEDID_END", 0.1, ""))
        )  # fmt: skip

    with asterisk.cel_journal.open("a") as journal:  # one write: one read, one batch
        journal.write(call_lines(bad, 99_999_999_999) + call_lines(good, 16))
    (cdr,) = cdrs_of(api, caller, 1, wait_until)
    assert cdr["linkedid"] == good and cdr["q850_cause"] == 16
    wait_until(lambda: f"refuses the CDR of call {bad}" in cdr_service.log_text(), 10, "logged")
    # ... and the CDRs of real calls keep coming.
    alice.call_refused("nosuchline", 404).expect_success()
    assert len(cdrs_of(api, caller, 2, wait_until)) == 2
