"""The reaper against real PostgreSQL (centrex/control/reaper.py): several daemons reaping at
once release a lost node's calls exactly once, each with one "lost" record; a node alive, a node
without a heartbeat row, and the reaper's own node keep their calls."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import asyncpg
import pytest

from centrex.control.reaper import heartbeat, reap

pytestmark = pytest.mark.integration

CALLS = 40


def dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg", "postgresql")


async def add_calls(conn: asyncpg.Connection, node: str, count: int) -> None:
    # Half answered; started 200 s ago by PostgreSQL's clock.
    await conn.executemany(
        "INSERT INTO active_calls (id, node, channel_id, direction, caller, callee,"
        " max_duration_s, started_at, answered_at)"
        " VALUES ($1, $2, $3, 'outbound', '+33100000001', '+33100000002', 7200,"
        " now() - interval '200 seconds',"
        " CASE WHEN $4 THEN now() - interval '150 seconds' END)",
        [(uuid.uuid4(), node, f"{node}.{i}", i % 2 == 0) for i in range(count)],
    )


async def test_racing_reapers_release_a_lost_nodes_calls_once(database_url):
    tag = uuid.uuid4().hex[:8]
    lost, alive, silent = f"lost-{tag}", f"alive-{tag}", f"norow-{tag}"
    conn = await asyncpg.connect(dsn(database_url))
    try:
        for node in (lost, alive, silent):
            await add_calls(conn, node, CALLS)
        await heartbeat(conn, alive)
        await conn.execute(
            "INSERT INTO cluster_nodes (node, last_seen_at)"
            " VALUES ($1, now() - interval '120 seconds')",
            lost,
        )
        # Its own calls are never a node's reaper's business (its sweep knows its channels).
        assert (await reap(conn, lost, 60)).calls[lost] == 0

        reapers = [await asyncpg.connect(dsn(database_url)) for _ in range(6)]
        try:
            results = await asyncio.gather(
                *(reap(r, f"reaper{i}-{tag}", 60) for i, r in enumerate(reapers))
            )
        finally:
            for r in reapers:
                await r.close()
        released = sum((r.calls for r in results), Counter())
        assert released[lost] == CALLS, results
        assert released[alive] == released[silent] == 0
        left = await conn.fetch(
            "SELECT node, count(*) FROM active_calls WHERE node = ANY($1::text[]) GROUP BY node",
            [lost, alive, silent],
        )
        assert dict(left) == {alive: CALLS, silent: CALLS}

        records = await conn.fetch(
            "SELECT c.linkedid, c.disposition, c.billed_s, c.end_at = n.last_seen_at AS at_seen"
            " FROM cdrs c JOIN cluster_nodes n ON n.node = c.node WHERE c.node = $1",
            lost,
        )
        assert len(records) == CALLS
        assert len({r["linkedid"] for r in records}) == CALLS
        assert {r["disposition"] for r in records} == {"lost"}
        assert all(r["at_seen"] for r in records)
        # Answered 150 s ago, last seen 120 s ago: 30 s billed; unanswered: none.
        assert Counter(r["billed_s"] for r in records) == {30: CALLS // 2, 0: CALLS // 2}

        # A node whose heartbeat is fresh again is no longer lost: its new calls stay.
        await heartbeat(conn, lost)
        await add_calls(conn, lost, 2)
        assert (await reap(conn, alive, 60)).calls[lost] == 0
    finally:
        await conn.close()
