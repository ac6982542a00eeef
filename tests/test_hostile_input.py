"""Issue 11 (hostile lines): what a caller controls (the dialled string, the caller ID) is
harmless wherever it is written: Asterisk's CEL journal, the CDRs, the daemon's log, Asterisk's
log, the CSV export. Real Asterisk, sipp as the devices and the carrier, real PostgreSQL.

Asterisk unescapes the Request-URI's user part: ``%0D%0A`` there is a real CR LF in the
dialled extension, and so in anything that writes it as it is."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import secrets
from urllib.parse import quote

import httpx
import pytest
from helpers import sql
from sip_agent import SipEndpoint, _scenario, free_udp_port, run_sipp

from centrex.cdr.journal import LIVE, Journal, Position
from centrex.core.cdr import CelEvent, parse_line
from centrex.core.routing import endpoint_of_channel

pytestmark = pytest.mark.integration

# What a line dials that is no number and no line: 484 Address Incomplete.
NO_ROUTE = 484


def in_uri(raw: bytes) -> str:
    """``raw`` as a Request-URI user part: every byte escaped, as a device may send it."""
    return quote(raw, safe="")


def dialled_as_recorded(raw: bytes) -> str:
    """What a CDR's dialled_number holds of a dialled string: decoded (a byte that is not UTF-8
    becomes U+FFFD), cut to the column's width."""
    return raw.decode("utf-8", "replace")[:64]


@pytest.fixture(scope="module")
def customers(api: httpx.Client) -> tuple[dict, dict]:
    attacker = api.post("/v1/customers", json={"name": "Hostile"}).json()
    victim = api.post("/v1/customers", json={"name": "Innocent"}).json()
    return attacker, victim


@pytest.fixture
def line(api: httpx.Client, settings):
    def make(customer: dict, **fields: object) -> tuple[dict, SipEndpoint]:
        body = {"customer_id": customer["id"], "label": "hostile", **fields}
        created = api.post("/v1/lines", json=body).json()
        server = f"{settings.asterisk_host}:{settings.sip_port}"
        return created, SipEndpoint(created["sip_username"], created["sip_password"], server)

    return make


def cdrs_of(api: httpx.Client, line: dict, count: int, wait_until) -> list[dict]:
    """The line's CDRs once there are ``count`` of them."""

    def fetch() -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": line["id"], "limit": 1000}).json()["items"]

    wait_until(lambda: len(fetch()) >= count, 20, f"{count} CDRs for the line")
    return fetch()


class JournalWatch:
    """The journal's records appended from now on, read independently of the shipper."""

    def __init__(self, path) -> None:
        self.journal = Journal(path)
        self.start = Position(LIVE, self.journal.live_size())

    def lines(self) -> list[str]:
        return [text for _, text in self.journal.read(self.start)[0]]

    def events(self) -> list[CelEvent]:
        """The records, whatever a line that is none says (read as the shipper reads them)."""
        out = []
        for line in self.lines():
            with contextlib.suppress(ValueError, StopIteration):
                out.append(parse_line(line))
        return out

    def records_of(self, linkedid: str) -> list[str]:
        return [e.event for e in self.events() if e.linkedid == linkedid]

    def ended_calls_of(self, username: str) -> int:
        return sum(
            e.event == "LINKEDID_END" and endpoint_of_channel(e.channel) == username
            for e in self.events()
        )


def test_a_dialled_string_cannot_forge_a_cdr_on_another_line(
    api, customers, line, asterisk, control_service, wait_until, settings
):
    """Four calls, each dialling ``1 CR LF <a short CSV row> CR LF``: under a journal written
    as it came, the four rows were a whole answered call of 60 s billed to another customer."""
    attacker, victim = customers
    caller, alice = line(attacker)
    target, bob = line(victim)
    watch = JournalWatch(asterisk.cel_journal)
    forged = "f" + secrets.token_hex(3)  # the forged call's linked id
    channel = f"PJSIP/{bob.username}-1"
    rows = [
        f"CHAN_START,1.7e9,{forged},{forged},{channel},2,c,,,",
        f"ANSWER,1.7e9,{forged},{forged},{channel},2,c,,,",
        f"HANGUP,1700000060,{forged},{forged},{channel},2,c,,,",
        f"LINKEDID_END,1700000060,{forged},{forged},{channel},2,c,,,",
    ]
    dialled = [f"1\r\n{row}\r\n".encode() for row in rows]
    for raw in dialled:
        alice.call_refused(in_uri(raw), NO_ROUTE).expect_success()

    def cdrs(of: dict) -> list[dict]:
        return api.get("/v1/cdrs", params={"line_id": of["id"]}).json()["items"]

    wait_until(lambda: len(cdrs(caller)) >= 4 or cdrs(target), 20, "the calls' CDRs")
    assert cdrs(target) == []
    records = cdrs_of(api, caller, 4, wait_until)
    assert sorted(r["dialled_number"] for r in records) == sorted(map(dialled_as_recorded, dialled))
    assert all(r["disposition"] == "failed" and r["billed_s"] == 0 for r in records), records
    assert sql(settings.database_url, "SELECT 1 FROM cdrs WHERE linkedid = $1", forged) == []
    # Each call left its own three records in the journal, and nothing else did.
    for r in records:
        assert watch.records_of(r["linkedid"]) == ["CHAN_START", "HANGUP", "LINKEDID_END"]
    assert len(watch.lines()) == 3 * len(records)


def test_a_dialled_string_cannot_end_a_call_the_daemon_counts(
    api, customers, line, asterisk, control_service, wait_until
):
    """A forged HANGUP of one of the line's own calls would have the daemon stop counting it:
    the line at its limit of 2 could then place a third call."""
    attacker, _ = customers
    caller, alice = line(attacker, max_calls=2)
    _, bob = line(attacker)
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, calls=2, ring_ms=100, timeout_s=60)
    held = [alice.call(bob.username, hold_ms=20_000, timeout_s=60) for _ in range(2)]
    watch = JournalWatch(asterisk.cel_journal)

    def calls() -> list[dict]:
        return api.get(f"/v1/lines/{caller['id']}/calls").json()

    wait_until(lambda: len(calls()) == 2 and all(c["answered_at"] for c in calls()), 15, "2 calls")
    victim_channel = calls()[0]["channel_id"]
    forgery = f"1\r\nHANGUP,1.7e9,{victim_channel},x,c,,,,,\r\n".encode()
    alice.call_refused(in_uri(forgery), NO_ROUTE).expect_success()
    # Once the journal has the forging call's end, the daemon has read its records (it reads
    # the journal every 20 ms, in order, and the next call takes longer than that to place).
    wait_until(lambda: watch.ended_calls_of(alice.username) == 1, 10, "the forging call's end")
    assert len(calls()) == 2
    alice.call_refused(bob.username, 486).expect_success()
    for run in [*held, device]:
        run.expect_success()


# --- the rest of what a caller controls ------------------------------------------------------
# CR, LF, quotes, commas, parentheses, dialplan syntax, other line breaks, 80+ bytes. (Not a
# byte that is not UTF-8: Asterisk cannot put the channel in ARI's JSON, so the daemon never
# hears of the call; Asterisk ends it after the Stasis wait: tests/test_faults.py.)
HOSTILE_DIALLED = [
    b'1\r\n"HANGUP","1","x","x"\r\n',
    b"1,2;\"3\"'4'(5)${EXTEN}$[1+1]{6}\\7",
    b"1\x1b[31m\x7f\x0b\x0c\x1c\xc2\x85\xe2\x80\xa8\x00tail",  # NUL: Asterisk stops there
    b'1=HYPERLINK("http://evil")',
    b"1" + b"x\r\n" * 30,
]


TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.mark.parametrize("raw", HOSTILE_DIALLED, ids=lambda r: repr(r)[:20])
def test_a_hostile_dialled_string_is_recorded_as_sent_and_harms_nothing(
    api, customers, line, asterisk, control_service, wait_until, raw
):
    attacker, _ = customers
    caller, alice = line(attacker)
    watch = JournalWatch(asterisk.cel_journal)
    log_from = len(control_service.log_text())
    alice.call_refused(in_uri(raw), NO_ROUTE).expect_success()

    (cdr,) = cdrs_of(api, caller, 1, wait_until)
    expected = dialled_as_recorded(raw).replace("\x00", "")
    # Asterisk keeps up to 79 bytes of an extension, and stops at a NUL.
    assert expected.startswith(cdr["dialled_number"]) and cdr["dialled_number"], cdr
    assert (cdr["disposition"], cdr["sip_code"]) == ("failed", NO_ROUTE)
    assert watch.records_of(cdr["linkedid"]) == ["CHAN_START", "HANGUP", "LINKEDID_END"]
    assert len(watch.lines()) == 3
    # The daemon's log: one line per record, none started by what was dialled.
    wait_until(lambda: cdr["linkedid"] in control_service.log_text()[log_from:], 10, "logged")
    lines = control_service.log_text()[log_from:].splitlines()
    assert all(TIMESTAMPED.match(ln) for ln in lines), lines


def test_a_hostile_caller_id_from_the_carrier_is_harmless(
    api, customers, carrier, asterisk, control_service, wait_until
):
    """The carrier's From (display name and user) is the caller ID of an inbound call; here it
    dials a number nobody holds, so the CDR keeps the caller number as Asterisk read it."""
    watch = JournalWatch(asterisk.cel_journal)
    number = "+33233999" + f"{secrets.randbelow(1000):03d}"
    caller_user = in_uri(b"=1+2\r\nHANGUP,1,x,x,c,,,,,\r\n\"',()" + b"9" * 70)
    run = run_sipp(
        _scenario("uac_noauth_named_refused.xml.tmpl", code="404"),
        carrier.server, service=number, local_ip=carrier.ip,
        keys={"caller": caller_user, "display": "=cmd|' /C calc'!A0 \\\" , é"},
    )  # fmt: skip
    run.expect_success()

    def cdr() -> list[dict]:
        return api.get("/v1/cdrs", params={"number": number}).json()["items"]

    wait_until(cdr, 20, "the inbound call's CDR")
    (record,) = cdr()
    assert watch.records_of(record["linkedid"]) == ["CHAN_START", "HANGUP", "LINKEDID_END"]
    assert len(watch.lines()) == 3
    export = api.get("/v1/cdrs.csv", params={"number": number})
    (row,) = list(csv.DictReader(io.StringIO(export.text)))
    assert all(not v.startswith(("=", "+", "-", "@", "\t", "\r")) or re.fullmatch(r"\+?[0-9]+", v)
               for v in row.values()), row  # fmt: skip
    assert row["callee"] == number


def test_the_csv_export_neutralises_formulas_and_keeps_numbers(api, customers, line, settings):
    """Cells a spreadsheet would run as a formula start with ``'``; E.164 numbers stay numbers."""
    attacker, _ = customers
    caller, _ = line(attacker)
    linkedid = "csv-" + secrets.token_hex(4)
    sql(
        settings.database_url,
        """INSERT INTO cdrs (id, node, linkedid, customer_id, caller_line_id, direction, caller,
                             callee, dialled_number, start_at, end_at, duration_ms, billed_s,
                             disposition, sip_code)
           VALUES (gen_random_uuid(), 'csv', $1, $2, $3, 'outbound', '+33123456789',
                   '=HYPERLINK("http://evil")', '@SUM(1+1)', now(), now(), 0, 0, 'failed', 404)""",
        linkedid, attacker["id"], caller["id"],
    )  # fmt: skip
    export = api.get("/v1/cdrs.csv", params={"line_id": caller["id"]})
    (row,) = list(csv.DictReader(io.StringIO(export.text)))
    assert row["caller"] == "+33123456789"
    assert row["callee"] == '\'=HYPERLINK("http://evil")'
    assert row["dialled_number"] == "'@SUM(1+1)"
    assert row["sip_code"] == "404"


def test_asterisk_log_gets_no_line_from_what_was_dialled(
    api, customers, line, asterisk, control_service, wait_until
):
    """With the daemon down the dialplan refuses the call and says so in messages.log, naming
    what was dialled."""
    from centrex.sandbox.processes import DAEMON_READY

    attacker, _ = customers
    _, alice = line(attacker)
    before = asterisk.log_file.read_bytes()
    control_service.stop()
    try:
        wait_until(lambda: "centrex" not in asterisk.cli("stasis show apps"), 10, "Stasis app gone")
        alice.call_refused(in_uri(b"1\r\nFORGED line\r\n"), 503).expect_success()
        wait_until(lambda: b"not connected" in asterisk.log_file.read_bytes()[len(before):], 10,
                   "the refusal logged")  # fmt: skip
    finally:
        control_service.start_and_wait(DAEMON_READY)
    added = asterisk.log_file.read_bytes()[len(before) :].decode(errors="replace")
    assert all(ln.startswith("[") for ln in added.splitlines()), added
