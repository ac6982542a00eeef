"""Issue 19, what the clustered shape owed the one-node shape: the voicemail lamp and the phones'
keepalive through Kamailio, and the limits (maximum duration, distinct numbers, hunt groups)
with calls landing on both nodes. One cluster for the module, on 127.0.24.0/24: real Kamailio,
two real Asterisk nodes with their daemons and CDR shippers, the API, PostgreSQL, sipp.
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
from sip_agent import (
    KEEPALIVE_ANSWERED,
    SCENARIOS,
    Carrier,
    SipEndpoint,
    free_udp_port,
    received,
    run_sipp,
    start_calls,
)
from test_voicemail import leave_message, mwi_log, notifies, wav_bytes

from centrex.config import Settings
from centrex.sandbox.cluster import Cluster
from centrex.voicemail.spool import spool_of

pytestmark = pytest.mark.integration

EDGE_IP = "127.0.24.1"
NODE_IPS = ["127.0.24.11", "127.0.24.12"]
CARRIER_IP = "127.0.24.2"
KEEPALIVE_S = 2
DISTINCT_LIMIT = 8  # fraud_distinct_numbers for this cluster (500 in production)


@pytest.fixture(scope="module")
def cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        settings, tmp_path_factory, name="clfeat", sip_port_step=200,
        edge_address=EDGE_IP, node_addresses=NODE_IPS,
        edge_flood_requests=5000, edge_keepalive_s=KEEPALIVE_S,
 fraud_distinct_numbers=DISTINCT_LIMIT,
    ) as cluster:  # fmt: skip
        yield cluster


@pytest.fixture(scope="module")
def capi(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with cluster_api(cluster, tmp_path_factory) as client:
        yield client


@pytest.fixture(scope="module")
def customer(capi: httpx.Client) -> dict:
    response = capi.post("/v1/customers", json={"name": "Cluster features"})
    assert response.status_code == 201, response.text
    response = capi.patch(
        f"/v1/customers/{response.json()['id']}",
        json={"residence_country": "FR", "documents_verified": True,
              "fraud_action": "emergency_only"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    block = capi.post("/v1/number-blocks", json={"first": "0324240000", "last": "0324240099"})
    assert block.status_code in (201, 409), block.text
    return response.json()


@pytest.fixture
def line(capi: httpx.Client, customer: dict, cluster: Cluster):
    """Lines whose phones talk only to Kamailio."""

    def make(**fields: object) -> tuple[dict, SipEndpoint]:
        return edge_line(capi, cluster, customer["id"], "clf", **fields)

    return make


def allocate(capi: httpx.Client, customer: dict) -> str:
    response = capi.post(
        "/v1/numbers/allocate", json={"customer_id": customer["id"], "kind": "geographic",
                                      "zone": "3"},
    )  # fmt: skip
    assert response.status_code in (200, 201), response.text
    return response.json()["e164"]


def cdr_nodes(database_url: str, caller_line: dict, expected: int) -> Counter[str]:
    """The caller's CDRs as "node:disposition" counts, once ``expected`` are shipped."""

    def rows() -> list:
        return sql(
            database_url,
            "SELECT node, disposition FROM cdrs WHERE caller_line_id = $1",
            uuid.UUID(caller_line["id"]),
        )

    deadline = time.monotonic() + 30
    while len(found := rows()) < expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return Counter(f"{r['node']}:{r['disposition']}" for r in found)


def nodes_of(counts: Counter[str]) -> set[str]:
    return {key.split(":")[0] for key in counts}


# --- keepalive ------------------------------------------------------------------------------------
def test_the_edge_keeps_a_registered_phone_alive_with_options(cluster, line):
    """Kamailio's nathelper pings every contact registered with it; the nodes qualify nothing
    (they hold no contact for a line, and their aors say qualify_frequency 0)."""
    _, phone = line()
    port = free_udp_port()
    phone.register(port).expect_success()
    socket = run_sipp(
        SCENARIOS / "uas_keepalive.xml", cluster.edge, local_port=port,
        timeout_s=3 * KEEPALIVE_S + 5, extra=["-trace_msg"],
    )  # fmt: skip
    socket.expect_success(timeout=3 * KEEPALIVE_S + 10)
    (options,) = [m for m in received(socket) if m.first_line.startswith("OPTIONS")]
    assert f"From: sip:keepalive@{cluster.edge};" in options.text, options.text
    assert f"Via: SIP/2.0/UDP {cluster.edge}" in options.text, options.text
    assert all(node.settings.sip_qualify_frequency_s == 0 for node in cluster.nodes)


def test_a_line_with_no_phone_at_the_edge_forwards_as_unregistered(cluster, capi, line):
    """The edge answers a node's INVITE for a line with no registered phone 404, which Asterisk
    reads as a channel unavailable (CHANUNAVAIL), as on one node: the line's forward on
    unregistered applies (with 480, Asterisk saw "no answer" and the call failed)."""
    target_line, target = line(max_calls=10)
    port = free_udp_port()
    target.register(port).expect_success()
    # (sipp counts the keepalive OPTIONS it answers as calls: no limit, killed at the end)
    device = target.answer(port, calls=1000, ring_ms=100, timeout_s=120)
    owner, phone = line()
    response = capi.patch(f"/v1/lines/{owner['id']}/features",
                          json={"forward_unregistered": target_line["extension"]})  # fmt: skip
    assert response.status_code == 200, response.text
    assert cluster.kamailio.contacts(phone.username) == 0
    _, caller = line()
    caller.call(phone.username, hold_ms=200).expect_success(timeout=30)
    device.process.kill()
    got = Counter(m.first_line.split(" ", 1)[0] for m in received(device))
    assert got["INVITE"] == got["BYE"] == 1, got  # forwarded to the target


# --- voicemail lamp -------------------------------------------------------------------------------
def test_the_lamp_of_a_phone_registered_at_the_edge_lights_and_goes_off(
    cluster, capi, line, database_url, wait_until
):
    """A phone registered only with Kamailio subscribes to its mailbox through the edge (its
    SUBSCRIBE lands on a node by Call-ID hash); messages left through either node light its
    lamp, and deleting them through the API turns it off. The spool is one for all nodes."""
    owner, phone = line(max_calls=10)
    assert capi.patch(f"/v1/lines/{owner['id']}/voicemail", json={"enabled": True}).is_success
    greeting = capi.put(f"/v1/lines/{owner['id']}/voicemail/greeting", content=wav_bytes(1.0),
                        headers={"Content-Type": "audio/wav"})  # fmt: skip
    assert greeting.status_code == 200, greeting.text
    # Every call to the line goes to its mailbox: the phone's socket is the subscriber's.
    response = capi.patch(f"/v1/lines/{owner['id']}/features",
                          json={"forward_unconditional": "voicemail"})  # fmt: skip
    assert response.status_code == 200, response.text
    port = free_udp_port()
    phone.register(port).expect_success()
    mwi = run_sipp(
        SCENARIOS / "subscribe_mwi.xml", cluster.edge, local_port=port, service=phone.username,
        user=phone.username, password=phone.password, timeout_s=300,
        extra=["-trace_msg", *KEEPALIVE_ANSWERED],
    )  # fmt: skip
    try:
        wait_until(lambda: notifies(mwi), 15, "the subscription's first NOTIFY")
        assert "Messages-Waiting: no" in notifies(mwi)[0], mwi_log(mwi)
        # Messages from two callers at once, until both nodes have taken one.
        taken: Counter[str] = Counter()
        left = 0
        for _ in range(8):  # each call lands by its Call-ID's hash; a node may miss a probe
            callers = [line() for _ in range(2)]
            runs = [leave_message(ep, phone.username, hold_ms=10000) for _, ep in callers]
            for run in runs:
                run.expect_success(60)
            for caller_line, _ in callers:
                taken += cdr_nodes(database_url, caller_line, 1)
            left += 2
            if nodes_of(taken) == {"n1", "n2"}:
                break
        assert nodes_of(taken) == {"n1", "n2"}, taken

        def listed() -> list[dict]:
            return capi.get(f"/v1/lines/{owner['id']}/voicemails").json()["items"]

        # All of them in the one spool the API reads, whichever node recorded them.
        wait_until(lambda: len(listed()) == left, 15, f"{left} messages listed ({taken})")
        wait_until(
            lambda: any("Messages-Waiting: yes" in n for n in notifies(mwi)), 20, "the lamp lit"
        )
        for message in listed():
            gone = capi.delete(f"/v1/lines/{owner['id']}/voicemails/{message['id']}")
            assert gone.status_code == 204, gone.text
        # Every node's app_voicemail polls the mailbox (pollfreq 10 s) and sees it empty.
        deleted = time.monotonic()
        code = mwi.wait(60)
        assert code == 0, lamp_report(cluster, phone.username, mwi, time.monotonic() - deleted)
        lamp = [n for n in notifies(mwi) if "Messages-Waiting:" in n]
        lit = next(i for i, n in enumerate(lamp) if "Messages-Waiting: yes" in n)
        assert "Messages-Waiting: no" in lamp[-1] and len(lamp) > lit + 1, mwi_log(mwi)
        print(f"\nmessages by node: {dict(taken)}; NOTIFYs: {len(lamp)}")
    finally:
        mwi.process.kill()


def lamp_report(cluster: Cluster, mailbox: str, mwi, waited_s: float) -> str:
    """Why the lamp did not go off: the NOTIFYs' states, the spool's files for the mailbox, each
    node's inbound subscriptions and last log lines, and the phone's messages."""
    states = [
        line for n in notifies(mwi) for line in n.splitlines()
        if line.startswith(("Messages-Waiting", "Voice-Message", "Subscription-State"))
    ]  # fmt: skip
    box = spool_of(cluster.api_settings) / mailbox
    files = sorted(str(p.relative_to(box)) for p in box.rglob("*")) if box.exists() else []
    nodes = "".join(
        f"\n--- {node.plan.name}: {node.asterisk.cli('pjsip show subscriptions inbound')}"
        + "".join(
            line
            for line in node.asterisk.log_file.read_text(errors="replace").splitlines(True)
            if "SECURITY[" not in line and "<sip:edge@" not in line  # the edge's probes
        )[-3000:]
        for node in cluster.nodes
    )
    return (
        f"no 'off' NOTIFY {waited_s:.0f}s after the deletions (sipp exit {mwi.process.returncode})"
        f"\nNOTIFY states: {states}\nspool {box}: {files}{nodes}\n--- the phone's log:\n"
        + mwi_log(mwi)[-6000:]
    )


# --- limits ---------------------------------------------------------------------------------------
def test_calls_on_both_nodes_are_cut_at_the_maximum_duration(
    cluster, line, database_url, wait_until
):
    _, callee = line(max_calls=100)
    port = free_udp_port()
    callee.register(port).expect_success()
    device = callee.answer(port, calls=100, ring_ms=100, timeout_s=90)
    try:
        cut: Counter[str] = Counter()
        for _ in range(8):  # each call lands by its Call-ID's hash; a node may miss a probe
            # One sipp, two calls at once (distinct Call-IDs; separate sipp processes' Call-IDs
            # differ only by pid and were seen to hash to the same node nine times in a row).
            caller_line, caller = line(max_call_duration_s=3)
            batch = start_calls(
                "uac_call_until_cut.xml", cluster.edge, [(caller.username, caller.password)] * 2,
                callee.username, timeout_s=30,
            )  # fmt: skip
            batch.outcomes()
            held = batch.held_ms()
            assert len(held) == 2 and all(2900 <= ms < 4000 for ms in held), held
            # Cut by the node's daemon at the deadline (not by Asterisk's backstop half a second
            # later), and recorded.
            wait_until(
                lambda ln=caller_line: [tuple(r) for r in sql(
                    database_url,
                    "SELECT reason, enforced_by FROM call_cutoffs WHERE caller_line_id = $1",
                    uuid.UUID(ln["id"]),
                )] == [("max_duration", "daemon")] * 2, 10, "the cutoffs' records",
            )  # fmt: skip
            cut += cdr_nodes(database_url, caller_line, 2)
            if nodes_of(cut) == {"n1", "n2"}:
                break
        assert nodes_of(cut) == {"n1", "n2"}, cut
    finally:
        device.process.kill()


@pytest.fixture(scope="module")
def carrier(capi: httpx.Client, cluster: Cluster) -> Iterator[Carrier]:
    """The public network behind a trunk: the nodes send outbound calls to it directly."""
    port = free_udp_port(CARRIER_IP)
    response = capi.post("/v1/trunks", json={"name": "clf-carrier", "host": CARRIER_IP,
                                             "port": port})  # fmt: skip
    assert response.status_code == 201, response.text
    yield Carrier(CARRIER_IP, port, cluster.edge)
    capi.delete(f"/v1/trunks/{response.json()['id']}")


def test_the_distinct_number_count_holds_across_nodes(
    cluster, capi, customer, line, carrier, database_url, wait_until
):
    """The (DISTINCT_LIMIT + 1)th distinct number, counted over calls that landed on both
    nodes, raises the suspicion and restricts the line's next call, on either node."""
    caller_line, caller = line(max_calls=1000)
    number = allocate(capi, customer)
    response = capi.patch(f"/v1/lines/{caller_line['id']}",
                          json={"main_number": "0" + number.removeprefix("+33")})  # fmt: skip
    assert response.status_code == 200, response.text
    numbers = [f"+3314{i:07d}" for i in range(DISTINCT_LIMIT + 1)]
    network = carrier.answer(calls=len(numbers), timeout_s=60)
    caller.call_each(numbers, rate=10, hold_ms=50).expect_success(timeout=60)
    network.expect_success(timeout=30)
    spread = cdr_nodes(database_url, caller_line, len(numbers))
    assert nodes_of(spread) == {"n1", "n2"}, spread
    found = capi.get("/v1/fraud-suspicions", params={"line_id": caller_line["id"]}).json()
    suspicions = [s for s in found if s["rule"] == "distinct_numbers"]
    assert len(suspicions) == 1, found
    assert suspicions[0]["evidence"]["distinct_numbers"] == DISTINCT_LIMIT + 1
    # The restriction holds on whichever node the next calls land: every one refused.
    for _ in range(4):
        caller.call_refused(numbers[0], 403).expect_success()
    refused = cdr_nodes(database_url, caller_line, len(numbers) + 4)
    assert sum(v for k, v in refused.items() if k.endswith(":refused_policy")) == 4, refused


def test_a_hunt_skips_a_member_busy_through_the_other_node(
    cluster, capi, customer, line, database_url, wait_until
):
    """Hunt order [busy, free]: busy (max_calls 1) holds a call carried by one node; calls to
    the group landing on the other node (and on the same one) skip it and ring free."""
    busy_line, busy = line(max_calls=1)
    free_line, free = line(max_calls=100)
    ports = {}
    for name, ep in (("busy", busy), ("free", free)):
        ports[name] = free_udp_port()
        ep.register(ports[name]).expect_success()
    group = capi.post("/v1/ring-groups", json={
        "customer_id": customer["id"], "name": "cluster hunt", "strategy": "hunt",
        "ring_timeout_s": 5, "members": [busy_line["id"], free_line["id"]],
    })  # fmt: skip
    assert group.status_code == 201, group.text
    number = allocate(capi, customer)
    response = capi.put(
        f"/v1/numbers/{number}/destination", json={"ring_group_id": group.json()["id"]}
    )
    assert response.status_code == 200, response.text
    dialled = "0" + number.removeprefix("+33")

    # busy answers whatever reaches it: a hunt that rang it again would be answered there.
    busy_device = busy.answer(ports["busy"], calls=10, ring_ms=100, timeout_s=90)
    free_device = free.answer(ports["free"], calls=100, ring_ms=100, timeout_s=90)
    try:
        # busy's one call: a call to the group, answered by busy (first in the hunt), held.
        _, holder = line()
        held = holder.call(dialled, hold_ms=40000, timeout_s=60)
        wait_until(lambda: len(capi.get(f"/v1/lines/{busy_line['id']}/calls").json()) == 1,
                   15, "busy's call")  # fmt: skip
        (held_node,) = {
            r["node"] for r in sql(
                database_url,
                "SELECT c.node FROM active_call_legs g JOIN active_calls c ON c.id = g.call_id"
                " WHERE g.line_id = $1", uuid.UUID(busy_line["id"]),
            )
        }  # fmt: skip
        hunted: Counter[str] = Counter()
        for _ in range(8):
            caller_line, caller = line()
            caller.call(dialled, hold_ms=200).expect_success(timeout=30)
            hunted += cdr_nodes(database_url, caller_line, 1)
            if any(not k.startswith(held_node) for k in hunted):
                break
        assert any(not k.startswith(held_node) for k in hunted), (held_node, hunted)
        assert all(k.endswith(":answered") for k in hunted), hunted
        calls = sum(hunted.values())
        # free answered every hunted call; busy got exactly its one INVITE.
        free_device.process.kill()
        got = Counter(m.first_line.split(" ", 1)[0] for m in received(free_device))
        assert got["INVITE"] == calls, got
        busy_invites = [m for m in received(busy_device) if m.first_line.startswith("INVITE")]
        assert len(busy_invites) == 1
        print(f"\nbusy's call on {held_node}; hunted calls by node: {dict(hunted)}")
        held.process.kill()
    finally:
        for device in (busy_device, free_device):
            device.process.kill()
