"""The call-control daemon's part of transfers (docs/transfers.md): a mixin of
:class:`centrex.control.daemon.CallControl`, like :mod:`centrex.features.control`.

A blind transfer's transferee comes back to Stasis and is decided as a call the transferer
places (:class:`.TransferService`); an attended transfer, done by Asterisk inside its bridges,
joins two calls into one row. Either way the transferer's hangups that follow in the CEL
journal must not release the calls that go on."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from centrex import metrics
from centrex.asterisk.errors import AsteriskError
from centrex.control.call_registry import CallRef
from centrex.control.channel_vars import VOICEMAIL_VAR, now
from centrex.core.call_events import CallsJoined, CallTransferred
from centrex.core.routing import Refuse, endpoint_of_channel

if TYPE_CHECKING:
    from centrex.control.daemon import CallControl

log = logging.getLogger("centrex.control.daemon")


class TransferControl:
    async def handle_transfer(
        self: CallControl, channel: dict[str, Any], transferer_channel: str
    ) -> None:
        """A blind transfer's transferee, back in Stasis: its new call is decided as one the
        transferer places, replacing the call it was in; refused, the transferee is hung up
        (Asterisk has already taken it from the transferer: there is no call to go back to)."""
        channel_id = channel["id"]
        dialled = channel.get("dialplan", {}).get("exten", "")
        try:
            linkedid = await self.ari.get_variable(channel_id, "CHANNEL(linkedid)") or channel_id
            decision = await self._within_deadline(
                self.transfers.decide(
                    channel_id=channel_id, linkedid=linkedid,
                    transferee=endpoint_of_channel(channel.get("name", "")),
                    transferer=endpoint_of_channel(transferer_channel), dialled=dialled,
                    now=now(),
                )
            )  # fmt: skip
        except Exception as exc:
            log.error("transfer of %s: no decision (%r); hanging it up", channel_id, exc)
            metrics.CALLS_REFUSED.labels("error").inc()
            await self._hangup_quietly(channel_id, "congestion")
            return
        if isinstance(decision, Refuse):
            log.info("transfer of %s by %s to %s refused: %s", channel_id,
                     transferer_channel, dialled, decision.why)  # fmt: skip
            metrics.CALLS_REFUSED.labels(decision.category).inc()
            await self._hangup_quietly(channel_id, decision.reason)
            return
        call = decision.call
        async with self._locks[channel_id]:
            for key in dict.fromkeys((linkedid, channel_id)):
                known = self.calls.pop(key, None)
                if known is not None:
                    metrics.CALLS_IN_PROGRESS.labels(known.direction).dec()
                self.cutoffs.disarm(key)
            self.calls[channel_id] = CallRef(
                call.call_id, channel_id, call.limits.max_duration_s, None, decision.deadline_at,
                None, None, None, call.direction, decision.transfer_of,
            )  # fmt: skip
            metrics.CALLS_IN_PROGRESS.labels(call.direction).inc()
            if linkedid != channel_id:
                self._transferred[linkedid] = channel_id
            if decision.deadline_at is not None:
                self.cutoffs.arm(channel_id, decision.deadline_at)
        log.info(
            "transfer of %s by %s to %s admitted, dialling %s (continues call %s)",
            channel_id, transferer_channel, dialled, call.dial, decision.transfer_of,
        )  # fmt: skip
        try:
            if call.caller_id:
                await self.ari.set_variable(channel_id, "CALLERID(all)", f"<{call.caller_id}>")
            # The target's mailbox if nobody answers; never the one the transferee's channel
            # still names from its first call (voicemail, docs/voicemail.md).
            await self.ari.set_variable(channel_id, VOICEMAIL_VAR, call.mailbox or "")
            await self._dial(channel_id, dialled, call.dial, call)
        except AsteriskError as exc:
            log.info("transfer of %s: gone before it could proceed (%s)", channel_id, exc)
            await self.end_call(channel_id)

    def _handed_over(self: CallControl, event: CallTransferred) -> None:
        """The transferer's channel held the call (it had placed it): its hangup, which
        follows, must not release the call the transferee now carries on. The transfer's
        decision replaces the row; if it never comes, the sweep releases it (channel gone)."""
        if event.channel_id in self.calls and event.transferee != event.channel_id:
            known = self.calls.pop(event.channel_id)
            metrics.CALLS_IN_PROGRESS.labels(known.direction).dec()
            self.cutoffs.disarm(event.channel_id)

    def _joined(self: CallControl, event: CallsJoined) -> None:
        """An attended transfer, done by Asterisk inside its bridges: the transferer's channels'
        hangups, which follow in the journal, must not release the calls; their rows become
        one call, keyed by the transferee's channel."""
        keys = [
            k for k in dict.fromkeys((event.linkedid, event.channel_id, event.transferee,
                                      event.channel2, event.target))
            if k in self.calls
        ]  # fmt: skip
        if not keys:
            return  # not calls of this node
        for key in keys:
            known = self.calls.pop(key)
            metrics.CALLS_IN_PROGRESS.labels(known.direction).dec()
            self.cutoffs.disarm(key)
        self._spawn(self._join(event))

    async def _join(self: CallControl, event: CallsJoined) -> None:
        try:
            joined = await self._within_deadline(
                self.transfers.join(
                    transferer=(event.channel_id, event.linkedid), transferer2=event.channel2,
                    transferee=event.transferee, target=event.target, now=now(),
                )
            )  # fmt: skip
        except Exception as exc:
            log.error("attended transfer by %s: not recorded (%r)", event.channel_id, exc)
            joined = None
        if joined is None:
            # Joined calls nobody counts must not go on: fail closed.
            log.error("attended transfer by %s: calls not found; hanging the result up",
                      event.channel_id)  # fmt: skip
            metrics.CALLS_REFUSED.labels("error").inc()
            await self._hangup_quietly(event.transferee, "congestion")
            return
        key = joined.channel_id
        async with self._locks[key]:
            self.calls[key] = CallRef(
                joined.call_id, key, joined.max_duration_s, joined.answered_at,
                joined.deadline_at, joined.caller_line_id, joined.callee_line_id, None,
                joined.direction, joined.transfer_of,
            )  # fmt: skip
            metrics.CALLS_IN_PROGRESS.labels(joined.direction).inc()
            if joined.deadline_at is not None:
                self.cutoffs.arm(key, joined.deadline_at)
        log.info("attended transfer by %s: calls joined as %s, cut at %s", event.channel_id,
                 joined.call_id, joined.deadline_at)  # fmt: skip
