"""The node's heartbeat and the reaper of lost nodes: a mixin of
:class:`centrex.control.daemon.CallControl` (issue 19, docs/cluster.md "Node failure").

Every ``node_heartbeat_s`` the daemon records its node as alive, but only after its Asterisk
has answered an ARI request: a daemon whose Asterisk is dead must not keep the node alive (its
calls died with that Asterisk). Then it releases the calls of the other nodes silent for longer
than ``node_lost_after_s`` (:mod:`.reaper`). Every daemon reaps: no node depends on another
process (the API may be down or elsewhere) to have a lost neighbour's counts released, and the
reapers' races are settled in PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg

from centrex import metrics
from centrex.asterisk.errors import AsteriskError
from centrex.control.reaper import heartbeat, reap

if TYPE_CHECKING:
    from centrex.control.daemon import CallControl

log = logging.getLogger("centrex.control.daemon")
DATABASE_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class NodeLiveness:
    async def beat(self: CallControl) -> bool:
        """Record this node alive if its Asterisk answers now; True if recorded."""
        if not self.connected.is_set():
            return False
        try:
            await self.ari_http.info()
        except AsteriskError as exc:
            log.debug("no heartbeat: Asterisk does not answer (%s)", exc)
            return False
        try:
            await heartbeat(await self.registry.pool(), self.settings.node_name)
        except DATABASE_ERRORS as exc:
            log.warning("heartbeat not recorded (%r)", exc)
            return False
        return True

    async def reap_lost_nodes(self: CallControl) -> None:
        s = self.settings
        try:
            pool = await self.registry.pool()
            async with pool.acquire(timeout=s.call_path_db_timeout_s) as conn:
                reaped = await reap(conn, s.node_name, s.node_lost_after_s)
        except DATABASE_ERRORS as exc:
            log.warning("lost nodes not looked for (%r)", exc)
            return
        metrics.NODES_LOST.set(len(reaped.lost))
        for node, count in reaped.calls.items():
            metrics.CALLS_REAPED.labels(node).inc(count)
            log.warning(
                "node %s lost (no heartbeat for more than %.0fs): %d of its calls released, "
                "recorded as lost", node, s.node_lost_after_s, count,
            )  # fmt: skip

    async def liveness_forever(self: CallControl) -> None:
        while True:
            try:
                await self.beat()
                await self.reap_lost_nodes()
            except Exception:
                log.exception("heartbeat or reaper failed; retrying")
            await asyncio.sleep(self.settings.node_heartbeat_s)
