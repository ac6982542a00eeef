"""One API worker runs the background work (reconciler, schedulers, mailer), the others serve.

With ``CENTREX_API_WORKERS`` > 1 the API is several processes behind one port; each would
otherwise run its own reconciler, porting loop, contract scheduler and mailer. The worker that
holds a PostgreSQL advisory lock runs them; the lock lives on a connection of its own, so a
worker that dies (or loses the database) releases it and another takes over within
``RETRY_S``. The lock is per database: two API hosts on one database also share one leader.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

#: The advisory lock's key (any bigint; this one spells "centrex" in ASCII).
LOCK_KEY = 0x63656E74726578
#: How often a follower asks for the lock, and the leader checks its connection.
RETRY_S = 2.0
#: What the leader logs when it takes the lock (the tests look for it).
LEADING = "this API worker runs the background work"


async def while_leader(dsn: str, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` whenever this process holds the lock; forever (cancel to stop)."""
    while True:
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("background work: no database (%s); trying again", exc)
            await asyncio.sleep(RETRY_S)
            continue
        try:
            while True:  # the lock is another process's: nothing to wait on but time
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                    break
                await asyncio.sleep(RETRY_S)
            log.info("%s (pid %d)", LEADING, os.getpid())
            await _run_while_connected(conn, work)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("background work stopped: lock connection lost (%s)", exc)
        finally:
            await conn.close(timeout=RETRY_S)
        await asyncio.sleep(RETRY_S)


async def _run_while_connected(conn: asyncpg.Connection, work: Callable[[], Awaitable[None]]):
    """The work runs until the lock's connection fails: then another worker may hold the lock,
    so this one must stop at once."""
    running = asyncio.create_task(work())
    try:
        while not running.done():
            await asyncio.wait({running}, timeout=RETRY_S)
            await conn.fetchval("SELECT 1")  # raises once the connection (and lock) is gone
        running.result()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
