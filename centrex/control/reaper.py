"""Node liveness in PostgreSQL and the reaper of lost nodes' calls (issue 19).

Every daemon records its node's heartbeat while its Asterisk answers, and releases the calls of
other nodes whose heartbeat is too old (:func:`centrex.core.node_liveness.lost_nodes` decides
which). Several daemons may reap at once: the heartbeat rows of the nodes judged lost are
locked (``FOR UPDATE SKIP LOCKED``) and judged again in the transaction that deletes their
calls, so one reaper releases a node's calls and the others skip it; a call is deleted once
(``DELETE ... RETURNING``) and its "lost" record written in the same transaction. A lost node's
heartbeat waits for that transaction, so it cannot come back to life halfway through a reap.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import asyncpg

from centrex.core.cdr import CDR_COLUMNS
from centrex.core.node_liveness import LostCall, lost_cdr, lost_nodes

HEARTBEAT = (
    "INSERT INTO cluster_nodes (node, last_seen_at) VALUES ($1, now())"
    " ON CONFLICT (node) DO UPDATE SET last_seen_at = now()"
)
# The other nodes' heartbeats, with PostgreSQL's now() to judge them by; read without a lock,
# so a live node's heartbeat never waits for a reaper.
HEARTBEATS = "SELECT node, last_seen_at, now() AS db_now FROM cluster_nodes WHERE node <> $1"
# The nodes judged lost, locked and read again (the latest heartbeat) before their calls go; a
# row another reaper (or the node's own heartbeat) holds is skipped this time.
LOCK_LOST = (
    "SELECT node, last_seen_at, now() AS db_now FROM cluster_nodes WHERE node = ANY($1::text[])"
    " FOR UPDATE SKIP LOCKED"
)
# The lost nodes' calls, released (their legs cascade), with what their record needs.
RELEASE_LOST = """
    WITH gone AS (
        DELETE FROM active_calls WHERE node = ANY($1::text[])
        RETURNING id, node, channel_id, direction, caller, callee, caller_line_id,
                  callee_line_id, ring_group_id, started_at, answered_at, deadline_at,
                  transfer_of
    )
    SELECT gone.*,
           coalesce(cl.customer_id, ce.customer_id, rg.customer_id) AS customer_id,
           n.last_seen_at
    FROM gone
    JOIN cluster_nodes n ON n.node = gone.node
    LEFT JOIN lines cl ON cl.id = gone.caller_line_id
    LEFT JOIN lines ce ON ce.id = gone.callee_line_id
    LEFT JOIN ring_groups rg ON rg.id = gone.ring_group_id
"""
# The PostgreSQL types of ``CDR_COLUMNS``, in order: the records go in as one array each.
CDR_TYPES = (
    "uuid", "text", "text", "uuid", "uuid", "uuid", "uuid", "uuid", "text", "text", "text",
    "text", "text", "timestamptz", "timestamptz", "timestamptz", "int", "int", "text", "int",
    "int", "text", "text", "uuid", "uuid",
)  # fmt: skip
ARRAYS = ", ".join(f"${i}::{t}[]" for i, t in enumerate(CDR_TYPES, 1))
# A record the node's shipper already wrote (the call ended, its release did not) stays.
WRITE_LOST = (
    f"INSERT INTO cdrs ({', '.join(CDR_COLUMNS)}) SELECT * FROM unnest({ARRAYS})"
    " ON CONFLICT (node, linkedid) DO NOTHING"
)
# Decisions whose call never reached a journal: the node's own shipper cleans these after a
# day; a node that never returns cannot.
# A lost node's calls go in one transaction, however many: past the call path's 1 s statement
# limit (the reaper borrows the call path's pool), within reason.
REAP_TIMEOUT_S = 30.0
STALE_ATTEMPTS = (
    "DELETE FROM call_attempts"
    " WHERE node = ANY($1::text[]) AND decided_at < now() - interval '1 day'"
)


@dataclass(frozen=True)
class Reaped:
    lost: frozenset[str]  # the nodes judged lost
    calls: Counter[str]  # calls released, per lost node
    records: int  # "lost" records written


async def heartbeat(conn: asyncpg.Connection | asyncpg.Pool, node: str) -> None:
    await conn.execute(HEARTBEAT, node)


async def reap(conn: asyncpg.Connection, own: str, lost_after_s: float) -> Reaped:
    """Release the calls of the nodes lost at PostgreSQL's now(), in one transaction."""

    def judged(rows: list[asyncpg.Record]) -> frozenset[str]:
        if not rows:
            return frozenset()
        seen = {r["node"]: r["last_seen_at"] for r in rows}
        return lost_nodes(seen, rows[0]["db_now"], lost_after_s, own)

    async with conn.transaction():
        lost = judged(await conn.fetch(HEARTBEATS, own, timeout=REAP_TIMEOUT_S))
        if not lost:
            return Reaped(lost, Counter(), 0)
        locked = judged(await conn.fetch(LOCK_LOST, list(lost), timeout=REAP_TIMEOUT_S))
        if not locked:
            return Reaped(lost, Counter(), 0)
        gone = await conn.fetch(RELEASE_LOST, list(locked), timeout=REAP_TIMEOUT_S)
        released = [LostCall(*r.values()) for r in gone]
        records = 0
        if released:
            columns = list(zip(*(lost_cdr(c) for c in released), strict=True))
            arrays = [list(col) for col in columns]
            status = await conn.execute(WRITE_LOST, *arrays, timeout=REAP_TIMEOUT_S)
            records = int(status.rsplit(" ", 1)[-1])
        await conn.execute(STALE_ATTEMPTS, list(locked), timeout=REAP_TIMEOUT_S)
    return Reaped(lost, Counter(c.node for c in released), records)
