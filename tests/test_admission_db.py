"""The two-call limit holds when several daemons (several nodes) admit at once: real PostgreSQL,
two registries with their own engines, as two daemon processes would have."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from centrex.control.call_registry import AdmittedCall, CallRegistry
from centrex.core.credentials import generate_credentials
from centrex.db.models import Customer, Line, SyncState
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
        assert sorted([isinstance(first, AdmittedCall), isinstance(second, AdmittedCall)]) == [
            False,
            True,
        ]
        assert None in (first, second)  # the second decision defers to the first
        assert len(await registry.calls_on_node()) == 1
    finally:
        await registry.aclose()
        await engine.dispose()
