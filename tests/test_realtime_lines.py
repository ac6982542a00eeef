"""Issue 14: lines served to Asterisk from PostgreSQL (sorcery realtime over res_odbc, views over
centrex's own tables), nothing pushed; real Asterisk, PostgreSQL and sipp.

- A line created through the API registers and calls at the first attempt after the answer; a
  deleted line is refused at the first attempt; a renewed password takes effect at once.
- Asterisk restarted with its astdb wiped: every line registers and calls again, nothing pushed.
- PostgreSQL frozen for 30 s: registered phones stay registered (and register again), calls are
  decided by the daemon as it does without its database; nothing lost afterwards.
- A second Asterisk on the same database serves the same lines, with no push; an API told of
  both nodes expires a changed line from both caches.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import API_TOKEN
from helpers import ari_object, emergency_route, provisioned_keys, sql
from sip_agent import SipEndpoint, free_udp_port, received_invites
from test_faults import frozen_postgres
from test_sandbox_asterisk import started_sandbox

from centrex.asterisk.pjsip_objects import LineSpec, line_objects
from centrex.asterisk.realtime import ODBC_CLASS
from centrex.config import Settings
from centrex.core.sync_plan import same_fields
from centrex.sandbox.asterisk import AsteriskSandbox
from centrex.sandbox.postgres import TEST_ASTERISK_DB_PASSWORD, free_port
from centrex.sandbox.processes import API_READY, DAEMON_READY, ServiceProcess

pytestmark = pytest.mark.integration

OUTAGE_S = 30
WHO = {"actor": "noc", "reason": "stolen phone"}


@pytest.fixture(scope="module")
def customer(api: httpx.Client) -> dict:
    return api.post("/v1/customers", json={"name": "realtime"}).json()


def registered(asterisk: AsteriskSandbox, username: str) -> bool:
    return f"{username}/sip:{username}@" in asterisk.cli(f"pjsip show aor {username}")


def test_a_created_line_registers_and_calls_at_the_first_attempt_with_nothing_pushed(
    make_line, asterisk: AsteriskSandbox, settings: Settings, control_service
):
    _, alice = make_line("alice")
    line, bob = make_line("bob")
    # No retry, no wait: the first REGISTER after the API's answer is accepted.
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port)
    alice.call(bob.username, hold_ms=200).expect_success()
    device.expect_success()
    # Nothing was written into Asterisk: what it serves comes from the database's views, and is
    # what centrex.asterisk.pjsip_objects describes.
    assert provisioned_keys(asterisk) == set()
    query = "SELECT sip_ha1, sip_realm FROM lines WHERE sip_username = $1"
    rows = sql(settings.database_url_required, query, bob.username)
    spec = LineSpec(
        username=bob.username, ha1=rows[0]["sip_ha1"], realm=rows[0]["sip_realm"],
        media_address=settings.rtp_address, media_encryption=line["media_encryption"],
        qualify_frequency_s=settings.sip_qualify_frequency_s,
    )  # fmt: skip
    for obj in line_objects(spec):
        served = ari_object(settings, obj.type, obj.id)
        assert served is not None and same_fields(obj.fields, served), (obj, served)


def test_a_deleted_line_is_refused_at_the_first_attempt(
    api: httpx.Client, make_line, asterisk: AsteriskSandbox, control_service
):
    _, alice = make_line("alice")
    line, bob = make_line("bob")
    bob.register(free_udp_port()).expect_success()  # cached now: endpoint, auth, aor
    assert api.delete(f"/v1/lines/{line['id']}").status_code == 204
    bob.register_refused(free_udp_port()).expect_success()
    bob.call_refused(alice.username, 401).expect_success()


def test_a_renewed_password_takes_effect_at_once(
    api: httpx.Client, make_line, asterisk: AsteriskSandbox
):
    line, bob = make_line("bob")
    bob.register(free_udp_port()).expect_success()  # the old hash is cached now
    response = api.post(f"/v1/lines/{line['id']}/credentials", json=WHO)
    assert response.status_code == 200, response.text
    assert not registered(asterisk, bob.username)  # the old device's contact is gone
    bob.register_refused(free_udp_port()).expect_success()
    renewed = SipEndpoint(bob.username, response.json()["sip_password"], bob.server)
    renewed.register(free_udp_port()).expect_success()


def test_asterisk_restarted_with_its_astdb_wiped_serves_every_line_with_nothing_pushed(
    make_line, asterisk: AsteriskSandbox, control_service, wait_until
):
    lines = [make_line(f"line{i}")[1] for i in range(3)]
    _, callee = make_line("callee")
    for endpoint in lines:
        endpoint.register(free_udp_port()).expect_success()
    ready = control_service.log_text().count(DAEMON_READY)
    asterisk.wipe_provisioned_state()  # stopped, astdb deleted, started
    wait_until(lambda: control_service.log_text().count(DAEMON_READY) > ready, 30, "reconnect")
    assert provisioned_keys(asterisk) == set()
    for endpoint in lines:
        assert not registered(asterisk, endpoint.username)  # its registrations went with astdb
        endpoint.register(free_udp_port()).expect_success()
    port = free_udp_port()
    callee.register(port).expect_success()
    device = callee.answer(port)
    lines[0].call(callee.username, hold_ms=200).expect_success()
    device.expect_success()
    assert provisioned_keys(asterisk) == set()  # and the reconciler pushed nothing either


def test_postgres_frozen_30s_registered_phones_stay_and_calls_are_decided_by_the_daemon(
    api: httpx.Client, make_line, asterisk: AsteriskSandbox, database, control_service,
    wait_until,
):  # fmt: skip
    if database.cluster is None:
        pytest.skip("DATABASE_URL names a server these tests do not own; cannot freeze it")
    line, alice = make_line("alice")
    _, bob = make_line("bob")
    bob_port = free_udp_port()
    bob.register(bob_port).expect_success()
    alice.register(free_udp_port()).expect_success()
    refused = 0
    with frozen_postgres(database.cluster):
        frozen_at = time.monotonic()
        while time.monotonic() - frozen_at < OUTAGE_S:
            # Registered phones refresh their registration: still accepted (the cached auth),
            # and they stay registered.
            bob.register(bob_port).expect_success(timeout=10)
            assert registered(asterisk, bob.username) and registered(asterisk, alice.username)
            # Calls are the daemon's to decide: without its database it refuses them (503,
            # tests/test_faults.py); Asterisk still knows the caller to put the call to it.
            alice.call_refused(bob.username, 503).expect_success(timeout=10)
            refused += 1
    assert refused >= 2
    # Back: nothing lost. Both are still registered, the line is unchanged, calls go through.
    assert registered(asterisk, bob.username) and registered(asterisk, alice.username)
    assert api.get(f"/v1/lines/{line['id']}").json()["sip_username"] == alice.username
    device = bob.answer(bob_port)
    alice.call(bob.username, hold_ms=200).expect_success()
    device.expect_success()


def test_a_new_line_registers_at_the_first_attempt_after_a_postgres_restart(
    make_line, asterisk: AsteriskSandbox, database, control_service
):
    """Asterisk's pooled ODBC connections all die with PostgreSQL. psqlODBC reports a connection
    dead only after a query failed on it, so res_odbc hands them out again (its sanitysql never
    runs): each used to fail one lookup, and a new line's first REGISTER was refused. The
    fallback class (fresh connections, extconfig.conf priority 2) answers that lookup instead."""
    if database.cluster is None:
        pytest.skip("DATABASE_URL names a server these tests do not own; cannot restart it")
    # Fill the pool: new lines registering at once are lookups on every pooled connection.
    phones = [make_line(f"before-{i}")[1] for i in range(12)]
    for run in [phone.register(free_udp_port()) for phone in phones]:
        run.expect_success()
    pooled = re.search(r"active connections: (\d+)", asterisk.cli(f"odbc show {ODBC_CLASS}"))
    assert pooled and int(pooled.group(1)) >= 3, asterisk.cli(f"odbc show {ODBC_CLASS}")
    database.cluster.stop()
    database.cluster.start()
    for label in ("after-1", "after-2", "after-3"):
        _, phone = make_line(label)
        # No retry: every first REGISTER after the restart is accepted.
        phone.register(free_udp_port()).expect_success()


@pytest.fixture(scope="module")
def second_asterisk(
    tmp_path_factory: pytest.TempPathFactory, settings: Settings
) -> Iterator[AsteriskSandbox]:
    """Another Asterisk node, on ports of its own, reading the same database (and taking the
    same AMI user, for the API to expire its cache)."""
    with started_sandbox(
        tmp_path_factory, "second", database_url=settings.database_url,
        asterisk_db_password=TEST_ASTERISK_DB_PASSWORD, ami_secret=settings.ami_secret,
    ) as sandbox:  # fmt: skip
        yield sandbox


@pytest.fixture(scope="module")
def api_of_two_nodes(
    settings: Settings, second_asterisk: AsteriskSandbox, asterisk: AsteriskSandbox,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:  # fmt: skip
    """An API told of both nodes (CENTREX_ASTERISK_CACHE_NODES)."""
    two = settings.model_copy(
        update={
            "api_port": free_port(),
            "asterisk_cache_nodes": [f"{second_asterisk.ports.host}:{second_asterisk.ports.ami}"],
        }
    )
    service = ServiceProcess("api", two, tmp_path_factory.mktemp("api-two-nodes"))
    service.start_and_wait(API_READY)
    try:
        with httpx.Client(
            base_url=f"http://{two.api_host}:{two.api_port}",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=15,
        ) as client:
            yield client
    finally:
        service.stop()


def test_a_second_asterisk_serves_the_same_lines_with_no_push(
    make_line, second_asterisk: AsteriskSandbox
):
    _, bob = make_line("bob")
    server = f"{second_asterisk.ports.host}:{second_asterisk.ports.sip}"
    on_second = SipEndpoint(bob.username, bob.password, server)
    on_second.register(free_udp_port()).expect_success()
    assert registered(second_asterisk, bob.username)
    SipEndpoint(bob.username, "not-the-password", server).register_refused(
        free_udp_port()
    ).expect_success()
    assert "centrex" not in second_asterisk.cli("database show centrex")


def test_changes_reach_every_node_s_cache_at_once(
    api_of_two_nodes: httpx.Client, customer, second_asterisk: AsteriskSandbox
):
    """Each node caches what it read: the API expires a changed line on every node it is told
    of, and removes the old devices each node holds after a renewal."""
    server = f"{second_asterisk.ports.host}:{second_asterisk.ports.sip}"
    made = []
    for label in ("renewed", "deleted"):
        body = {"customer_id": customer["id"], "label": label}
        line = api_of_two_nodes.post("/v1/lines", json=body).json()
        device = SipEndpoint(line["sip_username"], line["sip_password"], server)
        device.register(free_udp_port()).expect_success()  # cached on the second node now
        made.append((line, device))
    (renewed, old_device), (deleted, gone) = made
    response = api_of_two_nodes.post(f"/v1/lines/{renewed['id']}/credentials", json=WHO)
    assert response.status_code == 200 and response.json()["sync_state"] == "synced"
    assert not registered(second_asterisk, old_device.username)
    old_device.register_refused(free_udp_port()).expect_success()
    assert api_of_two_nodes.delete(f"/v1/lines/{deleted['id']}").status_code == 204
    gone.register_refused(free_udp_port()).expect_success()


@pytest.mark.parametrize("view", ["ps_endpoints", "ps_auths", "ps_aors"])
def test_a_lookup_by_id_is_an_index_lookup_whatever_the_number_of_lines(
    settings: Settings, view: str
):
    """What Asterisk asks at each cache miss: one line, found through lines' unique index, not
    by reading every line (the branches of the views' UNION ALL must agree on column types)."""
    plan = sql(settings.database_url_required, f"EXPLAIN SELECT * FROM {view} WHERE id = $1",
               "someone")  # fmt: skip
    text = "\n".join(row[0] for row in plan)
    # The condition reaches the scan of lines (an index lookup once the table is big), rather
    # than filtering the view's whole output ("Subquery Scan ... Filter: id = ...").
    assert "Subquery Scan" not in text and "(sip_username)::text = 'someone'" in text, text


def test_after_an_asterisk_restart_emergency_calls_go_out_while_postgres_is_frozen(
    make_line, carrier, asterisk: AsteriskSandbox, database, control_service, wait_until
):
    """Fail closed, except emergency calls: the trunk is read into the cache of a restarted
    Asterisk at once (by the reconciler), not at the first call that needs it, which may come
    while the database does not answer."""
    if database.cluster is None:
        pytest.skip("DATABASE_URL names a server these tests do not own; cannot freeze it")
    _, caller = make_line("caller")
    # Twice: the first restart may come before the reconciler has seen the trunk at all (then
    # any pass reads it in); the second is the restart of a platform whose trunks are known.
    cached = "sorcery memory cache dump centrex_endpoint"
    for _ in range(2):
        ready = control_service.log_text().count(DAEMON_READY)
        asterisk.stop()
        asterisk.start()
        wait_until(lambda r=ready: control_service.log_text().count(DAEMON_READY) > r, 30, "back")
        wait_until(lambda: "trunk-carrier" in asterisk.cli(cached), 30, "the trunk cached again")
    wait_until(lambda: emergency_route(asterisk) == "trunk-carrier", 15, "the emergency route")
    caller.register(free_udp_port()).expect_success()  # the caller's line, cached by its use
    with frozen_postgres(database.cluster):
        network = carrier.answer()
        caller.call("112", hold_ms=200).expect_success()
        network.expect_success()
    (invite,) = received_invites(network)
    assert "INVITE sip:112@" in invite
