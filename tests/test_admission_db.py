"""The two-call limit holds when several daemons (several nodes) admit at once: real PostgreSQL,
two registries with their own engines, as two daemon processes would have."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from centrex.control.call_registry import AdmittedCall, CallRegistry
from centrex.core.credentials import generate_credentials
from centrex.db.models import (
    Customer,
    Line,
    NumberBlock,
    NumberStatus,
    PhoneNumber,
    RingGroup,
    RingGroupMember,
    RingStrategy,
    SyncState,
)
from centrex.db.session import make_engine, make_sessionmaker
from centrex.sandbox.postgres import migrated_test_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def database_url(tmp_path_factory: pytest.TempPathFactory):
    """A database of its own: lines written here straight into the database are not the API
    tests' business (the running reconciler would push them into their Asterisk)."""
    async with migrated_test_database(tmp_path_factory.mktemp("pg-admission")) as url:
        yield url


async def make_lines(url: str, count: int, max_calls: int = 2) -> list[Line]:
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        customer = Customer(name="atomicity")
        session.add(customer)
        lines = []
        for _ in range(count):
            creds = generate_credentials("centrex")
            lines.append(
                Line(
                    customer=customer,
                    label="x",
                    sip_username=creds.username,
                    sip_ha1=creds.ha1,
                    sip_realm="centrex",
                    max_calls=max_calls,
                    sync_state=SyncState.synced,
                )
            )
        session.add_all(lines)
        await session.commit()
    await engine.dispose()
    return lines


async def test_two_nodes_admit_exactly_the_limit(database_url: str):
    caller, *targets = await make_lines(database_url, 41)
    engines = [make_engine(database_url, pool_size=20) for _ in range(2)]
    nodes = [CallRegistry(e, f"node-{i}", 7200) for i, e in enumerate(engines)]
    try:
        for attempt in range(3):
            # 40 attempts at the same instant from one line, spread over two nodes.
            decisions = await asyncio.gather(
                *(
                    nodes[i % 2].admit(
                        channel_id=f"chan-{attempt}-{i}",
                        endpoint=caller.sip_username,
                        caller_number="",
                        dialled=targets[i].sip_username,
                        now=datetime.now(UTC),
                    )
                    for i in range(40)
                )
            )
            admitted = [d for d in decisions if isinstance(d, AdmittedCall)]
            assert len(admitted) == 2, f"attempt {attempt}: {len(admitted)} admitted"
            for node in nodes:
                for ref in await node.calls_on_node():
                    await node.release(ref.channel_id)
    finally:
        for node, engine in zip(nodes, engines, strict=True):
            await node.aclose()
            await engine.dispose()


async def test_the_same_channel_is_admitted_once(database_url: str):
    caller, target = await make_lines(database_url, 2)
    engine = make_engine(database_url)
    registry = CallRegistry(engine, "node-x", 7200)
    try:
        channel = str(uuid.uuid4())
        first, second = await asyncio.gather(
            *(
                registry.admit(
                    channel_id=channel,
                    endpoint=caller.sip_username,
                    caller_number="",
                    dialled=target.sip_username,
                    now=datetime.now(UTC),
                )
                for _ in range(2)
            )
        )
        # One call: the second decision is the first one, given back (resumed).
        assert isinstance(first, AdmittedCall) and isinstance(second, AdmittedCall)
        assert sorted([first.resumed, second.resumed]) == [False, True]
        assert first.call_id == second.call_id and first.dial == second.dial
        assert len(await registry.calls_on_node()) == 1
    finally:
        await registry.aclose()
        await engine.dispose()


async def test_a_call_decided_again_on_the_line_its_own_leg_filled_is_not_refused(
    database_url: str,
):
    """Migration 0011: the earlier decision is found before the line's room is counted."""
    caller, target = await make_lines(database_url, 2, max_calls=1)
    engine = make_engine(database_url)
    registry = CallRegistry(engine, "node-again", 7200)
    try:
        decide = {
            "channel_id": str(uuid.uuid4()), "endpoint": caller.sip_username,
            "caller_number": "", "dialled": target.sip_username,
        }  # fmt: skip
        first = await registry.admit(**decide, now=datetime.now(UTC))
        again = await registry.admit(**decide, now=datetime.now(UTC))
        assert isinstance(first, AdmittedCall) and not first.resumed
        assert isinstance(again, AdmittedCall) and again.resumed, again
        assert again.call_id == first.call_id
        assert len(await registry.calls_on_node()) == 1
    finally:
        await registry.aclose()
        await engine.dispose()


async def make_group(url: str, members: list[Line], strategy: RingStrategy) -> str:
    """A ring group of ``members`` and an alias number routed to it; returns the number."""
    engine = make_engine(url)
    e164 = f"+3338{uuid.uuid4().int % 10**7:07d}"
    async with make_sessionmaker(engine)() as session:
        group = RingGroup(
            customer_id=members[0].customer_id, name="g", strategy=strategy, ring_timeout_s=20
        )
        group.members = [RingGroupMember(position=i, line_id=m.id) for i, m in enumerate(members)]
        block = NumberBlock(first_e164=e164, last_e164=e164, size=1, kind="geographic", zone="3")
        session.add_all([group, block])
        await session.flush()
        session.add(
            PhoneNumber(
                e164=e164, national="0" + e164[3:], block_id=block.id, kind="geographic",
                zone="3", status=NumberStatus.assigned, customer_id=members[0].customer_id,
                ring_group_id=group.id,
            )
        )  # fmt: skip
        await session.commit()
    await engine.dispose()
    return e164


async def inbound_burst(registry: CallRegistry, number: str, n: int, tag: str) -> list:
    def attempt(i: int):
        return registry.admit(
            channel_id=f"{tag}-{i}", endpoint="trunk-carrier", caller_number="+33611223344",
            dialled=number, now=datetime.now(UTC),
        )  # fmt: skip

    return await asyncio.gather(*(attempt(i) for i in range(n)))


async def member_legs(url: str, members: list[Line]) -> list[int]:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return [
            await conn.fetchval("SELECT count(*) FROM active_call_legs WHERE line_id = $1", m.id)
            for m in members
        ]
    finally:
        await conn.close()


@pytest.mark.parametrize(("strategy", "admitted"), [("ring_all", 2), ("hunt", 6)])
async def test_group_calls_never_ring_a_member_over_its_limit(
    database_url: str, strategy: str, admitted: int
):
    members = await make_lines(database_url, 3)
    number = await make_group(database_url, members, RingStrategy(strategy))
    engine = make_engine(database_url, pool_size=20)
    registry = CallRegistry(engine, "node-g", 7200)
    try:
        decisions = await inbound_burst(registry, number, 20, strategy)
        calls = [d for d in decisions if isinstance(d, AdmittedCall)]
        # ring-all: each call rings every member with room (two calls fill all three);
        # hunt: each call rings the first member with room (2 calls x 3 members).
        assert len(calls) == admitted
        assert await member_legs(database_url, members) == [2, 2, 2]
        refused = [d for d in decisions if not isinstance(d, AdmittedCall)]
        assert all(r.reason == "busy" and "every member" in r.why for r in refused)
        if strategy == "ring_all":
            assert all(c.dial.count("&") == 2 for c in calls)
        for ref in await registry.calls_on_node():
            await registry.release(ref.channel_id)
        assert await member_legs(database_url, members) == [0, 0, 0]
    finally:
        await engine.dispose()


async def test_a_hunt_moves_on_skipping_full_members_and_an_answer_releases_the_others(
    database_url: str,
):
    a, b, c = await make_lines(database_url, 3)
    (c_full,) = await make_lines(database_url, 1, max_calls=0)  # never has room
    hunt = await make_group(database_url, [a, c_full, b, c], RingStrategy.hunt)
    ring_all = await make_group(database_url, [a, b, c], RingStrategy.ring_all)
    engine = make_engine(database_url)
    registry = CallRegistry(engine, "node-h", 7200)
    try:
        (call,) = await inbound_burst(registry, hunt, 1, "hunt")
        assert call.dial == f"PJSIP/{a.sip_username}" and call.hunt
        assert await registry.hunt_next("hunt-0") == f"PJSIP/{b.sip_username}"  # c_full skipped
        assert await member_legs(database_url, [a, b, c]) == [0, 1, 0]
        assert await registry.hunt_next("hunt-0") == f"PJSIP/{c.sip_username}"
        assert await registry.hunt_next("hunt-0") is None
        assert await member_legs(database_url, [a, b, c]) == [0, 0, 0]
        await registry.release("hunt-0")

        (call,) = await inbound_burst(registry, ring_all, 1, "all")
        assert await member_legs(database_url, [a, b, c]) == [1, 1, 1]
        ref = await registry.mark_answered(
            "all-0", datetime.now(UTC), ring_group=True, by=b.sip_username
        )
        assert ref is not None and ref.callee_line_id == b.id and ref.deadline_at is not None
        assert await member_legs(database_url, [a, b, c]) == [0, 1, 0]
        await registry.release("all-0")
    finally:
        await engine.dispose()


async def test_a_call_whose_number_count_fails_after_admission_leaves_nothing_counted(
    database_url: str,
):
    """The distinct-numbers count (art. 16) runs after the admission committed; if it fails, the
    call is refused (fail closed) and must not stay counted until a sweep finds it."""
    caller, *members = await make_lines(database_url, 2)
    number = await make_group(database_url, members, RingStrategy.ring_all)
    engine = make_engine(database_url)
    registry = CallRegistry(engine, "node-count", 7200)
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    await admin.execute("ALTER FUNCTION centrex_count_number RENAME TO centrex_count_number_off")
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await registry.admit(
                channel_id="count-fails", endpoint=caller.sip_username, caller_number="",
                dialled=number, now=datetime.now(UTC),
            )  # fmt: skip
        deadline = asyncio.get_running_loop().time() + 5
        while await registry.calls_on_node():
            assert asyncio.get_running_loop().time() < deadline, "the admitted row stayed"
            await asyncio.sleep(0.05)
        assert await member_legs(database_url, [caller, *members]) == [0, 0]
    finally:
        await admin.execute(
            "ALTER FUNCTION centrex_count_number_off RENAME TO centrex_count_number"
        )
        await admin.close()
        await registry.aclose()
        await engine.dispose()
