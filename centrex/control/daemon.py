"""The call-control daemon: owns the Stasis app, decides each call, keeps calls within limits.

Every call from a line enters ``Stasis(centrex)``. The daemon admits it in the database
(:mod:`.call_registry`: the two-call limit, atomic across daemons), then sends the channel on to
the ``centrex-dial`` context with the whole ``Dial()`` argument in one channel variable: Asterisk
rings and bridges, so an admitted call does not depend on the daemon staying up, and the
``L()`` option there cuts it at the maximum duration even if the daemon is dead. A refused call
is hung up with a reason chan_pjsip turns into the SIP code that fits (486, 404, 403).

From then on the daemon follows its calls through Asterisk's CEL journal
(:mod:`.events`) and cuts each call at its deadline with its own timer (:class:`.CutoffTimer`);
every few seconds, and after every (re)connection, it checks its calls against Asterisk's
channels (:mod:`.asterisk_sync`). The process around it: :mod:`.process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from centrex import metrics
from centrex.asterisk.ari import AriClient
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.asterisk.file_tail import FileTail
from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.config import Settings
from centrex.control.asterisk_sync import AsteriskSync
from centrex.control.call_registry import AdmittedCall, CallRef, CallRegistry
from centrex.control.channel_vars import VOICEMAIL_VAR, now
from centrex.control.cutoff_timer import CutoffTimer
from centrex.control.events import CallEvents
from centrex.control.liveness import NodeLiveness
from centrex.core.call_events import CallAnswered
from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.routing import endpoint_of_channel, through_proxy
from centrex.features.call_path import LOOP
from centrex.features.control import FeatureControl
from centrex.features.rules import parse_code, strip_privacy
from centrex.features.transfers.control import TransferControl
from centrex.features.transfers.service import TransferService
from centrex.portability.phone import RIO_SERVICE, serve_rio

log = logging.getLogger(__name__)
T = TypeVar("T")

DIAL_CONTEXT = "centrex-dial"
NOT_IN_SERVICE_CONTEXT = "centrex-not-in-service"
EMERGENCY_CONTEXT = "centrex-emergency"  # out through the trunk without a decision
VOICEMAIL_MAIN_CONTEXT = "centrex-voicemail-main"
VOICEMAIL_CONTEXT = "centrex-voicemail"
# A call ending this close to its deadline, not cut by us, was cut by Asterisk's L() backstop.
CUT_TOLERANCE_S = 0.25


class CallControl(CallEvents, FeatureControl, TransferControl, AsteriskSync, NodeLiveness):
    """Admission, answer, end and cutoff of this node's calls. Mixins in files of their own:
    what the daemon hears (:class:`CallEvents`), line features (:class:`FeatureControl`),
    transfers (:class:`TransferControl`), the agreement with Asterisk's channels
    (:class:`AsteriskSync`), the node's heartbeat and the reaper of lost nodes
    (:class:`NodeLiveness`)."""

    def __init__(
        self,
        settings: Settings,
        registry: CallRegistry,
        ari: AriClient,
        cel: FileTail,
        ari_http: AriClient | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.ari = ari  # small per-call requests (over the events websocket in the daemon)
        # Channel listings can be megabytes: Asterisk 22 builds a websocket frame on its
        # thread's stack and crashes on a large one (seen at ~1000 channels), so they go over
        # plain HTTP.
        self.ari_http = ari_http or ari
        self.cel = cel
        self.following = False  # the CEL journal is being read
        self.connected = asyncio.Event()
        self.calls: dict[str, CallRef] = {}  # this node's calls in progress, by caller channel
        self.cutoffs = CutoffTimer(self.cut)
        self._cut_by_us: set[str] = set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._deciding: set[str] = set()  # channels whose decision is being taken
        self._ended_during_sweep: set[str] | None = None
        # --- transfers (docs/transfers.md)
        self.transfers = TransferService(registry)
        # A call transferred from a channel that was not its key (the transferee was called):
        # its Asterisk linked id -> the transferee's channel, now the call's key. CEL's ANSWER
        # names calls by linked id.
        self._transferred: dict[str, str] = {}

    # --- admission ----------------------------------------------------------------------------
    async def handle_call(self, channel: dict[str, Any]) -> None:
        channel_id = channel["id"]
        if channel_id in self._deciding:  # its StasisStart and a resume after a reconnection
            return
        self._deciding.add(channel_id)
        try:
            await self._decide(channel)
        finally:
            self._deciding.discard(channel_id)

    async def _decide(self, channel: dict[str, Any]) -> None:
        channel_id = channel["id"]
        caller = endpoint_of_channel(channel.get("name", ""))
        dialled = channel.get("dialplan", {}).get("exten", "")
        # 3179 (issue 16): the platform says the line's RIO itself; nothing to route or count.
        if dialled == RIO_SERVICE and caller and not caller.startswith(TRUNK_PREFIX):
            await serve_rio(self.ari, self.registry.sessionmaker, self.settings, channel_id, caller)
            return
        started = time.perf_counter()
        # Issue 15 (centrex/features): a feature code, and the 3651 privacy prefix, of a line.
        hidden, number = False, dialled
        if caller is not None and not caller.startswith(TRUNK_PREFIX):
            if (code := parse_code(dialled)) is not None:
                await self._feature_code(channel_id, caller, code)
                return
            hidden, number = strip_privacy(dialled)
        try:
            # Fail closed, fast: a database that hangs (no RST) must not leave calls ringing
            # and decisions piling up; the caller gets 503 and may retry.
            decision = await self._within_deadline(
                self.registry.admit(
                    channel_id=channel_id,
                    endpoint=caller,
                    dialled=number,
                    caller_number=channel.get("caller", {}).get("number", ""),
                    now=now(),
                    hidden=hidden,
                )
            )
        except TimeoutError:
            log.error(
                "call %s: no decision within %.1fs (database not answering); refused with 503",
                channel_id, self.settings.call_path_db_timeout_s,
            )  # fmt: skip
            metrics.DATABASE_TIMEOUTS.labels("admission").inc()
            await self._undecided(channel_id, caller, dialled)
            return
        except Exception:
            log.exception("call %s: no decision (internal error); refusing", channel_id)
            await self._undecided(channel_id, caller, dialled)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.ADMISSION_SECONDS.observe(elapsed_ms / 1000)
        if not isinstance(decision, AdmittedCall):
            log.info(
                "call %s: %s -> %s refused: %s (%s) (%.1f ms)",
                channel_id, caller, dialled, decision.why, decision.reason, elapsed_ms,
            )  # fmt: skip
            metrics.CALLS_REFUSED.labels(decision.category).inc()
            if decision.category == LOOP:
                await self._to_features(channel_id, "loop")
                return
            if decision.announcement:
                with contextlib.suppress(AsteriskError):
                    await self.ari.continue_in_dialplan(
                        channel_id, NOT_IN_SERVICE_CONTEXT, dialled or "s"
                    )
                    return
            await self._hangup_quietly(channel_id, decision.reason)
            return
        log.info(
            "call %s: %s -> %s %s, dialling %s, max %ss (%.1f ms)",
            channel_id, caller, dialled,
            "admitted earlier, still waiting" if decision.resumed else "admitted",
            decision.dial, decision.limits.max_duration_s, elapsed_ms,
        )  # fmt: skip
        known = self.calls.get(channel_id)
        self.calls[channel_id] = CallRef(
            decision.call_id, channel_id, decision.limits.max_duration_s, None, None, None, None,
            decision.ring_group_id, decision.direction,
        )  # fmt: skip
        if known is None:
            metrics.CALLS_ADMITTED.labels(decision.direction).inc()
            metrics.CALLS_IN_PROGRESS.labels(decision.direction).inc()
        try:
            if decision.caller_id:
                # Out to the public network as the line's number (From and P-Asserted-Identity),
                # with no name: the SIP username is the platform's business, nobody else's.
                await self.ari.set_variable(channel_id, "CALLERID(all)", f"<{decision.caller_id}>")
            await self._apply_features(channel_id, decision.features)
            await self._apply_music(channel_id)
            if decision.hunt:
                await self.ari.set_variable(channel_id, "CENTREX_HUNT", "yes")
            if decision.mailbox:
                await self.ari.set_variable(channel_id, VOICEMAIL_VAR, decision.mailbox)
            if decision.own_mailbox:
                await self.ari.continue_in_dialplan(channel_id, VOICEMAIL_MAIN_CONTEXT, "s")
            elif decision.mailbox_only:
                # The called line is at its limit: its mailbox, as for a busy phone; or it
                # forwards to a mailbox before ringing (issue 15).
                await self.ari.set_variable(channel_id, "DIALSTATUS", decision.mailbox_status)
                await self.ari.continue_in_dialplan(channel_id, VOICEMAIL_CONTEXT, "s")
            else:
                await self._dial(channel_id, dialled, decision.dial, decision)
        except AsteriskUnavailable as exc:
            # Timed out or cut off: Asterisk may have done it anyway. The call must not proceed
            # uncounted, so it stays counted and is hung up; its Hangup event (or the sweep,
            # once the channel is gone) releases it.
            log.warning("call %s: no answer from Asterisk (%s); hanging it up", channel_id, exc)
            await self._hangup_quietly(channel_id, "congestion")
        except AsteriskError as exc:
            # The caller hung up while we decided: the call never happened.
            log.info("call %s: gone before it could proceed (%s); released", channel_id, exc)
            await self.end_call(channel_id)

    async def _apply_music(self, channel_id: str) -> None:
        """The customers' own music on hold for this call (centrex/moh/call_path.py); without
        it (or if it cannot be read now) the held party hears the default music."""
        if self.registry.music.surely_none():
            return
        try:
            caller_hears, callee_hears = await self._within_deadline(
                self.registry.music.of_call(channel_id)
            )
        except Exception as exc:  # the call goes on: music is no reason to refuse it
            log.warning("call %s: music on hold not read (%r); default music", channel_id, exc)
            return
        if caller_hears:
            await self.ari.set_variable(channel_id, "CHANNEL(musicclass)", caller_hears)
        if callee_hears:  # inherited by the channel Dial creates; set there on answer
            await self.ari.set_variable(channel_id, "__CENTREX_MOH", callee_hears)

    async def _undecided(self, channel_id: str, caller: str | None, dialled: str) -> None:
        """No decision could be taken: refused with 503 (fail closed), except an emergency
        call from a line, which goes out through the trunk unchecked (never refused)."""
        from_line = caller is not None and not caller.startswith(TRUNK_PREFIX)
        if from_line and classify_dialled(dialled).kind is DialledKind.emergency:
            log.warning("call %s: emergency call %s put through undecided", channel_id, dialled)
            metrics.EMERGENCY_UNDECIDED.inc()
            with contextlib.suppress(AsteriskError):
                await self.ari.continue_in_dialplan(channel_id, EMERGENCY_CONTEXT, dialled)
                return
        metrics.CALLS_REFUSED.labels("error").inc()
        await self._hangup_quietly(channel_id, "congestion")

    async def _within_deadline(self, operation: Coroutine[Any, Any, T]) -> T:
        """``operation``'s result, or TimeoutError once ``call_path_db_timeout_s`` has passed.

        The operation runs as a task of its own and is cancelled, not awaited, at the deadline:
        a driver unwinding a query PostgreSQL never answers (cancel request, connection reset)
        can take as long as the outage, and the caller must not wait for that."""
        task = asyncio.ensure_future(operation)
        done, _ = await asyncio.wait({task}, timeout=self.settings.call_path_db_timeout_s)
        if task in done:
            return task.result()
        task.cancel()
        self._tasks.add(task)
        task.add_done_callback(self._forget_abandoned)
        raise TimeoutError

    def _forget_abandoned(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("abandoned database operation ended with %r", task.exception())

    async def _dial(self, channel_id: str, dialled: str, dial: str, call: AdmittedCall) -> None:
        ring_s = call.ring_timeout_s or self.settings.ring_timeout_s
        dial = through_proxy(dial, self.settings.sip_proxy)
        dial_args = f"{dial},{ring_s},L({call.limits.asterisk_limit_ms})U(centrex-answered)"
        await self.ari.set_variable(channel_id, "CENTREX_DIAL", dial_args)
        await self.ari.continue_in_dialplan(channel_id, DIAL_CONTEXT, dialled or "s")

    async def handle_hunt_next(self, channel: dict[str, Any], last_status: str) -> None:
        """A hunt's member did not answer (or was busy): ring the next one with room."""
        channel_id = channel["id"]
        dialled = channel.get("dialplan", {}).get("exten", "")
        try:
            target = await self.registry.hunt_next(channel_id)
        except Exception:
            log.exception("call %s: hunt could not go on (internal error); ending", channel_id)
            await self._hangup_quietly(channel_id, "congestion")
            return
        if target is None:
            log.info("call %s: hunt over, no member answered (%s)", channel_id, last_status)
            await self._hangup_quietly(channel_id, "busy" if last_status == "BUSY" else "no_answer")
            return
        limits = await self.registry.limits_of(channel_id)
        log.info("call %s: hunt goes on to %s", channel_id, target)
        try:
            await self._dial(channel_id, dialled, target, limits)
        except AsteriskError as exc:
            log.info("call %s: gone during the hunt (%s); released", channel_id, exc)
            await self.end_call(channel_id)

    async def _hangup_quietly(self, channel_id: str, reason: str) -> None:
        with contextlib.suppress(AsteriskError):
            await self.ari.hangup(channel_id, reason)

    # --- following calls (CEL journal) ---------------------------------------------------------
    async def on_answered(self, event: CallAnswered) -> None:
        channel_id = event.channel_id
        if channel_id not in self.calls or self.calls[channel_id].answered_at is not None:
            return
        async with self._locks[channel_id]:
            ref = self.calls.get(channel_id)
            if ref is None or ref.answered_at is not None:
                return
            await self._answered(channel_id, event.at, event.by)

    async def _answered(self, channel_id: str, at: datetime, by: str | None = None) -> None:
        known = self.calls.get(channel_id)
        try:
            ref = await self._within_deadline(
                self.registry.mark_answered(
                    channel_id, at, ring_group=bool(known and known.ring_group_id), by=by
                )
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The cutoff must not wait for the database: armed from what we know; the row
            # gets its answer from the sweep (Asterisk's stamp on the channel) once it is back.
            metrics.DATABASE_TIMEOUTS.labels("answer").inc()
            if known is None:
                return
            deadline = at + timedelta(seconds=known.max_duration_s)
            log.warning(
                "call %s: answer not recorded (%s); cutoff armed from memory at %s",
                channel_id, type(exc).__name__, deadline.isoformat(),
            )  # fmt: skip
            self.cutoffs.arm(channel_id, deadline)
            self.calls[channel_id] = replace(known, answered_at=at, deadline_at=deadline)
            return
        if ref is None or ref.deadline_at is None:
            return
        self.calls[channel_id] = ref
        self.cutoffs.arm(channel_id, ref.deadline_at)
        log.debug("call %s: answered, cut at %s", channel_id, ref.deadline_at.isoformat())

    async def end_call(self, channel_id: str, *, ended_at: datetime | None = None) -> None:
        async with self._locks[channel_id]:
            known = self.calls.pop(channel_id, None)
            if known is not None:
                metrics.CALLS_IN_PROGRESS.labels(known.direction).dec()
            if self._ended_during_sweep is not None:
                self._ended_during_sweep.add(channel_id)
            self.cutoffs.disarm(channel_id)
            for linkedid in [k for k, v in self._transferred.items() if v == channel_id]:
                del self._transferred[linkedid]
            cut_by_us = channel_id in self._cut_by_us
            self._cut_by_us.discard(channel_id)
            try:
                ref = await self._within_deadline(self.registry.release(channel_id))
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Still counted in the database: the sweep releases it once the database is
                # back, since Asterisk no longer has the channel.
                metrics.DATABASE_TIMEOUTS.labels("release").inc()
                log.warning("call %s: ended, release deferred to the sweep (%r)", channel_id, exc)
                ref = None
        self._locks.pop(channel_id, None)
        if ref is None:
            return
        log.debug("call %s: ended, released", channel_id)
        if ref.answered_at is None or cut_by_us or ended_at is None:
            return
        held = (ended_at - ref.answered_at).total_seconds()
        if held >= ref.max_duration_s - CUT_TOLERANCE_S:
            log.warning("call %s: cut by Asterisk at the maximum duration", channel_id)
            metrics.CALLS_CUT.labels("asterisk").inc()
            await self.registry.record_cutoff(ref, ended_at=ended_at, enforced_by="asterisk")

    async def cut(self, channel_id: str) -> None:
        """The deadline has come: hang up, and record why."""
        ref = self.calls.get(channel_id)
        # A transferred call keeping its deadline is cut at it even while its target rings:
        # its answered part runs on (docs/transfers.md).
        if ref is None or (ref.answered_at is None and ref.transfer_of is None):
            return
        if not await self._still_in_asterisk(channel_id):
            # Ended while nobody was looking: nothing to cut, and no cutoff to record.
            await self.end_call(channel_id)
            return
        self._cut_by_us.add(channel_id)
        await self._hangup_quietly(channel_id, "normal")
        log.warning("call %s: cut at the maximum duration of %ss", channel_id, ref.max_duration_s)
        metrics.CALLS_CUT.labels("daemon").inc()
        if ref.answered_at is None:  # its kept part's answer is the call it continues
            assert ref.deadline_at is not None
            ref = replace(ref, answered_at=ref.deadline_at - timedelta(seconds=ref.max_duration_s))
        try:
            await self.registry.record_cutoff(ref, ended_at=now(), enforced_by="daemon")
        except Exception:  # the cut itself is done; its record is evidence, not control
            log.exception("call %s: cut, but the cutoff record could not be written", channel_id)

    async def _still_in_asterisk(self, channel_id: str) -> bool:
        try:
            return await self.ari.channel_exists(channel_id)
        except AsteriskError:
            return True  # cannot tell: cut it anyway (a hangup of a gone channel is harmless)
