"""The database is the source of truth, which Asterisk reads itself (docs/provisioning-realtime.md):
what is left to reconcile is its caches and strays."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
import uuid

import httpx
import pytest
from helpers import ari_object, provisioned_keys, put_ari_object, sql
from sip_agent import SipEndpoint, free_udp_port

from centrex.asterisk.ami import AmiClient
from centrex.asterisk.errors import AsteriskUnavailable
from centrex.config import Settings
from centrex.db.session import make_engine, make_sessionmaker
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.processes import DAEMON_READY
from centrex.services.provisioning import AsteriskProjector
from centrex.services.reconcile import reconcile_lines

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "Reconciled"}).json()


def test_lines_created_and_deleted_while_asterisk_is_down(
    api: httpx.Client, customer, asterisk: AsteriskSandbox, settings: Settings, wait_until
):
    """Asterisk reads lines from the database: one created while it is away needs nothing from
    anybody; one deleted meanwhile is pending until its cached copy is known gone."""
    asterisk.stop()
    try:
        response = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "late"})
        assert response.status_code == 201, response.text
        line = response.json()
        assert (line["sync_state"], line["sync_error"]) == ("synced", None)
        deleted = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "x"}).json()
        # Deleting while Asterisk is away: accepted, and finished by the reconciler.
        assert api.delete(f"/v1/lines/{deleted['id']}").status_code == 202
        assert sql(settings.database_url_required,
                   "SELECT sync_state FROM lines WHERE id = $1", uuid.UUID(deleted["id"]),
                   )[0]["sync_state"] == "pending"  # fmt: skip
    finally:
        asterisk.start()
    user = line["sip_username"]
    assert ari_object(settings, "endpoint", user) is not None
    device = SipEndpoint(user, line["sip_password"], f"127.0.0.1:{settings.sip_port}")
    device.register(free_udp_port()).expect_success()
    wait_until(
        lambda: sql(settings.database_url_required,
                    "SELECT sync_state FROM lines WHERE id = $1", uuid.UUID(deleted["id"]),
                    )[0]["sync_state"] == "synced",
        30,
        "the reconciler to finish the deletion",
    )  # fmt: skip
    assert ari_object(settings, "endpoint", deleted["sip_username"]) is None


def test_objects_written_into_astdb_never_override_the_database_and_are_removed(
    api: httpx.Client, customer, asterisk: AsteriskSandbox, settings: Settings, wait_until
):
    """astdb is sorcery's last wizard (objects written over ARI by hand, or pushed before
    migration 0023): the database's row wins, and the reconciler removes them."""
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "drift"}).json()
    user = line["sip_username"]
    # A copy from before NAT support (docs/sip-edge.md), as an old centrex pushed it.
    old = '{"context":"centrex-lines","rewrite_contact":"no","rtp_symmetric":"no"}'
    asterisk.cli(f"database put centrex/endpoint {user} {old}")
    # ... and a stray endpoint that the database never knew.
    put_ari_object(settings, "endpoint", "strayendpoint", {"context": "centrex-lines"})
    assert ari_object(settings, "endpoint", "strayendpoint") is not None
    endpoint = ari_object(settings, "endpoint", user)
    assert (endpoint["rewrite_contact"], endpoint["rtp_symmetric"]) == ("true", "true")
    # Changing a line's objects over ARI changes nothing: Asterisk cannot write the views.
    with pytest.raises(httpx.HTTPStatusError):
        put_ari_object(settings, "aor", user, {"max_contacts": "5", "remove_existing": "no"})
    assert ari_object(settings, "aor", user)["max_contacts"] == "1"
    wait_until(lambda: provisioned_keys(asterisk) == set(), 15, "the reconciler to remove strays")
    assert ari_object(settings, "endpoint", "strayendpoint") is None
    assert ari_object(settings, "endpoint", user)["rewrite_contact"] == "true"


async def test_reconciler_is_quiet_when_nothing_changed(
    api: httpx.Client, customer, settings: Settings
):
    """A pass reads only pending lines, trunks and strays: with nothing changed, it does
    nothing, however many lines there are."""
    for label in ("quiet-1", "quiet-2"):
        body = {"customer_id": customer["id"], "label": label}
        await asyncio.to_thread(api.post, "/v1/lines", json=body)
    trunk = {"name": "quiet", "host": "127.0.0.3", "username": "u", "password": "p"}
    trunk_id = (await asyncio.to_thread(api.post, "/v1/trunks", json=trunk)).json()["id"]
    engine = make_engine(settings.database_url_required)
    ami = AmiClient.from_settings(settings)
    ami.start()
    try:
        await ami.wait_connected(10)
        projector = AsteriskProjector.from_settings(settings)
        first = await reconcile_lines(make_sessionmaker(engine), projector, ami)
        second = await reconcile_lines(
            make_sessionmaker(engine), projector, ami, trunks_seen=first.trunks
        )
    finally:
        ami.close()
        await engine.dispose()
    await asyncio.to_thread(api.delete, f"/v1/trunks/{trunk_id}")
    assert ("quiet", "127.0.0.3", 5060, "u", "p") in first.trunks
    assert (second.expired, second.deleted, second.failed) == (0, 0, 0), second


async def test_an_answer_cut_by_an_asterisk_crash_fails_at_once(
    asterisk: AsteriskSandbox, settings: Settings, control_service, wait_until
):
    """An AMI answer that was streaming when Asterisk died is lost with the connection; panoramisk
    then forgets the action without resolving it. Whoever awaited it (the reconciler reading
    astdb, allowed minutes for a big platform) must get AsteriskUnavailable at once, not hang
    through the restart and miss it."""
    family = "centrextest-big"
    asterisk.stop()
    with sqlite3.connect(asterisk.astdb_file) as db:  # 60,000 keys: ~1 s of DBGetTree answer
        db.executemany(
            "INSERT OR REPLACE INTO astdb (key, value) VALUES (?, ?)",
            ((f"/{family}/key{i:06d}", "x" * 40) for i in range(60_000)),
        )
    owner = asterisk._run_as()
    if owner is not None:
        os.chown(asterisk.astdb_file, *owner)
    asterisk.start()
    ami = AmiClient.from_settings(settings)
    ami.start()
    try:
        await ami.wait_connected(10)
        reading = asyncio.create_task(
            ami.action({"Action": "DBGetTree", "Family": family}, as_list=True, within_s=300)
        )

        def streaming() -> bool:
            pending = ami._manager.protocol.responses.values()
            return any(len(action.responses) > 10 for action in pending)

        for _ in range(200):
            if streaming():
                break
            await asyncio.sleep(0.005)
        assert streaming(), "the answer should be streaming"
        os.kill(asterisk.status().pid, signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(AsteriskUnavailable, match="connection lost"):
            await asyncio.wait_for(reading, 10)
        assert time.monotonic() - started < 3
    finally:
        ami.close()
        if asterisk.is_running():  # the test failed before the crash
            await asyncio.to_thread(asterisk.stop)
        registrations = control_service.log_text().count(DAEMON_READY)  # none while it is dead
        await asyncio.to_thread(asterisk.start)
        await asyncio.to_thread(asterisk.cli, f"database deltree {family}")
        # Later tests share this Asterisk: leave it with the daemon back in charge of calls.
        await asyncio.to_thread(
            wait_until,
            lambda: control_service.log_text().count(DAEMON_READY) > registrations,
            30,
            "the daemon back",
        )
