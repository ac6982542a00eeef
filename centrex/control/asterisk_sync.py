"""The daemon's agreement with Asterisk: a mixin of :class:`centrex.control.daemon.CallControl`.

Every few seconds, and after every (re)connection, the calls this node has in the database are
checked against Asterisk's channels: a restarted daemon picks its calls up again, and calls
Asterisk lost are released instead of counting forever. The database's rows are the truth;
``CallControl.calls`` is this process's cache of them."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from centrex import metrics
from centrex.asterisk.errors import AsteriskError
from centrex.control.channel_vars import ANSWERED_BY_VAR, ANSWERED_VAR, now

if TYPE_CHECKING:
    from centrex.control.daemon import CallControl

log = logging.getLogger("centrex.control.daemon")


class AsteriskSync:
    async def sync_with_asterisk(self: CallControl) -> None:
        """Take up every call of this node recorded in the database; release those Asterisk no
        longer has; arm the cutoff of those answered while nobody was watching."""
        # The rows before the channels: a call admitted in between is in neither, rather than
        # in the rows only (and released as gone). A call that ends in between is remembered in
        # _ended_during_sweep and not taken back from the stale rows.
        ended: set[str] = set()
        self._ended_during_sweep = ended
        # Followed before the rows are read, so each has its row written already (admission
        # writes the row first): one not in the rows was released by someone else.
        followed = set(self.calls)
        try:
            rows = await self.registry.calls_on_node()
            channels = {c["id"]: c for c in await self.ari_http.list_channels()}
        except AsteriskError as exc:
            log.warning("cannot list Asterisk's channels (%s); calls kept as they are", exc)
            return
        finally:
            self._ended_during_sweep = None
        for ref in rows:
            if ref.channel_id in ended:
                continue
            channel = channels.get(ref.channel_id)
            if channel is None:
                # Ended while we were not looking (daemon down, or Asterisk restarted): it stops
                # counting now. Its true end time is not known here.
                log.info("call %s: no longer in Asterisk; released", ref.channel_id)
                await self.end_call(ref.channel_id)
                continue
            async with self._locks[ref.channel_id]:
                if ref.channel_id in ended:  # ended while we took the lock
                    continue
                self.calls.setdefault(ref.channel_id, ref)
            # A transferred call's channel was answered before the transfer: its answer (of
            # the target) comes from the journal, not from a stamp of the call it continues.
            if ref.answered_at is None and ref.transfer_of is None and channel.get("state") == "Up":
                stamp = await self.ari.get_variable(ref.channel_id, ANSWERED_VAR)
                at = datetime.fromtimestamp(float(stamp), UTC) if stamp else now()
                by = None
                if ref.ring_group_id is not None:
                    by = await self.ari.get_variable(ref.channel_id, ANSWERED_BY_VAR) or None
                async with self._locks[ref.channel_id]:
                    await self._answered(ref.channel_id, at, by)
            elif ref.deadline_at is not None and not self.cutoffs.armed(ref.channel_id):
                self.calls[ref.channel_id] = ref
                self.cutoffs.arm(ref.channel_id, ref.deadline_at)
        released = followed - {ref.channel_id for ref in rows} - set(channels) - ended
        for channel_id in released:
            await self._forget_released(channel_id)
        self._publish_calls_in_progress()

    async def _forget_released(self: CallControl, channel_id: str) -> None:
        """A call this daemon follows, gone from Asterisk, whose row another node's daemon
        released (it judged this node lost, docs/cluster.md): stop following it. Nothing to
        release, and it is not counted again."""
        async with self._locks[channel_id]:
            if self.calls.pop(channel_id, None) is None:
                return
            self.cutoffs.disarm(channel_id)
            for linkedid in [k for k, v in self._transferred.items() if v == channel_id]:
                del self._transferred[linkedid]
        self._locks.pop(channel_id, None)
        log.warning("call %s: released by another node (this node was judged lost)", channel_id)

    def _publish_calls_in_progress(self: CallControl) -> None:
        """The gauge from the table itself (calls taken up after a restart included)."""
        counts = Counter(ref.direction for ref in self.calls.values())
        for direction in ("outbound", "inbound", "on-net"):
            metrics.CALLS_IN_PROGRESS.labels(direction).set(counts.get(direction, 0))

    async def sweep_forever(self: CallControl) -> None:
        while True:
            await asyncio.sleep(self.settings.call_sweep_interval_s)
            if self.connected.is_set():
                try:
                    await self.sync_with_asterisk()
                except Exception:
                    log.exception("sweep failed; retrying")
