"""Issue 11: the call path fails closed and fast, and loses nothing, when a part freezes or dies.

- PostgreSQL frozen (SIGSTOP, no RST: the worst kind of outage) for 20 s during traffic.
- The daemon frozen while calls wait in Stasis for its decision; a decision taken twice.
- Asterisk killed during 20 calls: their CDRs are still written, the journal still drains.

These freeze or kill shared parts of the test stack and wait until they are whole again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from helpers import crash_asterisk, emergency_route, sql
from sip_agent import SipEndpoint, received_invites, start_calls

from centrex.asterisk.ari import AriClient
from centrex.asterisk.file_tail import FileTail
from centrex.cdr.journal import Journal
from centrex.cdr.journal_path import journal_path as asterisk_journal
from centrex.config import Settings
from centrex.control.call_registry import CallRegistry
from centrex.control.daemon import CallControl
from centrex.db.session import make_engine
from centrex.sandbox.processes import CDR_READY, DAEMON_READY, ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "faults"}).json()


@pytest.fixture
def answering(answering_line) -> tuple[dict, SipEndpoint]:
    return answering_line()


@pytest.fixture
def target(answering) -> SipEndpoint:
    return answering[1]


def server(settings: Settings) -> str:
    return f"{settings.asterisk_host}:{settings.sip_port}"


def calls_of(api: httpx.Client, line: dict) -> list[dict]:
    response = api.get(f"/v1/lines/{line['id']}/calls")
    assert response.status_code == 200, response.text
    return response.json()


def cdrs_of(api: httpx.Client, line: dict) -> list[dict]:
    response = api.get("/v1/cdrs", params={"line_id": line["id"], "limit": 1000})
    assert response.status_code == 200, response.text
    return response.json()["items"]


def one_cdr_per_call(api, line, expected: int, wait_until) -> list[dict]:
    wait_until(lambda: len(cdrs_of(api, line)) >= expected, 60, f"{expected} CDRs")
    time.sleep(2)  # and no more than that arrive
    records = cdrs_of(api, line)
    assert len(records) == expected, records
    assert len({r["linkedid"] for r in records}) == expected, records
    return records


# --- PostgreSQL frozen ---------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_postgres(cluster) -> Iterator[None]:
    """SIGSTOP every process of the cluster: connections stay open, nothing answers."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True)
    pids = [postmaster, *map(int, children.stdout.split())]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_postgres_frozen_new_calls_get_503_fast_and_nothing_leaks(
    api, make_line, target, settings, database, asterisk, control_service, cdr_service, carrier,
    wait_until,
):  # fmt: skip
    if database.cluster is None:
        pytest.skip("DATABASE_URL names a server these tests do not own; cannot freeze it")
    line, caller = make_line(max_calls=10, max_call_duration_s=8)
    held = start_calls(
        "uac_call_until_cut.xml", server(settings), [(caller.username, caller.password)] * 2,
        target.username, timeout_s=60,
    )  # fmt: skip
    wait_until(
        lambda: len([c for c in calls_of(api, line) if c["deadline_at"]]) == 2, 10, "answered"
    )
    wait_until(lambda: emergency_route(asterisk) == "trunk-carrier", 15, "the emergency route")
    refused = 0
    with frozen_postgres(database.cluster):
        frozen_at = time.monotonic()
        # Every new call is refused with 503, at once, while the database says nothing.
        while time.monotonic() - frozen_at < 20:
            caller.call_refused(target.username, 503).expect_success(timeout=10)
            refused += 1
        # Except an emergency call: it goes out through the trunk, undecided.
        network = carrier.answer()
        caller.call("112", hold_ms=200).expect_success()
        network.expect_success()
        (invite,) = received_invites(network)
        assert "INVITE sip:112@" in invite
        # The calls in progress kept their cutoff: cut at 8 s, while the database was frozen.
        held.outcomes(timeout=5)
        durations = held.held_ms()
        assert len(durations) == 2 and all(7900 <= d < 9000 for d in durations), durations
    assert refused >= 5
    # Back: no call left counted, calls flow again, and one CDR for every call.
    wait_until(lambda: calls_of(api, line) == [], 20, "nothing leaked")
    caller.call(target.username, hold_ms=200).expect_success()
    records = one_cdr_per_call(api, line, 2 + refused + 2, wait_until)
    dispositions = sorted(r["disposition"] for r in records)
    assert dispositions == sorted(["cut"] * 2 + ["failed"] * refused + ["answered"] * 2), records
    assert [r["callee"] for r in records if r["destination"] == "emergency"] == ["112"], records
    refusals = [r["duration_ms"] for r in records if r["disposition"] == "failed"]
    print(f"frozen PostgreSQL: {refused} calls refused, INVITE to 503 max {max(refusals)} ms")
    for record in records:
        if record["disposition"] == "failed":
            assert record["sip_code"] == 503, record
            # Refused by the daemon's deadline, not left ringing until Asterisk's Stasis wait
            # gives up: Asterisk's own timestamps.
            deadline_ms = settings.call_path_db_timeout_s * 1000
            assert deadline_ms + 1000 < settings.stasis_wait_s * 1000
            assert record["duration_ms"] < deadline_ms + 1000, record
    assert "database not answering" in control_service.log_text()
    assert "emergency call 112 put through undecided" in control_service.log_text()


def test_emergency_calls_go_out_with_the_daemon_down(
    api, make_line, settings, carrier, asterisk, control_service, wait_until
):
    """Fail closed, except emergency calls: with no daemon to decide, an ordinary call gets 503
    and 112 goes out through the trunk the reconciler keeps in astdb."""
    _, caller = make_line()
    wait_until(lambda: emergency_route(asterisk) == "trunk-carrier", 15, "the emergency route")
    control_service.stop()
    try:
        caller.call_refused("0145678901", 503).expect_success()
        network = carrier.answer()
        caller.call("112", hold_ms=200).expect_success()
        network.expect_success()
        (invite,) = received_invites(network)
        assert "INVITE sip:112@" in invite
    finally:
        control_service.start_and_wait(DAEMON_READY)


# --- the daemon frozen, decisions taken twice ---------------------------------------------------
@contextlib.contextmanager
def frozen(service: ServiceProcess) -> Iterator[None]:
    assert service.process is not None
    os.kill(service.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(service.process.pid, signal.SIGCONT)


def waiting_in_stasis(settings: Settings, username: str) -> list[dict]:
    channels = httpx.get(
        f"{settings.ari_url}/channels",
        auth=(settings.ari_username, settings.ari_password.get_secret_value()),
    ).json()
    return [
        c for c in channels
        if c["name"].startswith(f"PJSIP/{username}-") and c["dialplan"]["app_name"] == "Stasis"
    ]  # fmt: skip


def test_a_call_nobody_decides_is_ended_by_asterisk(
    make_line, target, settings, control_service, wait_until
):
    """The daemon holds the call's StasisStart but never acts on it (frozen; or its connection
    dropped after it admitted the call): Asterisk ends the call with 503 after stasis_wait_s."""
    _, caller = make_line()
    with frozen(control_service):
        run = caller.call_refused(target.username, 503)
        wait_until(lambda: waiting_in_stasis(settings, caller.username), 10, "in Stasis")
        run.expect_success(timeout=settings.stasis_wait_s + 10)
    wait_until(lambda: not waiting_in_stasis(settings, caller.username), 10, "gone")


def test_a_call_admitted_before_a_lost_connection_is_dialled_when_decided_again(
    api, make_line, answering, settings, database_url, control_service, wait_until
):
    """The first decision committed, but never reached Asterisk (the daemon lost its connection
    in between): when the call is decided again it goes through on that first decision, even
    though its own leg has filled its line."""
    target_line, target = answering
    line, caller = make_line(max_calls=1)
    with frozen(control_service):
        run = caller.call(target.username, hold_ms=500)
        wait_until(lambda: waiting_in_stasis(settings, caller.username), 10, "in Stasis")
        (channel,) = waiting_in_stasis(settings, caller.username)
        # The first decision, as the daemon's statement records it: the line is now full.
        sql(
            database_url,
            "SELECT centrex_admit_call($1, $2, $3, 'on-net', $4, $5, $6, $7, 60, now(), NULL,"
            " NULL, false)",
            uuid.uuid4(), settings.node_name, channel["id"], caller.username, target.username,
            uuid.UUID(line["id"]), uuid.UUID(target_line["id"]),
        )  # fmt: skip
    run.expect_success(timeout=20)  # answered, held, hung up: not refused as busy
    wait_until(lambda: calls_of(api, line) == [], 10, "released")
    assert "admitted earlier, still waiting" in control_service.log_text()


# --- Asterisk killed during 20 calls -------------------------------------------------------------
def test_asterisk_killed_during_twenty_calls_every_call_gets_its_cdr(
    api, make_line, target, settings, asterisk, database_url, control_service, cdr_service,
    tmp_path_factory, wait_until,
):  # fmt: skip
    # A shipper that rotates the journal every 4 KiB: the calls' events spread over segments,
    # which must all go once their calls are written.
    cdr_service.stop()
    small = ServiceProcess(
        "cdr", settings.model_copy(update={"cdr_journal_rotate_bytes": 4096}),
        tmp_path_factory.mktemp("cdr-small"),
    )  # fmt: skip
    small.start_and_wait(CDR_READY)
    try:
        line, caller = make_line(max_calls=40)
        batch = start_calls(
            "uac_call_or_busy.xml", server(settings), [(caller.username, caller.password)] * 20,
            target.username, hold_ms=60000, timeout_s=30,
        )  # fmt: skip
        wait_until(
            lambda: len([c for c in calls_of(api, line) if c["answered_at"]]) == 20, 20,
            "20 calls answered",
        )  # fmt: skip
        killed = datetime.now(UTC)
        crash_asterisk(asterisk, control_service, wait_until, batch.runs)
        records = one_cdr_per_call(api, line, 20, wait_until)
        for record in records:
            # Ended at the last thing known of it (its answer): never after the crash.
            assert record["disposition"] == "answered", record
            assert datetime.fromisoformat(record["end_at"]) <= killed, record
            assert "Asterisk stopped" in (record["reason"] or ""), record
        assert "stopped before journalling their end" in small.log_text()
        # The checkpoint moved past them: every rotated segment before it was removed.
        journal = Journal(asterisk.cel_journal)

        def drained() -> bool:
            (row,) = sql(
                database_url, "SELECT journal FROM cdr_checkpoints WHERE node = $1",
                settings.node_name,
            )  # fmt: skip
            at = journal.segment_of(row["journal"])
            return all(segment >= at for segment in journal.rotated_segments())

        wait_until(drained, 20, "segments before the checkpoint removed")
        wait_until(lambda: calls_of(api, line) == [], 15, "lost calls released")
    finally:
        small.stop()
        cdr_service.start_and_wait(CDR_READY)


# --- the sweep against a call that ends while it looks ------------------------------------------
class GatedAri(AriClient):
    """The real ARI client, whose channel listing waits, once fetched, until the test says go:
    the moment the sweep has Asterisk's channels in hand and has not yet acted on them."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(AriClient.from_settings(settings, "control").transport)
        self.listed = asyncio.Event()
        self.go = asyncio.Event()

    async def list_channels(self) -> list[dict]:
        channels = await super().list_channels()
        self.listed.set()
        await self.go.wait()
        return channels


async def test_a_call_that_ends_during_a_sweep_is_not_taken_back(
    api, make_line, answering, settings, database_url, control_service
):
    """The sweep reads the calls, then lists Asterisk's channels; a call that ends in between
    (its CEL hang-up read meanwhile) must stay ended: not put back in memory, its cutoff not
    re-armed, no false cut recorded later."""
    _, target = answering
    line, caller = make_line()
    run = caller.call(target.username, hold_ms=20000)
    deadline = time.monotonic() + 10
    while not (calls := calls_of(api, line)) or not calls[0]["answered_at"]:
        assert time.monotonic() < deadline, "call not answered"
        await asyncio.sleep(0.1)
    (call,) = calls
    node = "sweep-test"  # this in-process daemon's own rows, out of the real daemon's way
    await asyncio.to_thread(
        sql, database_url,
        "UPDATE active_calls SET node = $1 WHERE id = $2", node, uuid.UUID(call["id"]),
    )  # fmt: skip
    engine = make_engine(database_url)
    mine = settings.model_copy(update={"node_name": node})
    registry = CallRegistry(engine, node, 7200, pool_size=2, settings=mine)
    ari = GatedAri(mine)
    control = CallControl(mine, registry, ari, FileTail(asterisk_journal(mine)), ari)
    try:
        sweep = asyncio.create_task(control.sync_with_asterisk())
        await asyncio.wait_for(ari.listed.wait(), 10)
        channel_id = call["channel_id"]
        await control.end_call(channel_id)  # its hang-up, read from the journal meanwhile
        ari.go.set()
        await asyncio.wait_for(sweep, 10)
        assert channel_id not in control.calls
        assert not control.cutoffs.armed(channel_id)
        assert await registry.calls_on_node() == []
    finally:
        control.cutoffs.cancel_all()
        await registry.aclose()
        await ari.aclose()
        await engine.dispose()
        run.process.kill()


def test_a_dialled_string_asterisk_cannot_tell_the_daemon_is_ended_by_asterisk(
    make_line, target, settings, control_service
):
    """A byte that is not UTF-8 in the dialled string: Asterisk cannot put the channel in ARI's
    JSON, so the daemon never hears of the call. The Stasis wait ends it (503), and the next
    call is decided as usual."""
    _, caller = make_line()
    caller.call_refused("1%FF2", 503).expect_success(timeout=settings.stasis_wait_s + 20)
    caller.call(target.username, hold_ms=200).expect_success()
