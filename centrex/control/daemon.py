"""The call-control daemon: owns the Stasis app, decides each call, hands it back to Asterisk.

Every call from a line enters ``Stasis(centrex)``; the daemon looks the parties up, asks the pure
core (:mod:`centrex.core.routing`) for a decision, then either sends the channel on to the
``centrex-dial`` context with the dial target in channel variables (Asterisk does the ringing and
bridging, so an admitted call does not depend on the daemon staying up) or hangs it up with a
reason that chan_pjsip turns into the right SIP code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from centrex.asterisk.ami import AmiClient
from centrex.asterisk.ari import AriClient
from centrex.asterisk.ari_events import stream_events
from centrex.asterisk.errors import AsteriskError
from centrex.config import Settings
from centrex.core.routing import Admit, Decision, LineInfo, endpoint_of_channel, route_from_line
from centrex.db.models import Line
from centrex.db.session import make_engine, make_sessionmaker

log = logging.getLogger(__name__)

DIAL_CONTEXT = "centrex-dial"
RING_TIMEOUT_S = 60
RECONNECT_MAX_S = 10.0


async def load_lines(session: AsyncSession, usernames: set[str]) -> dict[str, LineInfo]:
    rows = await session.scalars(
        select(Line).where(Line.sip_username.in_(usernames), Line.deleted_at.is_(None))
    )
    return {
        line.sip_username: LineInfo(line.id, line.customer_id, line.sip_username, line.max_calls)
        for line in rows
    }


class CallControl:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        ari: AriClient,
        ami: AmiClient,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.ari = ari
        self.ami = ami
        self.connected = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- decisions ----------------------------------------------------------------------------
    async def decide(self, channel: dict[str, Any]) -> Decision:
        caller_name = endpoint_of_channel(channel.get("name", ""))
        dialed = channel.get("dialplan", {}).get("exten", "")
        async with self.sessionmaker() as session:
            lines = await load_lines(session, {n for n in (caller_name, dialed) if n})
        return route_from_line(
            lines.get(caller_name) if caller_name else None, dialed, lines.get(dialed)
        )

    async def handle_call(self, channel: dict[str, Any]) -> None:
        channel_id = channel["id"]
        started = time.perf_counter()
        try:
            decision = await self.decide(channel)
        except Exception:
            log.exception("call %s: no decision (internal error); refusing", channel_id)
            await self._hangup_quietly(channel_id, "congestion")
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        caller = channel.get("caller", {}).get("number", "")
        dialed = channel.get("dialplan", {}).get("exten", "")
        try:
            if isinstance(decision, Admit):
                log.info(
                    "call %s: %s -> %s admitted, dialling %s (%.1f ms)",
                    channel_id, caller, dialed, decision.dial, elapsed_ms,
                )  # fmt: skip
                await self.ari.set_variable(channel_id, "CENTREX_DIAL", decision.dial)
                await self.ari.set_variable(channel_id, "CENTREX_RING_TIMEOUT", str(RING_TIMEOUT_S))
                await self.ari.continue_in_dialplan(channel_id, DIAL_CONTEXT)
            else:
                log.info(
                    "call %s: %s -> %s refused: %s (%s) (%.1f ms)",
                    channel_id, caller, dialed, decision.why, decision.reason, elapsed_ms,
                )  # fmt: skip
                await self.ari.hangup(channel_id, decision.reason)
        except AsteriskError as exc:
            # Typically the caller hung up while we decided: nothing left to do.
            log.info("call %s: could not apply decision: %s", channel_id, exc)

    async def _hangup_quietly(self, channel_id: str, reason: str) -> None:
        with contextlib.suppress(AsteriskError):
            await self.ari.hangup(channel_id, reason)

    # --- events -------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "CentrexConnected":
            self.connected.set()
            self._spawn(self.resume_waiting_calls())
        elif kind == "StasisStart":
            # Each call is decided in its own task: a slow lookup never delays other calls.
            self._spawn(self.handle_call(event["channel"]))

    async def resume_waiting_calls(self) -> None:
        """Calls that entered Stasis while we were disconnected are still waiting: decide them."""
        try:
            channels = await self.ari.list_channels()
        except AsteriskError as exc:
            log.warning("could not list channels after connecting: %s", exc)
            return
        for channel in channels:
            dialplan = channel.get("dialplan", {})
            if (
                dialplan.get("app_name") == "Stasis"
                and dialplan.get("app_data", "").split(",")[0] == self.settings.stasis_app
                and channel.get("state") == "Ring"
            ):
                log.info("call %s: was waiting for a decision; deciding now", channel["id"])
                self._spawn(self.handle_call(channel))

    async def run(self) -> None:
        self.ami.start()
        backoff = 0.5
        while True:
            try:
                async for event in stream_events(self.settings):
                    backoff = 0.5
                    await self.on_event(event)
                log.warning("ARI events connection closed by Asterisk; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.connected.is_set():
                    log.warning("ARI events connection lost (%s); reconnecting", exc)
                else:
                    log.debug("ARI not reachable yet (%s); retrying in %.1fs", exc, backoff)
            self.connected.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_S)


async def run_daemon(settings: Settings) -> None:
    engine = make_engine(settings.database_url_required)
    ari = AriClient.from_settings(settings)
    ami = AmiClient.from_settings(settings)
    control = CallControl(settings, make_sessionmaker(engine), ari, ami)
    try:
        await control.run()
    finally:
        ami.close()
        await ari.aclose()
        await engine.dispose()
