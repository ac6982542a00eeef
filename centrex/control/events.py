"""What the daemon hears: a mixin of :class:`centrex.control.daemon.CallControl`.

Calls arrive as ARI ``StasisStart`` events (each decided in a task of its own); answers, ends
and transfers are read from Asterisk's CEL journal as it is written
(:mod:`centrex.asterisk.file_tail`), not through AMI: an open AMI session costs Asterisk about
1 ms of CPU per call."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from centrex import metrics
from centrex.asterisk.ari_events import AriWebSocket
from centrex.asterisk.errors import AsteriskError
from centrex.core.call_events import (
    CallAnswered,
    CallEnded,
    CallsJoined,
    CallTransferred,
    call_event_of,
)
from centrex.core.cdr import parse_line
from centrex.features.control import FORWARD_ARG
from centrex.features.transfers.service import TRANSFER_ARG

if TYPE_CHECKING:
    from centrex.control.daemon import CallControl

log = logging.getLogger("centrex.control.daemon")

HUNT_ARG = "hunt"  # Stasis argument of a hunt coming back for its next member
RECONNECT_MAX_S = 10.0
# The ARI messages the daemon acts on; Asterisk drops the rest before sending. RESTResponse
# must be listed: the filter applies to the answers to requests made over the websocket too.
APP_EVENTS = ["StasisStart", "RESTResponse"]


class CallEvents:
    def _spawn(self: CallControl, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_ari_event(self: CallControl, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "CentrexConnected":
            self.connected.set()
            metrics.ASTERISK_CONNECTED.labels("ari").set(1)
            metrics.ASTERISK_RECONNECTS.labels("ari").inc()
            self._spawn(self.beat())  # at once: a node back from the dead is alive again
            self._spawn(self._filter_events())
            self._spawn(self.sync_with_asterisk())
            self._spawn(self.resume_waiting_calls())
        elif kind == "StasisStart":
            # Each call is decided in its own task: a slow lookup never delays other calls.
            self._spawn(self._start(event["channel"], event.get("args", [])))

    def _start(self: CallControl, channel: dict[str, Any], args: list[str]) -> Any:
        if args and args[0] == TRANSFER_ARG:
            return self.handle_transfer(channel, args[1] if len(args) > 1 else "")
        if args and args[0] == HUNT_ARG:
            return self.handle_hunt_next(channel, args[1] if len(args) > 1 else "")
        if args and args[0] == FORWARD_ARG:
            status, path = [*args[1:], "", ""][:2]
            return self.handle_forward(channel, status, path)
        return self.handle_call(channel)

    def on_cel_line(self: CallControl, line: str) -> None:
        try:
            event = call_event_of(parse_line(line))
        except (ValueError, StopIteration):
            log.warning("unreadable CEL line skipped: %r", line[:200])
            return
        if isinstance(event, CallTransferred):
            self._handed_over(event)
            return
        if isinstance(event, CallsJoined):
            self._joined(event)
            return
        if isinstance(event, CallAnswered) and event.channel_id in self._transferred:
            event = replace(event, channel_id=self._transferred[event.channel_id])
        if event is None or event.channel_id not in self.calls:
            return
        if isinstance(event, CallAnswered):
            self._spawn(self.on_answered(event))
        elif isinstance(event, CallEnded):
            self._spawn(self.end_call(event.channel_id, ended_at=event.at))

    async def follow_calls(self: CallControl) -> None:
        """Read the CEL journal as Asterisk writes it, every ``call_events_poll_s``, from where
        :meth:`run` opened it."""
        self.following = True
        try:
            while True:
                try:
                    for line in self.cel.read_lines():
                        self.on_cel_line(line)
                except OSError as exc:
                    log.warning("CEL journal unreadable (%s); retrying", exc)
                except Exception:  # one bad record must not stop the following of every call
                    log.exception("CEL journal: a record could not be handled; reading on")
                await asyncio.sleep(self.settings.call_events_poll_s)
        finally:
            self.following = False
            self.cel.close()

    async def _filter_events(self: CallControl) -> None:
        """Only StasisStart is of use here: without a filter every channel in the app also
        sends ChannelVarset (our own set_variable), ChannelDialplan, StasisEnd ... each one
        a JSON frame Asterisk writes and this loop parses for nothing."""
        try:
            await self.ari.filter_events(self.settings.stasis_app, APP_EVENTS)
        except AsteriskError as exc:
            log.warning("ARI event filter not set (%s); every event comes through", exc)

    async def resume_waiting_calls(self: CallControl) -> None:
        """Calls that entered Stasis while we were disconnected are still waiting: decide them."""
        try:
            channels = await self.ari_http.list_channels()
        except AsteriskError as exc:
            log.warning("could not list channels after connecting: %s", exc)
            return
        for channel in channels:
            dialplan = channel.get("dialplan", {})
            app, *args = dialplan.get("app_data", "").split(",")
            if (
                dialplan.get("app_name") == "Stasis"
                and app == self.settings.stasis_app
                and channel.get("state") == "Ring"
            ):
                log.info("call %s: was waiting for a decision; deciding now", channel["id"])
                self._spawn(self._start(channel, args))

    async def run(self: CallControl, websocket: AriWebSocket) -> None:
        # Before the first sweep: whatever happens after it is read from the journal.
        self.cel.start_at_end()
        self._spawn(self.follow_calls())
        self._spawn(self.sweep_forever())
        self._spawn(self.liveness_forever())
        backoff = 0.5

        def on_event(event: dict[str, Any]) -> None:
            nonlocal backoff
            backoff = 0.5
            self.on_ari_event(event)

        while True:
            try:
                await websocket.run(on_event)
                log.warning("ARI events connection closed by Asterisk; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    log.warning("ARI events connection lost (%s); reconnecting", exc)
                else:
                    log.debug("ARI not reachable yet (%s); retrying in %.1fs", exc, backoff)
            self.connected.clear()
            metrics.ASTERISK_CONNECTED.labels("ari").set(0)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)
