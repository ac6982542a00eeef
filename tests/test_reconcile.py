"""The database is the source of truth: Asterisk is brought back to it without API calls."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time

import httpx
import pytest
from helpers import ari_object, delete_ari_object, provisioned_keys, put_ari_object
from sip_agent import SipEndpoint, free_udp_port

from centrex.asterisk.ami import AmiClient
from centrex.asterisk.ari import AriClient
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


def test_line_created_while_asterisk_is_down_reaches_it_when_back(
    api: httpx.Client, customer, asterisk: AsteriskSandbox, settings: Settings, wait_until
):
    asterisk.stop()
    try:
        response = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "late"})
        assert response.status_code == 201, response.text
        line = response.json()
        assert line["sync_state"] == "pending"
        assert "unreachable" in line["sync_error"]
        deleted = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "x"}).json()
        # Deleting while Asterisk is away: accepted, and finished by the reconciler.
        assert api.delete(f"/v1/lines/{deleted['id']}").status_code == 202
    finally:
        asterisk.start()
    user = line["sip_username"]
    wait_until(lambda: ari_object(settings, "endpoint", user) is not None, 30, "the reconciler")
    wait_until(
        lambda: api.get(f"/v1/lines/{line['id']}").json()["sync_state"] == "synced",
        10,
        "sync_state synced",
    )
    assert api.get(f"/v1/lines/{line['id']}").json()["sync_error"] is None
    device = SipEndpoint(user, line["sip_password"], f"127.0.0.1:{settings.sip_port}")
    device.register(free_udp_port()).expect_success()


def test_drift_in_asterisk_is_repaired(api: httpx.Client, customer, settings: Settings, wait_until):
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "drift"}).json()
    user = line["sip_username"]
    # Someone removes the auth by hand, and loosens the one-device rule.
    delete_ari_object(settings, "auth", user)
    put_ari_object(settings, "aor", user, {"max_contacts": "5", "remove_existing": "no"})
    # ... and leaves a stray endpoint that the database never knew.
    put_ari_object(settings, "endpoint", "strayendpoint", {"context": "centrex-lines"})

    def repaired() -> bool:
        aor = ari_object(settings, "aor", user)
        return (
            ari_object(settings, "auth", user) is not None
            and aor is not None
            and aor["max_contacts"] == "1"
            and ari_object(settings, "endpoint", "strayendpoint") is None
        )

    wait_until(repaired, 15, "the reconciler to repair drift")


def test_endpoint_pushed_before_nat_support_is_rewritten(
    api: httpx.Client, customer, settings: Settings, wait_until
):
    """A line pushed before docs/sip-edge.md has Asterisk's defaults: its phone behind NAT would
    be called at the private address of its Contact, and sent media at the one of its SDP."""
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "pre-nat"}).json()
    user = line["sip_username"]
    put_ari_object(settings, "endpoint", user, {"rewrite_contact": "no", "rtp_symmetric": "no"})
    assert ari_object(settings, "endpoint", user)["rewrite_contact"] == "false"

    def rewritten() -> bool:
        endpoint = ari_object(settings, "endpoint", user) or {}
        return (endpoint.get("rewrite_contact"), endpoint.get("rtp_symmetric")) == ("true", "true")

    wait_until(rewritten, 15, "the reconciler to put the NAT fields back")


def test_object_removed_from_astdb_behind_sorcery_is_restored_despite_the_cache(
    api: httpx.Client, customer, asterisk: AsteriskSandbox, settings: Settings, wait_until
):
    """sorcery.conf puts a memory cache in front of astdb. Deleting a key from astdb by hand
    leaves the cached copy, and ARI would *update* that copy, which astdb refuses for a missing
    key: the reconciler then drops that object from the cache and writes it again."""
    line = api.post("/v1/lines", json={"customer_id": customer["id"], "label": "cached"}).json()
    user = line["sip_username"]
    assert ari_object(settings, "auth", user) is not None
    assert user in asterisk.cli("sorcery memory cache dump centrex_auth")  # cached by its PUT
    asterisk.cli(f"database del centrex/auth {user}")
    assert f"/centrex/auth/{user}" not in provisioned_keys(asterisk)
    wait_until(
        lambda: f"/centrex/auth/{user}" in provisioned_keys(asterisk),
        15,
        "the reconciler to write the auth back into astdb",
    )
    device = SipEndpoint(user, line["sip_password"], f"127.0.0.1:{settings.sip_port}")
    device.register(free_udp_port()).expect_success()


async def test_reconciler_is_quiet_when_asterisk_is_in_sync(
    api: httpx.Client, customer, settings: Settings
):
    """Asterisk spells fields its own way; a pass over an in-sync Asterisk must write nothing."""
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
        async with AriClient.from_settings(settings, "api") as ari:
            projector = AsteriskProjector.from_settings(ari, settings)
            await reconcile_lines(make_sessionmaker(engine), projector, ami)
            second = await reconcile_lines(make_sessionmaker(engine), projector, ami)
    finally:
        ami.close()
        await engine.dispose()
    await asyncio.to_thread(api.delete, f"/v1/trunks/{trunk_id}")
    assert (second.put, second.deleted, second.failed) == (0, 0, 0), second


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
