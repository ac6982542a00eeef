"""Issue 19: the carrier talks only to Kamailio, both ways, in the clustered shape (127.0.23.0/24).

Real Kamailio in front of two real Asterisk nodes (each with its daemon and CDR shipper), the API,
PostgreSQL; the carrier is sipp on its own address (CARRIER_IP), the lines' phones sipp on
127.0.0.1 (or ATTACKER_IP). Kamailio recognises the carrier by source address and stamps
X-Centrex-Trunk on its requests; nodes identify the trunk by that header and accept SIP from the
edge only (docs/cluster.md, "Carrier through the edge").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from cluster_harness import cluster_api, running_cluster
from helpers import sql
from sip_agent import (
    Carrier,
    SipEndpoint,
    _scenario,
    free_udp_port,
    received,
    run_sipp,
    wait_bound,
)

from centrex.asterisk.pjsip_objects import TRUNK_HEADER
from centrex.config import Settings
from centrex.sandbox.cluster import Cluster

pytestmark = pytest.mark.integration

EDGE_IP = "127.0.23.1"
NODE_IPS = ["127.0.23.11", "127.0.23.12"]
CARRIER_IP = "127.0.23.50"
ATTACKER_IP = "127.0.23.66"
TRUNK = "edgecarrier"
FORGED = f"{TRUNK_HEADER}: trunk-{TRUNK}"


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Nodes e1, e2: test_cluster.py's n1, n2 write to the same database (calls, CDR checkpoints).
    with running_cluster(
        settings, tmp_path_factory, name="cltrunks", sip_port_step=250,
        edge_address=EDGE_IP, node_addresses=NODE_IPS, node_prefix="e",
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture(scope="module")
def capi(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with cluster_api(cluster, tmp_path_factory) as client:
        yield client


@pytest.fixture(scope="module")
def customer(capi: httpx.Client) -> dict:
    response = capi.post("/v1/customers", json={"name": "Edge trunks", "residence_country": "FR"})
    assert response.status_code == 201, response.text
    created = response.json()
    capi.patch(f"/v1/customers/{created['id']}", json={"documents_verified": True})
    block = capi.post("/v1/number-blocks", json={"first": "0239230000", "last": "0239230099"})
    assert block.status_code in (201, 409), block.text
    return created


@pytest.fixture(scope="module")
def carrier(capi: httpx.Client, cluster: Cluster) -> Iterator[Carrier]:
    """The public network on CARRIER_IP; it knows only Kamailio's address."""
    port = free_udp_port(CARRIER_IP)
    response = capi.post("/v1/trunks", json={"name": TRUNK, "host": CARRIER_IP, "port": port})
    assert response.status_code == 201, response.text
    yield Carrier(CARRIER_IP, port, cluster.edge)
    capi.delete(f"/v1/trunks/{response.json()['id']}")


@pytest.fixture
def numbered_line(capi: httpx.Client, customer: dict, cluster: Cluster):
    def make() -> tuple[dict, SipEndpoint]:
        body = {"customer_id": customer["id"], "label": "edge", "max_calls": 10}
        line = capi.post("/v1/lines", json=body).json()
        number = capi.post(
            "/v1/numbers/allocate",
            json={"customer_id": customer["id"], "kind": "geographic", "zone": "2"},
        ).json()
        response = capi.patch(f"/v1/lines/{line['id']}", json={"main_number": number["national"]})
        assert response.status_code == 200, response.text
        phone = SipEndpoint(line["sip_username"], line["sip_password"], cluster.edge)
        return response.json(), phone

    return make


def edge_metrics(cluster: Cluster) -> str:
    s = cluster.base
    return httpx.get(f"http://{s.edge_metrics_host}:{s.edge_metrics_port}/metrics", timeout=5).text


def metric(text: str, name: str) -> str | None:
    """A label-less sample's value, or None when the edge has not exported it yet."""
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return line.split()[1]
    return None


def first_lines(run) -> list[str]:
    return [m.first_line.split(" ", 1)[0] for m in received(run)]


def cdrs_of(database_url: str, wait_until, column: str, line: dict, count: int = 1) -> list:
    def rows() -> list:
        return sql(
            database_url,
            f"SELECT node, direction, caller, callee, disposition FROM cdrs WHERE {column} = $1",
            uuid.UUID(line["id"]),
        )

    wait_until(lambda: len(rows()) >= count, 30, f"{count} CDR(s) of {line['sip_username']}")
    return rows()


def test_a_carrier_call_to_the_edge_lands_on_a_node_as_the_trunk(
    carrier, numbered_line, cluster, database_url, wait_until
):
    """The carrier sends to Kamailio only; the call reaches a node as the trunk (the number's
    line rings through the edge, the CDR is the trunk's: inbound), the carrier's BYE ends it."""
    bob_line, bob = numbered_line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, calls=2, timeout_s=60)
    for _ in range(2):  # two calls: a Call-ID hash may put them on different nodes
        carrier.call(bob_line["main_number"], hold_ms=300).expect_success(timeout=30)
    device.expect_success(timeout=30)
    assert first_lines(device).count("INVITE") == first_lines(device).count("BYE") == 2
    # Nothing internal reaches the line either: the stamp is the edge's word to the nodes.
    assert all(TRUNK_HEADER not in m.text for m in received(device))
    rows = cdrs_of(database_url, wait_until, "callee_line_id", bob_line, 2)
    assert {(r["direction"], r["disposition"]) for r in rows} == {("inbound", "answered")}, rows
    assert {r["caller"] for r in rows} == {"+33611223344"}
    assert {r["node"] for r in rows} <= {"e1", "e2"}
    # The edge counts what it stamped (INVITE, ACK, BYE of each call), and no failed lookup.
    metrics = edge_metrics(cluster)
    assert int(metric(metrics, "centrex_edge_carrier_requests_total")) >= 6, metrics
    assert metric(metrics, "centrex_edge_trunk_lookups_failed_total") in ("0", None), metrics


def test_a_phone_forging_the_trunk_header_through_the_edge_is_not_the_trunk(
    carrier, numbered_line, cluster
):
    """Kamailio strips the header from everyone: a phone naming the trunk gets the challenge
    any unknown caller gets (401), and the number's line never rings."""
    bob_line, bob = numbered_line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, timeout_s=8)
    forged = run_sipp(
        _scenario("uac_header_refused.xml.tmpl", code="401", header=FORGED), cluster.edge,
        service=bob_line["main_number"], local_ip=ATTACKER_IP,
        keys={"caller": "+33611223344"}, extra=["-trace_msg"], timeout_s=10,
    )  # fmt: skip
    forged.expect_success(timeout=20)
    device.wait(15)
    assert "INVITE" not in first_lines(device)


def test_a_line_calling_out_reaches_the_carrier_from_the_edge_only(
    carrier, numbered_line, cluster, database_url, wait_until
):
    """A node's call to the trunk leaves through Kamailio (outbound_proxy): the carrier gets
    the INVITE with Kamailio's Via on top and its Record-Route, and the BYE the same way."""
    alice_line, alice = numbered_line()
    network = run_sipp(
        _scenario("uas_carrier.xml"), cluster.edge, local_port=carrier.port, local_ip=CARRIER_IP,
        timeout_s=30, extra=["-d", "100", "-trace_msg"],
    )  # fmt: skip
    wait_bound(network, carrier.port, CARRIER_IP)
    alice.call("0145678901", hold_ms=300).expect_success(timeout=30)
    network.expect_success(timeout=30)
    messages = {m.first_line.split(" ", 1)[0]: m.text for m in received(network)}
    assert {"INVITE", "ACK", "BYE"} <= set(messages), list(messages)
    edge = cluster.edge
    for method in ("INVITE", "BYE"):
        vias = [h for h in messages[method].splitlines() if h.lower().startswith("via:")]
        assert edge in vias[0], (method, vias)  # sent by Kamailio...
        assert not any(ip in vias[0] for ip in NODE_IPS), vias
    assert f"Record-Route: <sip:{edge};lr" in messages["INVITE"]
    assert "INVITE sip:+33145678901@" in messages["INVITE"]
    # The preloaded route to the edge was consumed there, not handed to the carrier.
    assert "\nRoute:" not in messages["INVITE"]
    (row,) = cdrs_of(database_url, wait_until, "caller_line_id", alice_line)
    assert (row["direction"], row["disposition"]) == ("outbound", "answered"), row


def test_a_forged_header_sent_straight_to_a_node_is_refused(carrier, numbered_line, cluster):
    """Around the edge: a node takes requests from Kamailio's address only (pjsip acl)."""
    bob_line, bob = numbered_line()
    port = free_udp_port()
    bob.register(port).expect_success()
    device = bob.answer(port, timeout_s=8)
    for node in cluster.nodes:
        direct = f"{node.plan.address}:{node.plan.sip_port}"
        for source in (ATTACKER_IP, CARRIER_IP):  # not even the carrier's own address
            refused = run_sipp(
                _scenario("uac_header_refused.xml.tmpl", code="403", header=FORGED), direct,
                service=bob_line["main_number"], local_ip=source,
                keys={"caller": "+33611223344"}, timeout_s=10,
            )  # fmt: skip
            refused.expect_success(timeout=20)
    device.wait(15)
    assert "INVITE" not in first_lines(device)


def test_behind_the_edge_a_trunk_host_must_be_an_address(capi):
    response = capi.post("/v1/trunks", json={"name": "byname", "host": "sip.carrier.example"})
    assert response.status_code == 400, response.text
    assert ["body", "host"] in [e["loc"] for e in response.json()["detail"]]
    assert all(t["name"] != "byname" for t in capi.get("/v1/trunks").json())


@pytest.mark.parametrize("route", ["", "Route: <sip:{edge};lr>"])
def test_the_edge_relays_no_stray_in_dialog_request_from_outside(cluster, route):
    """Only nodes' requests leave the edge for anywhere: a forged in-dialog BYE (with or without
    a Route naming the edge) towards an outside address gets 403, not relayed."""
    stray = run_sipp(
        _scenario("stray_bye_refused.xml.tmpl", target="127.0.23.77:5999",
                  route=route.format(edge=cluster.edge)),
        cluster.edge, local_ip=ATTACKER_IP, timeout_s=8,
    )  # fmt: skip
    stray.expect_success(timeout=20)


def test_a_trunk_created_later_is_recognised_at_the_edge_within_its_cache_time(
    capi, cluster, carrier, numbered_line
):
    """The edge remembers what an address is (a trunk or "none") for edge_trunk_cache_s: an
    address first seen as a phone's becomes the trunk's within that bound, and stops being it
    within that bound of the trunk's deletion. Its calls go to a line with no phone: as anyone's
    they get the node's challenge (401), as the trunk's they reach the line (480, unregistered)."""
    bob_line, _ = numbered_line()
    late = Carrier("127.0.23.51", 0, cluster.edge)
    number = bob_line["main_number"]
    refused = time.monotonic()
    late.call_refused(number, 401).expect_success(timeout=20)  # now cached as "none"
    bound = cluster.base.edge_trunk_cache_s
    # Kamailio's htable keeps an entry until a whole second past its expiry: the bound + 1 s from
    # the refusal, which cached "none". An attempt is judged by when it started (sipp is slow to
    # start on a busy machine), with 3 s more on a loaded machine for the nodes: a node whose AMI
    # did not answer the trunk's POST in time reads the new trunk at the reconciler's next pass.
    deadline_s = bound + 1.5 + 3
    response = capi.post("/v1/trunks", json={"name": "late", "host": late.ip, "port": 5060})
    assert response.status_code == 201, response.text
    trunk_url = f"/v1/trunks/{response.json()['id']}"
    try:
        created = time.monotonic()  # the recognition's figure counts from here
        attempts: list[str] = []  # each failed attempt: when it started and ended, and how
        while True:
            started = time.monotonic() - created
            since_refusal = time.monotonic() - refused
            attempt = late.call_refused(number, 480)
            if attempt.wait(20) == 0:
                break
            attempts.append(f"{started:.1f}-{time.monotonic() - created:.1f}s: {attempt.output}")
            assert since_refusal < deadline_s, (
                f"not recognised {started:.1f}s after its creation, {since_refusal:.1f}s after "
                f"the refusal (cache {bound}s), {len(attempts)} attempts; the last ones:\n"
                + "\n".join(attempts[-3:])
            )
        recognised_s = started
    finally:
        deletion = capi.delete(trunk_url)  # never left behind: the oldest trunk routes out
    assert deletion.status_code == 204, deletion.text
    deleted = time.monotonic()
    # A number nobody has: the trunk's call to it gets 404 at once, anyone else's the 401.
    while True:
        started = time.monotonic() - deleted
        if late.call_refused("+33523239999", 401).wait(20) == 0:
            break
        assert started < deadline_s, f"still the trunk {started:.1f}s after (cache {bound}s)"
    print(f"\nnew trunk recognised after {recognised_s:.1f}s, deletion after "
          f"{started:.1f}s (cache {bound}s)")  # fmt: skip
