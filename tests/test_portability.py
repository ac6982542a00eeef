"""Issue 16: number portability on real parts: PostgreSQL, an API process configured with the
donor simulator (a process of its own, speaking HTTP+JSON), a local SMTP server process
(aiosmtpd), Asterisk and sipp as the carrier."""

from __future__ import annotations

import mailbox
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from helpers import sql
from rtp_capture import UdpCounter
from sip_agent import free_udp_port

from centrex.db.session import make_engine, make_sessionmaker
from centrex.portability.donor import DonorAnswer, DonorRequest, DonorUnavailable
from centrex.portability.donor_http import HttpDonor
from centrex.portability.rules import RIO_ALPHABET, make_rio, rio_error
from centrex.portability.scheduler import PortingLoop
from centrex.sandbox.donor_simulator import READY as DONOR_READY
from centrex.sandbox.postgres import free_port
from centrex.sandbox.processes import API_READY, ServiceProcess

pytestmark = pytest.mark.integration

SLOT_IN_S = 15  # the simulator's fast clock: an accepted port's slot starts this long after


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def smtp_sink(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    """aiosmtpd as a process of its own, writing what it receives into a Maildir."""
    maildir = tmp_path_factory.mktemp("mail") / "inbox"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Mailbox", str(maildir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def listening() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    _wait(listening, 15, "the SMTP server")
    yield port, maildir
    process.terminate()
    process.wait(10)


def messages(maildir: Path) -> list:
    if not (maildir / "new").exists():
        return []
    return list(mailbox.Maildir(maildir, create=False))


@pytest.fixture(scope="module")
def donor(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("donor") / "donor.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "centrex.sandbox.donor_simulator", "--port", str(port),
             "--delay-s", "0.5", "--slot-in-s", str(SLOT_IN_S)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait(lambda: DONOR_READY in log.read_text(), 20, "the donor simulator")
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def port_api(settings, asterisk, donor, smtp_sink, tmp_path_factory) -> Iterator[httpx.Client]:
    """An API process of its own, talking to the donor simulator and the SMTP sink."""
    mine = settings.model_copy(
        update={"api_port": free_port(), "donor_url": donor, "smtp_port": smtp_sink[0]}
    )
    service = ServiceProcess("api", mine, tmp_path_factory.mktemp("port-api"))
    service.start_and_wait(API_READY)
    with httpx.Client(
        base_url=f"http://{mine.api_host}:{mine.api_port}",
        headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
        timeout=15,
    ) as client:
        client.service = service  # type: ignore[attr-defined]
        yield client
    service.stop()


@pytest.fixture(scope="module")
def customer(port_api: httpx.Client) -> dict:
    body = {"name": "Porting", "residence_country": "FR", "email": "it@porting.example"}
    created = port_api.post("/v1/customers", json=body).json()
    response = port_api.patch(f"/v1/customers/{created['id']}", json={"documents_verified": True})
    assert response.status_code == 200, response.text
    # Where replacement numbers come from: no free zone-4 number (the ported numbers' zone),
    # so 09 numbers; geographic blocks are left to the other modules (test_numbers.py counts
    # the free numbers of a zone).
    block = {"first": "0911000000", "last": "0911000199"}
    assert port_api.post("/v1/number-blocks", json=block).is_success
    return response.json()


@pytest.fixture(scope="module")
def line(port_api: httpx.Client, customer: dict) -> dict:
    body = {"customer_id": customer["id"], "label": "reception"}
    response = port_api.post("/v1/lines", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def donor_rio(national: str) -> str:
    """A RIO as the donor (operator 02) would print it for ``national``."""
    return make_rio("02", "F", "K7Q2ZB", national)


def request(api: httpx.Client, customer: dict, line: dict, national: str, **over) -> dict:
    body = {"customer_id": customer["id"], "number": national, "rio": donor_rio(national),
            "holder_name": "Porting SARL", "line_id": line["id"], **over}  # fmt: skip
    response = api.post("/v1/port-ins", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def settled(api: httpx.Client, port: dict, *states: str, timeout: float = 20) -> dict:
    def look():
        found = api.get(f"/v1/port-ins/{port['id']}").json()
        return found if found["status"] in states else None

    return _wait(look, timeout, f"port-in {port['national']} to be {states}")


def replaced(api: httpx.Client, customer: dict, port: dict) -> None:
    assert port["replacement_e164"], port
    number = api.get(f"/v1/numbers/{port['replacement_e164']}").json()
    assert number["customer_id"] == customer["id"] and number["status"] == "assigned"


# --- the RIO of our own numbers ---------------------------------------------------------------
def test_our_numbers_have_a_rio_that_validates(port_api, customer, settings, as_customer):
    body = {"customer_id": customer["id"], "kind": "non_geographic"}
    number = port_api.post("/v1/numbers/allocate", json=body).json()
    response = port_api.get(f"/v1/numbers/{number['national']}/rio")
    assert response.status_code == 200, response.text
    rio = response.json()["rio"]
    assert rio[:3] == settings.rio_operator_code + settings.rio_line_type
    assert rio_error(rio, number["national"]) is None  # the same key algorithm
    assert response.json()["valid_until"] is None
    # The customer reads its own; another customer's number is not there for it.
    own = as_customer(customer["id"])
    assert own.get(f"/v1/numbers/{number['national']}/rio").json()["rio"] == rio
    other = port_api.post("/v1/customers", json={"name": "Other porting"}).json()
    assert as_customer(other["id"]).get(f"/v1/numbers/{number['national']}/rio").status_code == 404
    # Released: the same RIO, for 40 days.
    assert port_api.post(f"/v1/numbers/{number['national']}/release").status_code == 200
    after = port_api.get(f"/v1/numbers/{number['national']}/rio").json()
    assert after["rio"] == rio and after["valid_until"] is not None
    # In the inventory, never assigned (a toll-free block of one nobody here allocates from).
    assert port_api.post("/v1/number-blocks", json={"first": "0805990016", "last": "0805990016"})
    never = port_api.get("/v1/numbers/0805990016/rio")
    assert never.status_code == 404 and never.json()["detail"][0]["loc"] == ["path", "number"]


@pytest.fixture(scope="module")
def as_customer(port_api: httpx.Client):
    clients: list[httpx.Client] = []

    def make(customer_id: str) -> httpx.Client:
        body = {"name": f"t{len(clients)}", "scope": "customer", "customer_id": customer_id}
        token = port_api.post("/v1/tokens", json=body).json()["token"]
        client = httpx.Client(base_url=str(port_api.base_url), timeout=15,
                              headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- ineligibility, each reason, with a replacement number -------------------------------------
def _mutated(national: str) -> str:
    good = donor_rio(national)
    return good[:11] + RIO_ALPHABET[(RIO_ALPHABET.index(good[11]) + 1) % 37]


@pytest.mark.parametrize(
    ("national", "over", "reason"),
    [
        ("0412000010", {"rio": None}, "no_rio"),
        ("0412000011", {"rio": _mutated("0412000011")}, "wrong_rio"),
        ("0412000012", {"rio": make_rio("02", "P", "K7Q2ZB", "0412000012")}, "wrong_rio"),
        ("0612000013", {"rio": make_rio("02", "P", "K7Q2ZB", "0612000013")}, "mobile_number"),
        ("0412000101", {}, "inactive"),  # the simulator's rules: ...01
        ("0412000102", {}, "not_holder"),  # ...02
        ("0412000103", {}, "in_progress"),  # ...03: in progress at the donor
    ],
)
def test_each_ineligibility_reason_is_named_and_a_number_given(
    port_api, customer, line, national, over, reason
):
    port = request(port_api, customer, line, national, **over)
    port = settled(port_api, port, "ineligible", "refused", "accepted")
    assert (port["status"], port["reason"]) == ("ineligible", reason), port
    assert port["detail"]
    replaced(port_api, customer, port)


def test_a_donor_refusal_is_recorded_as_such(port_api, customer, line):
    port = settled(port_api, request(port_api, customer, line, "0412000104"), "refused", "accepted")
    assert (port["status"], port["reason"]) == ("refused", "donor")
    assert port["replacement_e164"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"number": "not a number"}, "number"),
        ({"number": "+44 20 7946 0000"}, "number"),
        ({"requested_date": "2099-01-01"}, "requested_date"),
        ({"holder_name": ""}, "holder_name"),
        ({"rio": "x" * 33}, "rio"),
        ({"line_id": None}, None),  # no destination at all
        ({"extra": 1}, "extra"),
    ],
)
def test_hostile_requests_are_refused_and_change_nothing(
    port_api, customer, line, database_url, body, field
):
    before = sql(database_url, "SELECT count(*) FROM port_ins")[0][0]
    full = {"customer_id": customer["id"], "number": "0412000050", "rio": donor_rio("0412000050"),
            "holder_name": "Porting SARL", "line_id": line["id"], **body}  # fmt: skip
    response = port_api.post("/v1/port-ins", json=full)
    assert 400 <= response.status_code < 500, response.text
    if field:
        assert field in [e["loc"][-1] for e in response.json()["detail"]]
    assert sql(database_url, "SELECT count(*) FROM port_ins")[0][0] == before


# --- one request per number ------------------------------------------------------------------
def test_two_simultaneous_requests_for_one_number_exactly_one_proceeds(port_api, customer, line):
    national = "0412000077"
    barrier = threading.Barrier(2)
    answers: list[dict] = []

    def send() -> None:
        barrier.wait()
        answers.append(request(port_api, customer, line, national))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(a["status"] for a in answers)
    assert statuses == ["ineligible", "requested"], answers
    (loser,) = [a for a in answers if a["status"] == "ineligible"]
    assert loser["reason"] == "in_progress"
    replaced(port_api, customer, loser)
    (winner,) = [a for a in answers if a["status"] == "requested"]
    settled(port_api, winner, "accepted", "active")


# --- the whole way: accepted, emailed, 404 before the slot, ringing the line after ----------
def test_a_port_activates_at_its_slot_with_no_one_awake(
    port_api, customer, line, settings, smtp_sink, carrier, control_service, make_line
):
    _, maildir = smtp_sink
    target, device = make_line(label="ported-to")
    port_ = free_udp_port()
    device.register(port_).expect_success()
    national = "0412000042"
    port = request(port_api, customer, target, national)
    assert port["status"] == "requested" and port["porting_date"]
    port = settled(port_api, port, "accepted")
    assert port["slot_start"] and port["donor_contract_ends_on"] == port["porting_date"]
    slot = datetime.fromisoformat(port["slot_start"])
    # The customer is told the date and slot at once.
    mail = _wait(
        lambda: [m for m in messages(maildir) if national in m["Subject"]], 20, "the slot email"
    )
    text = mail[0].get_payload(decode=True).decode()
    assert port["porting_date"] in text and port["slot_start"][:16] in text.replace(" ", "T")
    assert mail[0]["To"] == customer["email"]
    # Before the slot: not ours yet, the carrier's call is refused.
    carrier.call_refused("+33" + national[1:], 404).expect_success()
    assert datetime.now(UTC) < slot, "the slot came before the check: raise SLOT_IN_S"
    # At the slot, with nobody touching anything: active, and the line rings. The outage is
    # from the slot's start to the moment the number routes (the daemon reads the database on
    # each call): measured by watching the database, not asserted.
    routed = "SELECT count(*) FROM numbers WHERE e164 = $1 AND status = 'assigned'"
    _wait(lambda: sql(settings.database_url, routed, "+33" + national[1:])[0][0], SLOT_IN_S + 20,
          "the number to route")  # fmt: skip
    seen = datetime.now(UTC)
    port = settled(port_api, port, "active", timeout=SLOT_IN_S + 20)
    activated = datetime.fromisoformat(port["activated_at"])
    assert activated >= slot
    outage = (activated - slot).total_seconds()
    print(f"\nport-in {national}: activated {outage:.3f} s after its slot began, routing seen "
          f"from the database {(seen - slot).total_seconds():.3f} s after it")  # fmt: skip
    answering = device.answer(port_)
    carrier.call("+33" + national[1:]).expect_success()
    answering.expect_success()
    # It is the line's main number now: its caller ID outside.
    found = port_api.get(f"/v1/lines/{target['id']}").json()
    assert found["main_number"] == "+33" + national[1:]
    number = port_api.get(f"/v1/numbers/{national}").json()
    assert (number["customer_id"], number["status"]) == (customer["id"], "assigned")
    # Too late to cancel; the API write was audited, the activation was the loop's.
    late = port_api.post(f"/v1/port-ins/{port['id']}/cancel")
    assert late.status_code == 409, late.text
    audit = port_api.get("/v1/audit", params={"object_type": "port_in"}).json()
    assert any(e.get("object_id") == port["id"] for e in audit.get("items", audit)), audit


def test_a_port_can_be_cancelled_before_its_slot(port_api, customer, line):
    port = settled(port_api, request(port_api, customer, line, "0412000055"), "accepted")
    response = port_api.post(f"/v1/port-ins/{port['id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    again = port_api.post(f"/v1/port-ins/{port['id']}/cancel")
    assert again.status_code == 409
    # Cancelled, the number is free for a new request.
    assert request(port_api, customer, line, "0412000055")["status"] == "requested"


# --- 3179 ------------------------------------------------------------------------------------
def test_3179_says_the_line_s_rio_and_emails_it(
    port_api, customer, make_line, smtp_inbox, carrier, control_service
):
    line, phone = make_line(label="asks its RIO")
    body = {"customer_id": customer["id"], "kind": "non_geographic"}
    number = port_api.post("/v1/numbers/allocate", json=body).json()
    response = port_api.patch(f"/v1/lines/{line['id']}", json={"main_number": number["national"]})
    assert response.status_code == 200, response.text
    rio = port_api.get(f"/v1/numbers/{number['national']}/rio").json()["rio"]
    media = free_udp_port()
    with UdpCounter("127.0.0.1", media) as heard:
        phone.call("3179", hold_ms=3000, media_port=media).expect_success()
    assert heard.count > 50, f"{heard.count} RTP packets reached the caller"  # 3 s = 150

    def mail():
        return [m for m in smtp_inbox if m["Subject"] == f"RIO of {number['national']}"]

    (sent,) = _wait(mail, 20, "the RIO email")
    assert sent["To"] == customer["email"]
    assert rio in sent.get_payload() and rio_error(rio, number["national"]) is None
    # A line without a number has no RIO to say; the public network has none to ask for.
    _, bare = make_line(label="no number")
    bare.call_refused("3179", 404).expect_success()
    carrier.call_refused("3179", 404).expect_success()
    assert len(mail()) == 1


# --- the loop's clock ------------------------------------------------------------------------
async def test_the_loop_activates_by_its_own_clock(port_api, customer, line, settings):
    """The portability loop, in this process, on an injected clock: the slot has not come one
    microsecond before its start, and has at its start (the API's own loop, on the real clock,
    would only get there SLOT_IN_S later)."""
    port = settled(port_api, request(port_api, customer, line, "0412000066"), "accepted")
    slot = datetime.fromisoformat(port["slot_start"])
    engine = make_engine(settings.database_url)
    now = [slot - timedelta(microseconds=1)]
    loop = PortingLoop(settings, make_sessionmaker(engine), None, clock=lambda: now[0])
    try:
        await loop.activate_due()
        assert port_api.get(f"/v1/port-ins/{port['id']}").json()["status"] == "accepted"
        now[0] = slot
        await loop.activate_due()
        found = port_api.get(f"/v1/port-ins/{port['id']}").json()
        assert found["status"] == "active"
        assert datetime.fromisoformat(found["activated_at"]) == slot
    finally:
        await engine.dispose()


# --- port-out --------------------------------------------------------------------------------
def port_out_request(api: httpx.Client, national: str, rio: str | None, **more) -> dict:
    body = {"number": national, "rio": rio, "recipient_operator": "02", **more}
    response = api.post("/v1/port-outs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_port_out_takes_the_number_at_its_slot_and_the_line_keeps_working(
    port_api, customer, make_line, carrier, control_service
):
    line, phone = make_line(label="ports out")
    _, colleague = make_line(label="colleague")
    body = {"customer_id": customer["id"], "kind": "non_geographic"}
    number = port_api.post("/v1/numbers/allocate", json=body).json()
    national, e164 = number["national"], number["e164"]
    assert port_api.patch(f"/v1/lines/{line['id']}", json={"main_number": national}).is_success
    rio = port_api.get(f"/v1/numbers/{national}/rio").json()["rio"]
    # Checked the same way as a port-in: the RIO, and the number must be ours.
    wrong = rio[:11] + RIO_ALPHABET[(RIO_ALPHABET.index(rio[11]) + 1) % 37]
    assert port_out_request(port_api, national, wrong)["reason"] == "wrong_rio"
    assert port_out_request(port_api, national, None)["reason"] == "no_rio"
    elsewhere = port_out_request(port_api, "0412999999", donor_rio("0412999999"))
    assert (elsewhere["status"], elsewhere["reason"]) == ("ineligible", "inactive")
    slot = datetime.now(UTC) + timedelta(seconds=12)
    port = port_out_request(port_api, national, rio, slot_start=slot.isoformat())
    assert port["status"] == "accepted" and port["customer_id"] == customer["id"]
    twice = port_out_request(port_api, national, rio, slot_start=slot.isoformat())
    assert (twice["status"], twice["reason"]) == ("ineligible", "in_progress")
    # Before the slot the number still rings the line.
    device_port = free_udp_port()
    phone.register(device_port).expect_success()
    device = phone.answer(device_port)
    carrier.call(e164).expect_success()
    device.expect_success()
    assert datetime.now(UTC) < slot, "the slot came before the check: move it further"
    # At the slot it leaves: 404 from the carrier, no longer the line's caller ID.
    _wait(
        lambda: port_api.get(f"/v1/port-outs/{port['id']}").json()["status"] == "ported",
        40,
        "the port-out",
    )
    carrier.call_refused(e164, 404).expect_success()
    assert port_api.get(f"/v1/lines/{line['id']}").json()["main_number"] is None
    assert port_api.get(f"/v1/numbers/{national}").status_code == 404
    # The line keeps working without it: a colleague reaches it by its extension.
    device = phone.answer(device_port)
    colleague.call(line["extension"]).expect_success()
    device.expect_success()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slot_start": "2026-01-01T09:00:00"}, "slot_start"),  # no time zone
        ({"slot_start": "2000-01-01T09:00:00+00:00"}, "slot_start"),  # past
        ({"slot_start": "2999-01-01T09:00:00+00:00"}, "slot_start"),  # too far
        ({"recipient_operator": "x1"}, "recipient_operator"),
        ({"number": "+1 202 555 0100"}, "number"),
        ({"rio": "R" * 40}, "rio"),
    ],
)
def test_hostile_port_outs_are_refused_and_change_nothing(port_api, database_url, body, field):
    before = sql(database_url, "SELECT count(*) FROM port_outs")[0][0]
    full = {"number": "0412999998", "rio": donor_rio("0412999998"), "recipient_operator": "02",
            **body}  # fmt: skip
    response = port_api.post("/v1/port-outs", json=full)
    assert 400 <= response.status_code < 500, response.text
    assert field in [e["loc"][-1] for e in response.json()["detail"]], response.text
    assert sql(database_url, "SELECT count(*) FROM port_outs")[0][0] == before


# --- the donor adapter -----------------------------------------------------------------------
async def test_the_donor_adapter_speaks_to_the_simulator_and_names_an_absent_donor(donor):
    request = DonorRequest("0412000088", donor_rio("0412000088"), "Porting SARL", date(2027, 1, 5))
    adapter = HttpDonor(donor)
    try:
        reference = await adapter.submit(request)
        answer = await adapter.status(reference)
        assert answer.answer in (DonorAnswer.pending, DonorAnswer.accepted)
        await adapter.cancel(reference)
        assert (await adapter.status(reference)).answer is DonorAnswer.refused
        with pytest.raises(DonorUnavailable):
            await adapter.status("no-such-reference")
    finally:
        await adapter.aclose()
    absent = HttpDonor(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(DonorUnavailable):
            await absent.submit(request)
    finally:
        await absent.aclose()
