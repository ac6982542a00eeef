"""The call-control daemon: owns the Stasis app, decides each call, keeps calls within limits.

Every call from a line enters ``Stasis(centrex)``. The daemon admits it in the database
(:mod:`.call_registry`: the two-call limit, atomic across daemons), then sends the channel on to
the ``centrex-dial`` context with the whole ``Dial()`` argument in one channel variable: Asterisk
rings and bridges, so an admitted call does not depend on the daemon staying up, and the
``L()`` option there cuts it at the maximum duration even if the daemon is dead. A refused call
is hung up with a reason chan_pjsip turns into the SIP code that fits (486, 404, 403).

From then on the daemon follows its calls through Asterisk's CEL journal, read as it is
written (:mod:`centrex.asterisk.file_tail`; answer and end: :mod:`centrex.core.call_events`),
not through AMI: an open AMI session costs Asterisk about 1 ms of CPU per call. It cuts each call
at its deadline with its own timer (:class:`.CutoffTimer`), and every
few seconds, and after every (re)connection, checks its calls against Asterisk's channels: a
restarted daemon picks its calls up again from the database and Asterisk, and calls Asterisk
lost are released instead of counting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from centrex import metrics
from centrex.asterisk.ari import AriClient
from centrex.asterisk.ari_events import AriWebSocket
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.asterisk.file_tail import FileTail
from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.cdr.journal_path import journal_path
from centrex.config import Settings
from centrex.control.call_registry import AdmittedCall, CallRef, CallRegistry
from centrex.control.cutoff_timer import CutoffTimer
from centrex.core.call_events import (
    CallAnswered,
    CallEnded,
    CallsJoined,
    CallTransferred,
    call_event_of,
)
from centrex.core.cdr import parse_line
from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.routing import Refuse, endpoint_of_channel
from centrex.db.session import make_engine
from centrex.features.call_path import LOOP
from centrex.features.control import FORWARD_ARG, FeatureControl
from centrex.features.rules import parse_code, strip_privacy
from centrex.features.transfers.service import TRANSFER_ARG, TransferService
from centrex.metrics import DAEMON_REGISTRY
from centrex.portability.phone import RIO_SERVICE, serve_rio
from centrex.service_http import health_served

log = logging.getLogger(__name__)
T = TypeVar("T")

DIAL_CONTEXT = "centrex-dial"
NOT_IN_SERVICE_CONTEXT = "centrex-not-in-service"
EMERGENCY_CONTEXT = "centrex-emergency"  # out through the trunk without a decision
ANSWERED_VAR = "CENTREX_ANSWERED_AT"  # stamped on the caller's channel by the dialplan
ANSWERED_BY_VAR = "CENTREX_ANSWERED_BY"  # the endpoint that answered, likewise
HUNT_ARG = "hunt"  # Stasis argument of a hunt coming back for its next member
# The called line's mailbox, for the dialplan to take an unanswered call there (centrex-dial);
# the calling line's own, for VoiceMailMain (centrex-voicemail-main, reached by *98).
VOICEMAIL_VAR = "CENTREX_VOICEMAIL"
VOICEMAIL_MAIN_CONTEXT = "centrex-voicemail-main"
VOICEMAIL_CONTEXT = "centrex-voicemail"
RECONNECT_MAX_S = 10.0
# The ARI messages the daemon acts on; Asterisk drops the rest before sending. RESTResponse
# must be listed: the filter applies to the answers to requests made over the websocket too.
APP_EVENTS = ["StasisStart", "RESTResponse"]
# A call ending this close to its deadline, not cut by us, was cut by Asterisk's L() backstop.
CUT_TOLERANCE_S = 0.25


def now() -> datetime:
    return datetime.now(UTC)


class CallControl(FeatureControl):  # FeatureControl: issue 15's line features
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
            if decision.hunt:
                await self.ari.set_variable(channel_id, "CENTREX_HUNT", "yes")
            if decision.mailbox:
                await self.ari.set_variable(channel_id, VOICEMAIL_VAR, decision.mailbox)
            if decision.own_mailbox:
                await self.ari.continue_in_dialplan(channel_id, VOICEMAIL_MAIN_CONTEXT, "s")
            elif decision.mailbox_only:
                # The called line is at its limit: its mailbox, as for a busy phone.
                await self.ari.set_variable(channel_id, "DIALSTATUS", "BUSY")
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

    # --- transfers (docs/transfers.md) ----------------------------------------------------------
    async def handle_transfer(self, channel: dict[str, Any], transferer_channel: str) -> None:
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

    def _handed_over(self, event: CallTransferred) -> None:
        """The transferer's channel held the call (it had placed it): its hangup, which
        follows, must not release the call the transferee now carries on. The transfer's
        decision replaces the row; if it never comes, the sweep releases it (channel gone)."""
        if event.channel_id in self.calls and event.transferee != event.channel_id:
            known = self.calls.pop(event.channel_id)
            metrics.CALLS_IN_PROGRESS.labels(known.direction).dec()
            self.cutoffs.disarm(event.channel_id)

    def _joined(self, event: CallsJoined) -> None:
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

    async def _join(self, event: CallsJoined) -> None:
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

    # --- agreement with Asterisk --------------------------------------------------------------
    async def sync_with_asterisk(self) -> None:
        """Take up every call of this node recorded in the database; release those Asterisk no
        longer has; arm the cutoff of those answered while nobody was watching."""
        # The rows before the channels: a call admitted in between is in neither, rather than
        # in the rows only (and released as gone). A call that ends in between is remembered in
        # _ended_during_sweep and not taken back from the stale rows.
        ended: set[str] = set()
        self._ended_during_sweep = ended
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
        self._publish_calls_in_progress()

    def _publish_calls_in_progress(self) -> None:
        """The gauge from the table itself (calls taken up after a restart included)."""
        counts = Counter(ref.direction for ref in self.calls.values())
        for direction in ("outbound", "inbound", "on-net"):
            metrics.CALLS_IN_PROGRESS.labels(direction).set(counts.get(direction, 0))

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.call_sweep_interval_s)
            if self.connected.is_set():
                try:
                    await self.sync_with_asterisk()
                except Exception:
                    log.exception("sweep failed; retrying")

    # --- events -------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_ari_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "CentrexConnected":
            self.connected.set()
            metrics.ASTERISK_CONNECTED.labels("ari").set(1)
            metrics.ASTERISK_RECONNECTS.labels("ari").inc()
            self._spawn(self._filter_events())
            self._spawn(self.sync_with_asterisk())
            self._spawn(self.resume_waiting_calls())
        elif kind == "StasisStart":
            # Each call is decided in its own task: a slow lookup never delays other calls.
            self._spawn(self._start(event["channel"], event.get("args", [])))

    def _start(self, channel: dict[str, Any], args: list[str]) -> Any:
        if args and args[0] == TRANSFER_ARG:
            return self.handle_transfer(channel, args[1] if len(args) > 1 else "")
        if args and args[0] == HUNT_ARG:
            return self.handle_hunt_next(channel, args[1] if len(args) > 1 else "")
        if args and args[0] == FORWARD_ARG:
            status, path = [*args[1:], "", ""][:2]
            return self.handle_forward(channel, status, path)
        return self.handle_call(channel)

    def on_cel_line(self, line: str) -> None:
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

    async def follow_calls(self) -> None:
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

    async def _filter_events(self) -> None:
        """Only StasisStart is of use here: without a filter every channel in the app also
        sends ChannelVarset (our own set_variable), ChannelDialplan, StasisEnd ... each one
        a JSON frame Asterisk writes and this loop parses for nothing."""
        try:
            await self.ari.filter_events(self.settings.stasis_app, APP_EVENTS)
        except AsteriskError as exc:
            log.warning("ARI event filter not set (%s); every event comes through", exc)

    async def resume_waiting_calls(self) -> None:
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

    async def run(self, websocket: AriWebSocket) -> None:
        # Before the first sweep: whatever happens after it is read from the journal.
        self.cel.start_at_end()
        self._spawn(self.follow_calls())
        self._spawn(self.sweep_forever())
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


async def run_daemon(settings: Settings) -> None:
    # The call path has its own asyncpg pool in the registry (a fixed set of connections: a
    # burst of calls waits its turn for one rather than forking a backend per call); this engine
    # only records the rare cutoff.
    engine = make_engine(
        settings.database_url_required,
        pool_size=2,
        max_overflow=2,
        # A broken connection is dropped by the pool on its first error rather than pinged
        # before every use.
        pool_pre_ping=False,
        pool_timeout=settings.call_path_db_timeout_s,
        connect_args={
            "timeout": settings.call_path_db_timeout_s,
            "command_timeout": settings.call_path_db_timeout_s,
        },
    )
    registry = CallRegistry(
        engine, settings.node_name, settings.max_call_duration_s, pool_size=20, settings=settings
    )
    websocket = AriWebSocket(settings)
    ari = AriClient(websocket)  # per-call requests ride the events websocket
    ari_http = AriClient.from_settings(settings, "control")
    control = CallControl(settings, registry, ari, FileTail(journal_path(settings)), ari_http)
    # CDRs are another process's business (`centrex cdr`, centrex/cdr/): a slow CDR batch or a
    # crash of the shipper never delays or stops a call decision.

    async def database_reachable() -> bool:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
        return True

    async def ari_connected() -> bool:
        return control.connected.is_set()

    async def following_calls() -> bool:
        # cel_custom writes into this directory (and does not create it): without it, answers
        # and hang-ups would only be seen by the sweep.
        return control.following and control.cel.path.parent.is_dir()

    checks = {"ari": ari_connected, "cel": following_calls, "database": database_reachable}
    try:
        async with health_served(
            "centrex call control", DAEMON_REGISTRY, checks,
            host=settings.control_http_host, port=settings.control_http_port,
        ):  # fmt: skip
            await control.run(websocket)
    finally:
        control.cutoffs.cancel_all()
        await ari.aclose()
        await ari_http.aclose()
        await registry.aclose()
        await engine.dispose()
