"""Issue 19: the edge's bans in sip_bans and the API, surviving a Kamailio restart; TCP at the
edge. Real Kamailio, two real Asterisk nodes, PostgreSQL, the API and sipp, on 127.0.22.0/24.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_harness import cluster_api, running_cluster
from helpers import sql
from sip_agent import SipEndpoint, SippRun, free_udp_port, run_sipp

from centrex.config import Settings
from centrex.sandbox.cluster import Cluster

pytestmark = pytest.mark.integration

EDGE_IP = "127.0.22.1"
NODE_IPS = ["127.0.22.11", "127.0.22.12"]
SIPP_DIR = Path(__file__).parent / "sipp"
FLOOD = 60  # requests per 2 s (pike) past which the edge bans
ALLOWED = "127.0.22.95"  # CENTREX_SIP_BAN_ALLOW


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        settings, tmp_path_factory, name="clbans", sip_port_step=300,
        edge_address=EDGE_IP, node_addresses=NODE_IPS,
        edge_flood_requests=FLOOD, edge_auth_failures=3, edge_ban_sync_s=1,
        sip_ban_allow=[f"{ALLOWED}/32"],
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture(scope="module")
def capi(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with cluster_api(cluster, tmp_path_factory) as client:
        yield client


@pytest.fixture(scope="module")
def line(capi: httpx.Client, cluster: Cluster):
    customer = capi.post("/v1/customers", json={"name": "Cluster bans"})
    assert customer.status_code == 201, customer.text

    def make() -> SipEndpoint:
        body = {"customer_id": customer.json()["id"], "label": "bans", "max_calls": 10}
        created = capi.post("/v1/lines", json=body)
        assert created.status_code == 201, created.text
        c = created.json()
        return SipEndpoint(c["sip_username"], c["sip_password"], cluster.edge)

    return make


def register_from(cluster: Cluster, phone: SipEndpoint, ip: str, *, timeout_s: int = 3) -> SippRun:
    return run_sipp(
        SIPP_DIR / "register.xml", cluster.edge, service=phone.username, user=phone.username,
        password=phone.password, local_ip=ip, keys={"contact_port": "5999", "expires": "60"},
        timeout_s=timeout_s,
    )  # fmt: skip


def registers(cluster: Cluster, phone: SipEndpoint, ip: str) -> bool:
    """Whether a REGISTER with the right password from ``ip`` is answered 200 within 2 s."""
    return register_from(cluster, phone, ip, timeout_s=2).wait(15) == 0


def wait_for(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held (polled), or fail naming ``what``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - start


def bans(capi: httpx.Client, address: str) -> list[dict]:
    response = capi.get("/v1/sip-bans")
    assert response.status_code == 200, response.text
    return [b for b in response.json() if b["address"] == address]


def edge_metrics(cluster: Cluster) -> str:
    s = cluster.base
    return httpx.get(f"http://{s.edge_metrics_host}:{s.edge_metrics_port}/metrics", timeout=5).text


def test_an_edge_ban_is_listed_survives_a_restart_and_is_lifted_through_the_api(
    cluster, capi, line
):
    attacker = "127.0.22.66"
    victim = line()
    guesser = SipEndpoint(victim.username, "not-the-password", cluster.edge)
    for _ in range(cluster.base.edge_auth_failures):
        guess = run_sipp(
            SIPP_DIR / "register_refused.xml", cluster.edge, service=guesser.username,
            user=guesser.username, password=guesser.password, local_ip=attacker,
            keys={"contact_port": "5999", "expires": "60"}, timeout_s=2,
        )  # fmt: skip
        guess.wait(15)
    # Recorded by the edge in sip_bans: the API lists it.
    wait_for(lambda: bans(capi, attacker), 5, "the edge's ban in the API's list")
    (ban,) = bans(capi, attacker)
    assert ban["rule"] == "edge: failed digests", ban
    assert ban["node"] == f"edge@{EDGE_IP}" and ban["failures"] == 3, ban
    assert 590 < (_ts(ban["until"]) - _ts(ban["banned_at"])) <= 600, ban
    assert 'centrex_edge_bans_total{rule="edge: failed digests", recorded="yes"} 1' in (
        edge_metrics(cluster)
    ), edge_metrics(cluster)
    assert not registers(cluster, victim, attacker)

    # Kamailio restarted: it loads the bans in force at start.
    cluster.kamailio.stop()
    cluster.kamailio.start()
    cluster.wait_dispatching({f"{n.plan.address}:{n.plan.sip_port}" for n in cluster.nodes})
    assert attacker in cluster.kamailio.banned()
    assert not registers(cluster, victim, attacker)
    assert registers(cluster, victim, "127.0.22.67")  # the line itself is not locked

    # Lifted through the API: the edge lets it through within the sync interval.
    lifted = capi.delete(f"/v1/sip-bans/{attacker}")
    assert lifted.status_code == 204, lifted.text
    t0 = time.monotonic()
    wait_for(lambda: registers(cluster, victim, attacker), 10, "the lifted address to register")
    took = time.monotonic() - t0
    print(f"\nlift through the API -> REGISTER answered after {took:.1f} s")
    assert took < cluster.base.edge_ban_sync_s + 3
    assert attacker not in cluster.kamailio.banned()
    assert bans(capi, attacker) == []


def test_a_flood_is_banned_at_the_edge_and_recorded(cluster, capi):
    flooder = "127.0.22.68"
    _flood(flooder, cluster)
    wait_for(lambda: bans(capi, flooder), 5, "the flood ban in the API's list")
    (ban,) = bans(capi, flooder)
    assert ban["rule"] == "edge: flood", ban
    metrics = edge_metrics(cluster)
    assert 'centrex_edge_bans_total{rule="edge: flood", recorded="yes"} 1' in metrics, metrics
    assert capi.delete(f"/v1/sip-bans/{flooder}").status_code == 204


def test_a_manual_api_ban_drops_the_address_at_the_edge(cluster, capi, line):
    address = "127.0.22.70"
    phone = line()
    assert registers(cluster, phone, address)
    added = capi.post("/v1/sip-bans", json={"address": address, "seconds": 120, "reason": "t"})
    assert added.status_code == 201, added.text
    assert added.json()["rule"] == "manual" and added.json()["node"] == "api"
    # Only the sync puts an address the edge did not ban itself into its table.
    took = wait_for(lambda: address in cluster.kamailio.banned(), 10, "the manual ban at the edge")
    print(f"\nmanual ban through the API -> in the edge's table after {took:.1f} s")
    assert took < cluster.base.edge_ban_sync_s + 1
    assert not registers(cluster, phone, address)
    assert registers(cluster, phone, "127.0.22.71")
    assert capi.delete(f"/v1/sip-bans/{address}").status_code == 204
    wait_for(lambda: registers(cluster, phone, address), 10, "the lifted manual ban")


def test_an_allow_listed_address_is_never_banned_at_the_edge(cluster, capi, line):
    phone = line()
    guesser = SipEndpoint(phone.username, "not-the-password", cluster.edge)
    for _ in range(cluster.base.edge_auth_failures + 2):
        guess = run_sipp(
            SIPP_DIR / "register_refused.xml", cluster.edge, service=guesser.username,
            user=guesser.username, password=guesser.password, local_ip=ALLOWED,
            keys={"contact_port": "5999", "expires": "60"}, timeout_s=2,
        )  # fmt: skip
        assert guess.wait(15) == 0, guess.output  # every guess answered: never banned
    _flood(ALLOWED, cluster)
    added = capi.post("/v1/sip-bans", json={"address": ALLOWED, "seconds": 60})
    assert added.status_code == 201, added.text
    synced = cluster.kamailio.ban_generation()
    wait_for(lambda: cluster.kamailio.ban_generation() >= synced + 2, 10, "two syncs")
    assert registers(cluster, phone, ALLOWED)
    assert [b["rule"] for b in bans(capi, ALLOWED)] == ["manual"]  # the edge added none
    assert capi.delete(f"/v1/sip-bans/{ALLOWED}").status_code == 204


def test_ban_routes_refuse_bad_input_naming_the_field(capi):
    for body, field in (
        ({"address": "not-an-ip", "seconds": 60}, "address"),
        ({"address": "127.0.22.72", "seconds": 0}, "seconds"),
        ({"address": "127.0.22.72", "seconds": 60, "reason": "x" * 201}, "reason"),
        ({"address": "127.0.22.72", "seconds": 60, "rule": "edge: flood"}, "rule"),
        ({"address": False, "seconds": 60}, "address"),  # not 0.0.0.0
        ({"address": "127.0.22.72", "seconds": 60, "reason": "a\x00b"}, "reason"),
        ({"address": "127.0.22.72", "seconds": "60"}, "seconds"),
    ):
        response = capi.post("/v1/sip-bans", json=body)
        assert response.status_code == 422, response.text
        assert field in str(response.json()["detail"][0]["loc"]), response.text
    response = capi.delete("/v1/sip-bans/not-an-ip")
    assert response.status_code == 422 and "address" in response.text, response.text
    assert bans(capi, "127.0.22.72") == []


def test_registrations_survive_an_edge_restart(cluster, line, database_url):
    """The edge writes each registration through to PostgreSQL (kamailio_location, as its own
    role) and loads them when it starts: a phone registered before a Kamailio restart is still
    called after it, without registering again."""
    callee, caller = line(), line()
    port = free_udp_port()
    callee.register(port).expect_success()
    device = callee.answer(port, calls=1, timeout_s=60)
    rows = sql(database_url, "SELECT contact FROM kamailio_location WHERE username = $1",
               callee.username)  # fmt: skip
    assert len(rows) == 1 and f":{port}" in rows[0]["contact"], rows
    cluster.kamailio.stop()
    cluster.kamailio.start()
    cluster.wait_dispatching({f"{n.plan.address}:{n.plan.sip_port}" for n in cluster.nodes})
    assert cluster.kamailio.contacts(callee.username) == 1
    caller.call(callee.username, hold_ms=200).expect_success(timeout=30)
    device.expect_success(timeout=30)


def test_a_tcp_phone_registers_and_is_called_through_the_edge(cluster, line):
    callee, caller = line(), line()
    ip, port = "127.0.22.80", free_udp_port("127.0.22.80")
    registered = run_sipp(
        SIPP_DIR / "register_tcp.xml", cluster.edge, local_ip=ip, local_port=port,
        service=callee.username, user=callee.username, password=callee.password,
        keys={"expires": "120"}, extra=["-t", "t1"], timeout_s=10,
    )  # fmt: skip
    registered.expect_success(timeout=20)
    phone = run_sipp(
        SIPP_DIR / "uas_answer.xml", cluster.edge, local_ip=ip, local_port=port,
        extra=["-t", "t1", "-trace_msg"], timeout_s=30,
    )  # fmt: skip
    wait_for(lambda: _tcp_listening(ip, port) or phone.process.poll() is not None, 10, "TCP UAS")
    caller.call(callee.username, hold_ms=300).expect_success(timeout=30)
    phone.expect_success(timeout=30)
    (messages,) = (p for p in phone.workdir.iterdir() if p.name.endswith("_messages.log"))
    assert "SIP/2.0/TCP" in messages.read_text()


def test_bans_hold_at_the_edge_while_postgresql_is_down(cluster, capi, database):
    """Fail closed: with PostgreSQL stopped the sync fails and every ban held stays; a flood
    banned meanwhile is held at the edge though it cannot be recorded. Last in the module: it
    stops the module's PostgreSQL."""
    if database.cluster is None:
        pytest.skip("DATABASE_URL names a server these tests do not own; cannot stop it")
    held, flooder = "127.0.22.90", "127.0.22.91"
    added = capi.post("/v1/sip-bans", json={"address": held, "seconds": 300})
    assert added.status_code == 201, added.text
    wait_for(lambda: held in cluster.kamailio.banned(), 5, "the manual ban at the edge")
    log = cluster.kamailio.log_file

    def failed_syncs() -> int:
        return log.read_text(errors="replace").count("ban sync failed")

    database.cluster.stop()
    try:
        before = failed_syncs()
        wait_for(lambda: failed_syncs() >= before + 3, 15, "three failed syncs")
        assert held in cluster.kamailio.banned()
        _flood(flooder, cluster)
        wait_for(lambda: flooder in cluster.kamailio.banned(), 5, "the flood ban, unrecorded")
        # Unrecorded, each worker that saw the flood counts it (nothing to tell them apart).
        unrecorded = 'centrex_edge_bans_total{rule="edge: flood", recorded="no"} '
        assert unrecorded in (metrics := edge_metrics(cluster)), metrics
        assert int(metrics.split(unrecorded, 1)[1].split()[0]) >= 1
    finally:
        database.cluster.start()
    # PostgreSQL back: the sync works again (a lift reaches the edge); the unrecorded ban is
    # the edge's alone, held for its length, not in the list.
    wait_for(lambda: capi.get("/v1/sip-bans").status_code == 200, 30, "the API's database")
    assert capi.delete(f"/v1/sip-bans/{held}").status_code == 204
    took = wait_for(lambda: held not in cluster.kamailio.banned(), 30, "the lift after the outage")
    print(f"\nlift after PostgreSQL's restart reached the edge in {took:.1f} s")
    synced = cluster.kamailio.ban_generation()
    wait_for(lambda: cluster.kamailio.ban_generation() >= synced + 2, 10, "two syncs")
    assert flooder in cluster.kamailio.banned()
    assert bans(capi, flooder) == []


def _flood(source: str, cluster: Cluster) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
        for i in range(FLOOD * 3):
            s.sendto(_options(source, port, i), (EDGE_IP, cluster.base.sip_port))


def _tcp_listening(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return True
    return False


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def _options(ip: str, port: int, i: int) -> bytes:
    return (
        f"OPTIONS sip:{EDGE_IP} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-flood-{i}\r\n"
        f"From: <sip:flood@{ip}>;tag=f{i}\r\nTo: <sip:{EDGE_IP}>\r\n"
        f"Call-ID: flood-{i}@{ip}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
