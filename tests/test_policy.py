"""Issue 7: the usage policy in the call path — destination allow-list and suspension (with
email notices), fraud rules, automated-dialling detection, suspension of lines; emergency
calls always through. Real Asterisk, sipp (lines and carrier), PostgreSQL, SMTP."""

from __future__ import annotations

import time

import httpx
import pytest
from sip_agent import SipEndpoint, free_udp_port, received_invites

pytestmark = pytest.mark.integration

ACTOR = {"actor": "noc-jdupont", "reason": "test"}


@pytest.fixture(scope="module")
def block(api: httpx.Client) -> None:
    response = api.post("/v1/number-blocks", json={"first": "0235000000", "last": "0235000999"})
    assert response.status_code == 201, response.text


@pytest.fixture
def customer(api: httpx.Client, block):
    def make(**patch: object) -> dict:
        body = {"name": "policy", "residence_country": "FR"}
        created = api.post("/v1/customers", json=body).json()
        response = api.patch(
            f"/v1/customers/{created['id']}", json={"documents_verified": True, **patch}
        )
        assert response.status_code == 200, response.text
        return response.json()

    return make


@pytest.fixture
def numbered_line(api: httpx.Client, settings):
    def make(customer: dict, **fields: object) -> tuple[dict, SipEndpoint]:
        body = {"customer_id": customer["id"], "label": "p", **fields}
        line = api.post("/v1/lines", json=body).json()
        number = api.post(
            "/v1/numbers/allocate",
            json={"customer_id": customer["id"], "kind": "geographic", "zone": "2"},
        ).json()
        assert api.patch(f"/v1/lines/{line['id']}",
                         json={"main_number": number["national"]}).status_code == 200  # fmt: skip
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        return line, SipEndpoint(line["sip_username"], line["sip_password"], server)

    return make


def last_cdr(api: httpx.Client, line: dict, wait_until, count: int) -> dict:
    def fetch() -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": line["id"], "limit": 1000}).json()["items"]

    wait_until(lambda: len(fetch()) >= count, 20, f"{count} CDRs")
    return fetch()[-1]


def test_destinations_unlisted_and_suspended_are_refused_and_callers_notified(
    api, customer, numbered_line, carrier, control_service, smtp_inbox, wait_until
):
    uk = "+442071234567"
    api.delete("/v1/destinations/44")  # not on the list (a previous run may have left it)
    alice_customer = customer(email="alice@example.test")
    bob_customer = customer(email="bob@example.test")
    quiet_customer = customer(email="quiet@example.test")
    alice_line, alice = numbered_line(alice_customer)
    bob_line, bob = numbered_line(bob_customer)
    numbered_line(quiet_customer)

    alice.call_refused(uk, 403).expect_success()
    refused = last_cdr(api, alice_line, wait_until, 1)
    assert refused["disposition"] == "refused_policy" and refused["sip_code"] == 403
    assert "not on the operator's list" in refused["reason"] and refused["destination"] == "44"

    assert api.post("/v1/destinations", json={"code": "44"}).status_code == 201
    for sip in (alice, bob):
        network = carrier.answer()
        sip.call(uk, hold_ms=200).expect_success()
        network.expect_success()
    assert last_cdr(api, bob_line, wait_until, 1)["destination"] == "44"
    wait_until(lambda: len(api.get("/v1/cdrs", params={"line_id": alice_line["id"]}).json()
                           ["items"]) == 2, 10, "alice's answered CDR")  # fmt: skip

    before = len(smtp_inbox)
    response = api.post("/v1/destinations/44/suspend",
                        json={"actor": "noc-jdupont", "reason": "fraud wave to +44 7"})  # fmt: skip
    assert response.status_code == 200, response.text
    suspension = response.json()
    assert sorted(suspension["notified"]) == ["alice@example.test", "bob@example.test"]
    assert suspension["destination"]["suspended_at"]
    wait_until(lambda: len(smtp_inbox) - before == 2, 10, "two notices")
    mails = smtp_inbox[before:]
    assert sorted(m["To"] for m in mails) == ["alice@example.test", "bob@example.test"]
    assert all("fraud wave to +44 7" in m.get_payload() for m in mails)

    alice.call_refused(uk, 403).expect_success()
    again = last_cdr(api, alice_line, wait_until, 3)
    assert again["disposition"] == "refused_policy" and "suspended" in again["reason"]
    # Emergency numbers are never refused by policy.
    network = carrier.answer()
    alice.call("112", hold_ms=200).expect_success()
    network.expect_success()
    assert api.post("/v1/destinations/44/resume", json=ACTOR).status_code == 200


def test_the_501st_distinct_number_raises_one_suspicion_and_restricts_the_next_call(
    api, customer, numbered_line, carrier, control_service, wait_until
):
    owner = customer(fraud_action="emergency_only")
    line, sip = numbered_line(owner, max_calls=1000)
    numbers = [f"+3314{i:07d}" for i in range(501)]
    network = carrier.answer(calls=501, timeout_s=120)
    sip.call_each(numbers, rate=50, hold_ms=50).expect_success(timeout=180)
    network.expect_success(timeout=60)
    found = api.get("/v1/fraud-suspicions", params={"line_id": line["id"]}).json()
    suspicions = [s for s in found if s["rule"] == "distinct_numbers"]
    assert len(suspicions) == 1, found
    assert suspicions[0]["evidence"]["distinct_numbers"] == 501
    assert suspicions[0]["evidence"]["last_number"] == numbers[-1]
    assert suspicions[0]["action"] == "emergency_only"
    # In force for the very next call; emergency calls still go through.
    sip.call_refused(numbers[0], 403).expect_success()
    network = carrier.answer()
    sip.call("17", hold_ms=100).expect_success()
    network.expect_success()
    history = api.get(f"/v1/lines/{line['id']}/restrictions").json()
    assert [(r["level"], r["actor"]) for r in history] == [("emergency_only", "fraud-control")]

    # Once per period. (501 short calls at 50/s also look like a dialler: flagged, no more;
    # that judgement comes from the CDRs, a few seconds later.)
    def rules() -> list[tuple[str, str]]:
        found = api.get("/v1/fraud-suspicions", params={"line_id": line["id"]}).json()
        return sorted((s["rule"], s["action"]) for s in found)

    wait_until(lambda: len(rules()) == 2, 20, "the dialler flag")
    assert rules() == [("automated_dialling", "flag"), ("distinct_numbers", "emergency_only")]


def test_a_call_cut_at_the_maximum_duration_raises_the_long_call_suspicion(
    api, customer, numbered_line, carrier, control_service, wait_until
):
    line, sip = numbered_line(customer(), max_call_duration_s=2)
    network = carrier.answer(timeout_s=30)
    sip.call("0145678901", hold_ms=6000)  # cut at 2 s: sipp sees the BYE first
    network.wait(20)

    def suspicions() -> list[dict]:
        return api.get("/v1/fraud-suspicions", params={"line_id": line["id"]}).json()

    wait_until(lambda: suspicions(), 20, "long-call suspicion")
    (suspicion,) = suspicions()
    assert suspicion["rule"] == "long_call" and suspicion["evidence"]["billed_s"] == 2


def test_automated_dialling_is_detected_and_office_traffic_is_not(
    api, customer, numbered_line, carrier, control_service, wait_until, settings
):
    calls = 40
    owner = customer()
    dialler_line, dialler = numbered_line(owner, max_calls=100)
    network = carrier.answer(calls=calls, timeout_s=60)
    sequential = [f"+331450{i:05d}" for i in range(100, 100 + calls)]
    dialler.call_each(sequential, rate=4, hold_ms=300).expect_success(timeout=90)
    network.expect_success(timeout=60)
    # The same volume as office traffic: one call each from 40 lines, a few minutes apart in
    # real life (here: at once), to unrelated numbers.
    office = [numbered_line(owner) for _ in range(calls)]
    network = carrier.answer(calls=calls, timeout_s=60)
    unrelated = [f"+3315{(i * 7919) % 10**7:07d}" for i in range(calls)]
    runs = [sip.call(n, hold_ms=300) for n, (_, sip) in zip(unrelated, office, strict=True)]
    for run in runs:
        run.expect_success()
    network.expect_success(timeout=60)

    def rules(line: dict) -> list[str]:
        found = api.get("/v1/fraud-suspicions", params={"line_id": line["id"]}).json()
        return [s["rule"] for s in found]

    wait_until(lambda: rules(dialler_line) == ["automated_dialling"], 20, "dialler detected")
    (suspicion,) = api.get("/v1/fraud-suspicions", params={"line_id": dialler_line["id"]}).json()
    assert suspicion["evidence"]["attempts"] >= settings.dialler_min_attempts
    assert any("sequential" in sign for sign in suspicion["evidence"]["signs"])
    time.sleep(2)  # the office lines' CDRs are in and judged
    assert all(rules(line) == [] for line, _ in office)


def test_a_suspended_line_places_emergency_calls_only_and_every_change_is_audited(
    api, customer, numbered_line, carrier, control_service
):
    line, sip = numbered_line(customer(), max_calls=1)
    response = api.post(f"/v1/lines/{line['id']}/restrictions",
                        json={"level": "suspended", "actor": "noc-jdupont",
                              "reason": "unpaid invoices (art. 19)"})  # fmt: skip
    assert response.status_code == 201, response.text
    restriction = response.json()
    sip.call_refused("0145678901", 403).expect_success()
    network = carrier.answer()
    sip.call("112", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:112@" in invite
    lifted = api.post(f"/v1/restrictions/{restriction['id']}/lift",
                      json={"actor": "noc-mmartin", "reason": "paid"})  # fmt: skip
    assert lifted.status_code == 200
    network = carrier.answer()
    sip.call("0145678901", hold_ms=200).expect_success()
    network.expect_success()
    (record,) = api.get(f"/v1/lines/{line['id']}/restrictions").json()
    assert (record["actor"], record["reason"]) == ("noc-jdupont", "unpaid invoices (art. 19)")
    assert (record["lifted_by"], record["lift_reason"]) == ("noc-mmartin", "paid")
    assert api.post(f"/v1/restrictions/{restriction['id']}/lift",
                    json=ACTOR).status_code == 409  # fmt: skip


@pytest.mark.parametrize("level", ["suspended", "emergency_only", "national_only"])
def test_a_line_created_after_its_customer_was_restricted_is_restricted(
    api, customer, numbered_line, carrier, control_service, wait_until, level
):
    """A customer's restriction binds its future lines too, from their first call."""
    api.post("/v1/destinations", json={"code": "44"})  # listed: only the restriction refuses
    restricted = customer()
    response = api.post(f"/v1/customers/{restricted['id']}/restrictions",
                        json={"level": level, **ACTOR})  # fmt: skip
    assert response.status_code == 201, response.text
    line, sip = numbered_line(restricted)  # created after the restriction

    refused_number = "+442071234567" if level == "national_only" else "0145678901"
    sip.call_refused(refused_number, 403).expect_success()
    cdr = last_cdr(api, line, wait_until, 1)
    assert cdr["disposition"] == "refused_policy", cdr
    assert ("national" if level == "national_only" else level) in cdr["reason"], cdr
    network = carrier.answer()
    sip.call("112", hold_ms=200).expect_success()
    network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:112@" in invite


def test_a_suspended_line_reaches_the_emergency_numbers_arcep_added_later(
    api, customer, numbered_line, carrier, control_service, wait_until
):
    """116117 (2016) and 197 (2015) are emergency numbers like 112: out to the trunk as
    dialled, whatever the line's restrictions, and marked in the CDR."""
    line, sip = numbered_line(customer())
    response = api.post(f"/v1/lines/{line['id']}/restrictions",
                        json={"level": "suspended", **ACTOR})  # fmt: skip
    assert response.status_code == 201, response.text
    for number in ("116117", "197"):
        network = carrier.answer()
        sip.call(number, hold_ms=200).expect_success()
        network.expect_success()
        (invite,) = received_invites(network)
        assert f"INVITE sip:{number}@" in invite
    last_cdr(api, line, wait_until, 2)
    cdrs = api.get("/v1/cdrs", params={"line_id": line["id"]}).json()["items"]
    assert [(c["callee"], c["disposition"], c["destination"]) for c in cdrs] == [
        ("116117", "answered", "emergency"),
        ("197", "answered", "emergency"),
    ]


def test_emergency_calls_are_never_refused_by_the_call_limit(
    api, customer, numbered_line, carrier, control_service, settings, wait_until
):
    _, sip = numbered_line(customer(), max_calls=1)
    _, callee = numbered_line(customer(), max_calls=5)
    port = free_udp_port()
    callee.register(port).expect_success()
    device = callee.answer(port, ring_ms=100)
    held = sip.call(callee.username, hold_ms=4000)
    time.sleep(1.5)
    sip.call_refused(callee.username, 486).expect_success()  # at its limit of 1
    network = carrier.answer()
    sip.call("112", hold_ms=200).expect_success()  # ... but 112 goes through
    network.expect_success()
    held.expect_success()
    device.expect_success()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        # Not a country code: the schema's pattern says so (422), "044" is not "44".
        ("post", "/v1/destinations", {"code": "999"}, 422, "code"),
        ("post", "/v1/destinations", {"code": "abc"}, 422, "code"),
        ("post", "/v1/destinations", {"code": "044"}, 422, "code"),
        ("post", "/v1/destinations/44/suspend", {"actor": "x"}, 422, "reason"),
        ("post", "/v1/destinations/998/suspend", ACTOR, 404, "code"),
        ("post", "/v1/destinations/nope/suspend", ACTOR, 422, "code"),
        ("post", "/v1/lines/00000000-0000-0000-0000-000000000000/restrictions",
         {"level": "suspended", **ACTOR}, 404, "line_id"),
        ("post", "/v1/customers/00000000-0000-0000-0000-000000000000/restrictions",
         {"level": "suspended", **ACTOR}, 404, "customer_id"),
        ("post", "/v1/restrictions/00000000-0000-0000-0000-000000000000/lift", ACTOR, 404,
         "restriction_id"),
    ],
)  # fmt: skip
def test_bad_policy_requests(api: httpx.Client, method, path, body, status, field):
    response = getattr(api, method)(path, json=body)
    assert response.status_code == status, response.text
    assert field in [e["loc"][-1] for e in response.json()["detail"]]


def test_bad_restriction_level(api: httpx.Client, customer, numbered_line):
    line, _ = numbered_line(customer())
    response = api.post(f"/v1/lines/{line['id']}/restrictions",
                        json={"level": "banned", **ACTOR})  # fmt: skip
    assert response.status_code == 422
    assert ["body", "level"] in [e["loc"] for e in response.json()["detail"]]
