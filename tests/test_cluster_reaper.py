"""Issue 19: a node that never returns does not leak its calls' counts (docs/cluster.md "Node
failure"). Kamailio in front of two real Asterisk nodes on 127.0.21.0/24, each with its daemon
and CDR shipper, the API, PostgreSQL and sipp. One node is lost whole (Asterisk, daemon and
shipper ``kill -9``); the survivor's daemon releases its calls and records each "lost"; when
the node is started again, its journal's record replaces each lost one and nothing is counted
again.

The callers' calls go straight to a chosen node (Asterisk authenticates them as behind the
edge), so which calls die with the node is known; the called phone is registered at the edge.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from cluster_harness import cluster_api, edge_line, running_cluster
from helpers import sql
from sip_agent import SipEndpoint, call_many, free_udp_port, start_calls

from centrex.config import Settings
from centrex.sandbox.cluster import Cluster, Node
from centrex.sandbox.processes import DAEMON_READY

pytestmark = pytest.mark.integration

EDGE_IP = "127.0.21.1"
NODE_IPS = ["127.0.21.11", "127.0.21.12"]
HEARTBEAT_S = 0.5
# Above the default heartbeat (5 s) of the session's own daemon (node "main"), which shares
# this database and must not look lost to these nodes.
LOST_AFTER_S = 10.0


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # edge_only off: the test places calls on the node it will kill by sending them to that
    # node directly (through the edge, the Call-ID hash decides), which a node accepting SIP
    # from the edge only would refuse.
    with running_cluster(
        settings, tmp_path_factory, name="reaper", sip_port_step=400,
        edge_address=EDGE_IP, node_addresses=NODE_IPS, edge_only=False,
        edge_flood_requests=5000, node_heartbeat_s=HEARTBEAT_S, node_lost_after_s=LOST_AFTER_S,
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture(scope="module")
def capi(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with cluster_api(cluster, tmp_path_factory) as client:
        yield client


def sip_address(node: Node) -> str:
    return f"{node.plan.address}:{node.plan.sip_port}"


def counted(database_url: str, lines: list[dict]) -> Counter[str]:
    """Calls counted against ``lines``' limits, per node."""
    rows = sql(
        database_url,
        "SELECT c.node FROM active_call_legs g JOIN active_calls c ON c.id = g.call_id"
        " WHERE g.line_id = ANY($1::uuid[]) AND g.role = 'caller'",
        [uuid.UUID(ln["id"]) for ln in lines],
    )
    return Counter(r["node"] for r in rows)


def records(database_url: str, lines: list[dict], node: str) -> list:
    return sql(
        database_url,
        "SELECT c.linkedid, c.disposition, c.billed_s, c.answer_at, c.reason,"
        " c.end_at = n.last_seen_at AS ends_when_last_seen"
        " FROM cdrs c LEFT JOIN cluster_nodes n ON n.node = c.node"
        " WHERE c.caller_line_id = ANY($1::uuid[]) AND c.node = $2",
        [uuid.UUID(ln["id"]) for ln in lines],
        node,
    )


def metric(node: Node, text: str) -> bool:
    port = node.settings.control_http_port
    return text in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def nodes_lost(node: Node) -> float:
    """``centrex_nodes_lost`` of a node's daemon. Nodes of other tests in this session's
    database whose daemons stopped count too: the tests compare with the value before."""
    port = node.settings.control_http_port
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return float(
        next(ln for ln in text.splitlines() if ln.startswith("centrex_nodes_lost ")).split()[1]
    )


def test_a_lost_nodes_calls_are_released_by_the_survivor_and_recorded_once(
    cluster, capi, database_url, wait_until
):
    customer = capi.post("/v1/customers", json={"name": "Reaper"}).json()

    def line(**fields: object) -> tuple[dict, SipEndpoint]:
        return edge_line(capi, cluster, customer["id"], "reaper", **fields)

    _, callee = line(max_calls=1000)
    port = free_udp_port()
    callee.register(port).expect_success()
    phone = callee.answer(port, calls=1000, ring_ms=100, timeout_s=600)
    dead, alive = cluster.nodes
    on_dead = [line() for _ in range(3)]  # two calls each: every line at its limit
    on_alive = [line()]
    dead_lines, alive_lines = [ln for ln, _ in on_dead], [ln for ln, _ in on_alive]

    def creds(group: list[tuple[dict, SipEndpoint]]) -> list[tuple[str, str]]:
        return [(ep.username, ep.password) for _, ep in group for _ in range(2)]

    doomed = start_calls("uac_call_or_busy.xml", sip_address(dead), creds(on_dead),
                         callee.username, hold_ms=120_000, timeout_s=150)  # fmt: skip
    kept = start_calls("uac_call_or_busy.xml", sip_address(alive), creds(on_alive),
                       callee.username, hold_ms=30_000, timeout_s=60)  # fmt: skip
    try:
        wait_until(lambda: counted(database_url, dead_lines) == {dead.plan.name: 6}, 20, "6 calls")
        wait_until(lambda: counted(database_url, alive_lines) == {alive.plan.name: 2}, 20, "2")
        wait_until(
            lambda: sql(database_url, "SELECT count(*) FROM active_calls WHERE node = $1"
                        " AND answered_at < now() - interval '2 seconds'", dead.plan.name)[0][0]
            == 6, 20, "the 6 calls answered 2 s ago",
        )  # fmt: skip

        others_lost = nodes_lost(alive)
        # --- the node is lost, and stays lost -------------------------------------------------
        killed_at = time.monotonic()
        dead.kill()
        wait_until(lambda: not counted(database_url, dead_lines), LOST_AFTER_S + 10,
                   "the lost node's calls released")  # fmt: skip
        released_s = time.monotonic() - killed_at
        assert released_s > LOST_AFTER_S - 2 * HEARTBEAT_S, "released before the bound"
        # The survivor's calls are still in progress, and still counted.
        assert counted(database_url, alive_lines) == {alive.plan.name: 2}
        # One "lost with the node" record per call, ending when the node was last seen.
        lost = records(database_url, dead_lines, dead.plan.name)
        assert len(lost) == 6 and len({r["linkedid"] for r in lost}) == 6, lost
        assert {r["disposition"] for r in lost} == {"lost"}
        ends = [(r["ends_when_last_seen"], r["answer_at"] is not None, r["billed_s"]) for r in lost]
        assert all(at_seen and answered and billed >= 2 for at_seen, answered, billed in ends), ends
        assert all(f"lost with node {dead.plan.name}" in r["reason"] for r in lost)
        listed = capi.get("/v1/cdrs", params={"customer_id": customer["id"], "disposition": "lost"})
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["items"]) == 6
        assert metric(alive, f'centrex_calls_reaped_total{{node="{dead.plan.name}"}} 6.0')
        assert nodes_lost(alive) == others_lost + 1
        assert f"node {dead.plan.name} lost" in alive.control.log_text()
        # Each line that had both its calls on the lost node can make two calls again.
        for _, ep in on_dead:
            outcome = call_many(sip_address(alive), [(ep.username, ep.password)] * 2,
                                callee.username, hold_ms=300)  # fmt: skip
            assert (outcome.answered, outcome.busy) == (2, 0), outcome
        print(f"\nlost node's calls released {released_s:.1f}s after the kill "
              f"(bound {LOST_AFTER_S:.0f}s)")  # fmt: skip
    finally:
        for run in doomed.runs:
            run.process.kill()

    # --- the node comes back anyway -----------------------------------------------------------
    dead.asterisk.start()
    dead.start_services()
    assert DAEMON_READY in dead.control.log_text()
    # Its shipper's record of each call (from its journal) takes the lost record's place.
    wait_until(
        lambda: {r["disposition"] for r in records(database_url, dead_lines, dead.plan.name)}
        == {"answered"}, 30, "the journal's records in place of the lost ones",
    )  # fmt: skip
    back = records(database_url, dead_lines, dead.plan.name)
    assert len(back) == 6 and {r["linkedid"] for r in back} == {r["linkedid"] for r in lost}
    # Its daemon took none of the released calls back, and the node is alive again.
    assert not counted(database_url, dead_lines)
    wait_until(lambda: nodes_lost(alive) == others_lost, 10, "the node alive again")
    for run in kept.runs:
        run.wait(60)
    # A call's count goes when its node's daemon sees the hangup, just after sipp's BYE is answered.
    wait_until(lambda: not counted(database_url, dead_lines + alive_lines), 15, "no call counted")

    # --- a node whose Asterisk alone dies, its daemon running -----------------------------------
    # Its heartbeat stops; the survivor releases its calls; once its Asterisk is back, its
    # daemon follows none of them any more and counts none again.
    def silent_for(seconds: float) -> bool:
        rows = sql(database_url, "SELECT now() - last_seen_at > make_interval(secs => $2)"
                   " FROM cluster_nodes WHERE node = $1", dead.plan.name, seconds)  # fmt: skip
        return bool(rows[0][0])

    in_progress = 'centrex_calls_in_progress{direction="on-net"} '
    orphaned = [line()]
    orphaned_lines = [orphaned[0][0]]
    held = start_calls("uac_call_or_busy.xml", sip_address(dead), creds(orphaned),
                       callee.username, hold_ms=120_000, timeout_s=150)  # fmt: skip
    try:
        wait_until(lambda: counted(database_url, orphaned_lines) == {dead.plan.name: 2}, 20, "2")
        wait_until(lambda: metric(dead, in_progress + "2.0"), 10, "2 calls followed")
        assert not silent_for(4 * HEARTBEAT_S)
        ready = dead.control.log_text().count(DAEMON_READY)
        dead.kill_asterisk()
        assert dead.control.running
        wait_until(lambda: silent_for(4 * HEARTBEAT_S), 10, "the heartbeat to stop")
        wait_until(lambda: not counted(database_url, orphaned_lines), LOST_AFTER_S + 10,
                   "the calls released by the survivor")  # fmt: skip
    finally:
        for run in held.runs:
            run.process.kill()
    dead.asterisk.start()
    wait_until(lambda: dead.control.log_text().count(DAEMON_READY) > ready, 30, "reconnection")
    wait_until(lambda: metric(dead, in_progress + "0.0"), 15, "the released calls forgotten")
    assert "released by another node (this node was judged lost)" in dead.control.log_text()
    assert not counted(database_url, orphaned_lines)
    wait_until(
        lambda: sorted(r["disposition"] for r in records(database_url, orphaned_lines,
                                                         dead.plan.name)) == ["answered"] * 2,
        30, "one record per call, the journal's",
    )  # fmt: skip
    phone.process.kill()
