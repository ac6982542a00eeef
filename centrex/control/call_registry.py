"""Calls in progress, in the database every daemon shares.

Admission is one database statement (``centrex_admit_call``, migration 0003): it locks the rows of
the lines involved (in id order, so two calls between the same lines cannot deadlock), counts
their calls in progress and records the call if every line has room. N simultaneous attempts on
one line, on any number of daemons and Asterisk nodes, admit exactly the line's limit. The pure
core decides everything else (where the call goes, its maximum duration, why it was refused).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from centrex import metrics
from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.config import Settings
from centrex.core.admission import ASTERISK_BACKSTOP_S, CallLimits, admit_call, call_limits
from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.policy import (
    CallPolicyFacts,
    PolicyLevel,
    check_call,
    destination_of,
    period_start,
)
from centrex.core.routing import (
    Admit,
    LineInfo,
    NumberTarget,
    Refuse,
    RingGroupInfo,
    route_call,
)
from centrex.db.models import ActiveCall, ActiveCallLeg, CallCutoff
from centrex.db.session import make_sessionmaker
from centrex.features.call_path import FeatureCalls, Plan
from centrex.features.rules import CallFeatures, Condition
from centrex.moh.call_path import MusicClasses
from centrex.voicemail.rules import VOICEMAIL_CODE, busy_goes_to_mailbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdmittedCall:
    call_id: uuid.UUID
    dial: str
    limits: CallLimits
    caller_id: str | None = None  # E.164 to present on the public network
    ring_timeout_s: int | None = None  # a ring group's, instead of the platform's
    hunt: bool = False  # a hunt: when this member does not answer, ask for the next
    ring_group_id: uuid.UUID | None = None
    direction: str = "on-net"
    # Admitted by an earlier decision that never reached Asterisk (the connection dropped
    # after the commit): the call still waits in Stasis, counted; it is dialled now.
    resumed: bool = False
    features: CallFeatures | None = None  # issue 15: privacy, Diversion, forwards after ringing
    # The called line's mailbox (its SIP username), when the call rings one line: if nobody
    # answers, the line is busy or not registered, the dialplan takes the call there if the
    # mailbox is on (centrex/voicemail/, docs/voicemail.md).
    mailbox: str | None = None
    # The called line is at its limit: no Dial, straight to its mailbox (as a busy line's).
    mailbox_only: bool = False
    # The line dialled the voicemail code: VoiceMailMain on its own mailbox.
    own_mailbox: bool = False
    # The DIALSTATUS a mailbox_only call reaches the mailbox with: BUSY (a full line, a busy
    # forward: the "busy" greeting) or NOANSWER (an unconditional forward: "unavailable").
    mailbox_status: str = "BUSY"


@dataclass(frozen=True)
class CallRef:
    """What the daemon keeps in memory about one of its calls."""

    call_id: uuid.UUID
    channel_id: str
    max_duration_s: int
    answered_at: datetime | None
    deadline_at: datetime | None
    caller_line_id: uuid.UUID | None
    callee_line_id: uuid.UUID | None
    ring_group_id: uuid.UUID | None = None
    direction: str = "on-net"
    transfer_of: uuid.UUID | None = None  # a transferred call (docs/transfers.md)


# The statements of the call path, in plain SQL on asyncpg: each is prepared once per
# connection (asyncpg's statement cache) and then costs one round trip, without SQLAlchemy's
# compilation and result processing, which were most of the daemon's CPU per call.
CALL_REF_COLUMNS = (  # in CallRef's field order
    "id, channel_id, max_duration_s, answered_at, deadline_at, caller_line_id, callee_line_id,"
    " ring_group_id, direction, transfer_of"
)
# A line's policy level is read from the restrictions in force on it and its customer in the
# statement that finds the line (migration 0010): never a copy that a new line could miss.
DIRECTORY = (
    "SELECT id, customer_id, sip_username, max_calls, max_call_duration_s, main_number,"
    " centrex_policy_level(id, customer_id)"
    " FROM lines WHERE deleted_at IS NULL AND sip_username = ANY($1::text[])"
)
OUTBOUND_TRUNK = "SELECT name FROM trunks ORDER BY created_at LIMIT 1"
# The trunk out, and the destination's standing on the operator's list, in one round trip.
TRUNK_AND_DESTINATION = (
    "SELECT (SELECT name FROM trunks ORDER BY created_at LIMIT 1),"
    " d.code IS NOT NULL, d.suspended_at IS NOT NULL"
    " FROM (SELECT 1) AS one LEFT JOIN destinations d ON d.code = $1"
)
ADMIT = "SELECT centrex_admit_call($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
RECORD_REFUSAL = (
    "INSERT INTO call_attempts (node, channel_id, call_id, outcome, direction, caller, callee,"
    " caller_line_id, callee_line_id, ring_group_id, max_duration_s, decided_at, reason)"
    " VALUES ($1, $2, $3, 'refused_policy', $4, $5, $6, $7, $8, NULL, 0, $9, $10)"
    " ON CONFLICT (node, channel_id) DO NOTHING"
)
COUNT_NUMBER = "SELECT centrex_count_number($1, $2, $3, $4, $5)"
HUNT_NEXT = "SELECT centrex_hunt_next($1, $2)"
# A transferred call may keep an earlier deadline (docs/transfers.md): the earliest holds.
MARK_ANSWERED = (
    "UPDATE active_calls SET answered_at = $3::timestamptz,"
    " deadline_at = least(deadline_at, $3::timestamptz + make_interval(secs => max_duration_s))"
    " WHERE node = $1 AND channel_id = $2 AND answered_at IS NULL"
    f" RETURNING {CALL_REF_COLUMNS}"
)
THIS_CALL = f"SELECT {CALL_REF_COLUMNS} FROM active_calls WHERE node = $1 AND channel_id = $2"
RELEASE = (
    f"DELETE FROM active_calls WHERE node = $1 AND channel_id = $2 RETURNING {CALL_REF_COLUMNS}"
)
CALLS_ON_NODE = f"SELECT {CALL_REF_COLUMNS} FROM active_calls WHERE node = $1"
LINE_USERNAME = "SELECT sip_username FROM lines WHERE id = $1"
MAILBOX_ON = "SELECT 1 FROM asterisk_voicemail WHERE mailbox = $1"
CALLEE_OF_CALL = "SELECT callee_line_id FROM active_calls WHERE node = $1 AND channel_id = $2"
HUNT_LIMITS = (
    "SELECT c.id, c.max_duration_s, g.ring_timeout_s FROM active_calls c"
    " LEFT JOIN ring_groups g ON g.id = c.ring_group_id"
    " WHERE c.node = $1 AND c.channel_id = $2"
)


def _resolve(source: str, line_of: str, where: str) -> str:
    """A target's lookup in one round trip: ``source`` (aliased ``t``, with a
    ``ring_group_id``) leads to the line ``line_of`` names, or to a ring group and its
    members in hunt order; rows as :meth:`CallRegistry._target` reads them."""
    return f"""
    SELECT t.ring_group_id, g.strategy::text, g.ring_timeout_s,
           l.id, l.customer_id, l.sip_username, l.max_calls, l.max_call_duration_s, l.main_number,
           centrex_policy_level(l.id, l.customer_id)
    FROM {source} t
    LEFT JOIN ring_groups g ON g.id = t.ring_group_id
    LEFT JOIN lines l ON l.deleted_at IS NULL AND (
        (t.ring_group_id IS NULL AND ({line_of}))
        OR l.id IN (SELECT m.line_id FROM ring_group_members m WHERE m.group_id = t.ring_group_id)
    )
    LEFT JOIN ring_group_members m ON m.group_id = t.ring_group_id AND m.line_id = l.id
    WHERE {where}
    ORDER BY m.position
"""


# What a platform number leads to: the line it is the main number of, or the line or ring
# group an alias is attached to. Only assigned numbers lead anywhere.
RESOLVE_NUMBER = _resolve(
    "numbers", "l.main_number = t.e164 OR l.id = t.line_id",
    "t.e164 = $1 AND t.status = 'assigned'",
)  # fmt: skip
# What an extension of a customer names: a line, or a ring group.
RESOLVE_EXTENSION = _resolve(
    "extensions", "l.id = t.line_id", "t.customer_id = $1 AND t.extension = $2"
)

# The answer of a ring group call: the member that answered becomes the callee, the others
# stop counting (Asterisk has cancelled them).
ANSWERED_BY_MEMBER = f"""
    WITH winner AS (
        SELECT id FROM lines WHERE sip_username = $3 AND deleted_at IS NULL
    ), answered AS (
        UPDATE active_calls
        SET answered_at = $4::timestamptz,
            deadline_at = $4::timestamptz + make_interval(secs => max_duration_s),
            callee_line_id = coalesce(callee_line_id, (SELECT id FROM winner)),
            hunt_remaining = NULL
        WHERE node = $1 AND channel_id = $2 AND answered_at IS NULL
        RETURNING {CALL_REF_COLUMNS}
    ), released AS (
        DELETE FROM active_call_legs g USING answered a
        WHERE g.call_id = a.id AND g.role = 'member'
          AND g.line_id NOT IN (SELECT id FROM winner)
    )
    SELECT * FROM answered
"""


class CallRegistry:
    """Calls in progress of one node. The call path runs on its own asyncpg pool (opened on
    first use, at most ``pool_size`` connections: a burst of calls waits for one rather than
    forking a PostgreSQL backend per call); *engine* serves the rare rest (cutoff records)."""

    def __init__(
        self,
        engine: AsyncEngine,
        node: str,
        default_max_s: int,
        *,
        pool_size: int = 20,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings(_env_file=None)
        self.engine = engine
        self.sessionmaker = make_sessionmaker(engine)
        self.node = node
        self.default_max_s = default_max_s
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self.features = FeatureCalls(self)  # issue 15: forwarding, do-not-disturb, privacy
        self.music = MusicClasses(self)  # issue 15: per-customer music on hold

    async def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    u = self.engine.url
                    self._pool = await asyncpg.create_pool(
                        user=u.username,
                        password=u.password,
                        host=u.host or "127.0.0.1",
                        port=u.port or 5432,
                        database=u.database,
                        min_size=1,
                        max_size=self.pool_size,
                        # A database that hangs (no RST) fails a statement instead of holding
                        # the call; the daemon bounds the whole decision besides.
                        timeout=self.settings.call_path_db_timeout_s,
                        command_timeout=self.settings.call_path_db_timeout_s,
                        **{k: v for k, v in u.query.items() if k in ("ssl",)},
                    )
        return self._pool

    async def pool(self) -> asyncpg.Pool:
        """The call path's pool, also for the node's heartbeat and reaper (.reaper)."""
        return await self._db()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        # Outside a transaction block every statement commits on its own (autocommit).
        pool = await self._db()
        async with pool.acquire(timeout=self.settings.call_path_db_timeout_s) as conn:
            return await conn.fetch(sql, *args)

    async def directory(self, usernames: set[str]) -> dict[str, LineInfo]:
        """Live lines by SIP username."""
        if not usernames:
            return {}
        rows = await self._fetch(DIRECTORY, list(usernames))
        return {ln.username: ln for ln in (LineInfo(*row) for row in rows)}

    async def resolve_number(self, e164: str) -> NumberTarget | None:
        """What one of the platform's numbers leads to; None if it is not assigned here."""
        return self._target(e164, await self._fetch(RESOLVE_NUMBER, e164))

    async def resolve_extension(self, customer_id: uuid.UUID, text: str) -> NumberTarget | None:
        """What an extension of ``customer_id`` names; None: no such extension there."""
        return self._target(text, await self._fetch(RESOLVE_EXTENSION, customer_id, text))

    @staticmethod
    def _target(e164: str, rows: list[asyncpg.Record]) -> NumberTarget | None:
        if not rows:
            return None
        group_id, strategy, ring_timeout_s = rows[0][:3]
        lines = tuple(LineInfo(*row[3:]) for row in rows if row[3] is not None)
        if group_id is None:
            return NumberTarget(e164, line=lines[0] if lines else None)
        group = RingGroupInfo(group_id, strategy == "hunt", ring_timeout_s, lines)
        return NumberTarget(e164, group=group)

    async def outbound_trunk(self) -> str | None:
        """The trunk calls to the public network leave through: the oldest one."""
        rows = await self._fetch(OUTBOUND_TRUNK)
        return f"{TRUNK_PREFIX}{rows[0]['name']}" if rows else None

    async def admit(
        self, *, channel_id: str, endpoint: str | None, dialled: str, caller_number: str,
        now: datetime, hidden: bool = False, busy_line: uuid.UUID | None = None,
    ) -> AdmittedCall | Refuse:  # fmt: skip
        """Route, admit and record the call, or say why not. A channel admitted before (decided
        again after a reconnection) gets its first decision back, ``resumed``: never refused
        for the room its own leg takes."""
        from_trunk = bool(endpoint and endpoint.startswith(TRUNK_PREFIX))
        what = classify_dialled(dialled)
        by_name = await self.directory(
            set()
            if from_trunk
            else {n for n in (endpoint, dialled if what.kind is DialledKind.line else None) if n}
        )
        caller = None if from_trunk or endpoint is None else by_name.get(endpoint)
        if caller is not None and dialled == VOICEMAIL_CODE:
            return await self._admit_own_mailbox(channel_id, caller, now)
        target = by_name.get(dialled) if what.kind is DialledKind.line else None
        number = extension = None
        if what.kind is DialledKind.number and what.e164 and (from_trunk or caller is not None):
            number = await self.resolve_number(what.e164)
        if what.kind is DialledKind.extension and caller is not None:
            extension = await self.resolve_extension(caller.customer_id, what.text)
        emergency = what.kind is DialledKind.emergency
        trunk, destination, listed, suspended = None, None, False, False
        if not from_trunk and number is None and what.kind in (
            DialledKind.number, DialledKind.emergency
        ):  # fmt: skip
            destination = destination_of(what.e164) if what.e164 and not emergency else None
            rows = await self._fetch(TRUNK_AND_DESTINATION, destination)
            name, listed, suspended = rows[0]
            trunk = f"{TRUNK_PREFIX}{name}" if name else None
        route = route_call(
            caller=caller, from_trunk=from_trunk, dialled=what, target=target,
            trunk_endpoint=trunk, number=number, extension=extension,
        )  # fmt: skip
        if isinstance(route, Refuse):
            return route
        # Issue 15 (centrex/features/call_path.py): the called line's forwards and
        # do-not-disturb, the caller's privacy. A forward refused by policy is recorded as such.
        plan = await self.features.plan(
            caller=caller, route=route, caller_number=caller_number, emergency=emergency,
            hidden=hidden, now=now, busy_line=busy_line,
        )  # fmt: skip
        refusal = plan if isinstance(plan, Refuse) else None
        if refusal is not None and refusal.category not in ("policy", "destination"):
            return refusal  # do-not-disturb (busy), a loop: not a policy refusal to record
        if refusal is None and caller is not None:
            refusal = check_call(
                CallPolicyFacts(
                    level=caller.policy_level, emergency=emergency,
                    outbound=route.direction == "outbound", destination=destination,
                    destination_listed=listed, destination_suspended=suspended,
                )
            )  # fmt: skip
        if not isinstance(plan, Refuse):
            route = plan.route
        target_line = route.target_line
        if (
            refusal is None
            and target_line is not None
            and target_line.policy_level == PolicyLevel.suspended
            and self.settings.suspended_line_incoming == "refuse"
        ):
            refusal = Refuse("rejected", "the called line is suspended", category="policy")
        if refusal is not None:
            await self._fetch(
                RECORD_REFUSAL, self.node, channel_id, uuid.uuid4(), route.direction,
                (caller.main_number or caller.username) if caller else caller_number,
                what.e164 or dialled, caller.id if caller else None,
                target_line.id if target_line else None, now, refusal.why,
            )  # fmt: skip
            return refusal
        if not isinstance(plan, Refuse) and plan.mailbox is not None:
            return await self._forward_to_mailbox(
                channel_id, caller, route, plan, now, caller_number,
                what.e164 or (target_line.main_number if target_line else None) or dialled,
                emergency,
            )  # fmt: skip
        callee = route.target_line
        group = route.group
        members = group.members if group else ()
        limits = call_limits(self.default_max_s, caller, callee, *members)
        call_id = uuid.uuid4()
        # One statement in autocommit: the lines' row locks last for the count and the insert
        # only (see migration 0003), never across this process's event loop.
        rows = await self._fetch(
            ADMIT,
            call_id,
            self.node,
            channel_id,
            route.direction,
            # E.164 wherever there is one: these go into the CDR.
            (caller.main_number or caller.username) if caller else caller_number,
            what.e164 or (callee.main_number if callee else None) or dialled,
            caller.id if caller else None,
            callee.id if callee else None,
            limits.max_duration_s,
            now,
            group.id if group else None,
            [m.id for m in members] if group else None,
            bool(group and group.hunt),
            emergency,
        )
        result = json.loads(rows[0][0])  # jsonb arrives as text
        if result["duplicate"]:
            # Decided before (migration 0010 answers with that decision, whatever the line's
            # count now): the call is still in Stasis, so that decision never reached Asterisk.
            call_id = uuid.UUID(result.get("call_id") or str(call_id))
        if not result["admitted"]:
            counts = {uuid.UUID(k): int(v) for k, v in result["counts"].items()}
            if busy_line is None and plan.busy_forward and callee is not None:
                if counts.get(callee.id, 0) >= callee.max_calls and (
                    caller is None or counts.get(caller.id, 0) < caller.max_calls
                ):  # the line called is at its limit: its busy forward (issue 15)
                    await self.features.forget_refusal(channel_id)
                    return await self.admit(
                        channel_id=channel_id, endpoint=endpoint, dialled=dialled,
                        caller_number=caller_number, now=now, hidden=hidden,
                        busy_line=callee.id,
                    )  # fmt: skip
            # The database applied the limit atomically; the pure rule says which side was full.
            refusal = admit_call(caller, callee, counts) or Refuse(
                "busy",
                "every member of the ring group is at its limit" if group else "line at its limit",
                category="line_limit",
            )
            caller_full = admit_call(caller, None, counts) is not None
            # The mailbox is looked up only when it can matter: one query on that refusal only.
            maybe = callee is not None and busy_goes_to_mailbox(
                caller_has_room=not caller_full, ring_group=group is not None, mailbox_on=True
            )
            if maybe and callee is not None and await self._mailbox_on(callee.username):
                to_mailbox = await self._admit_to_mailbox(
                    call_id, channel_id, route.direction, caller, callee, limits, now,
                    caller_number, what.e164 or callee.main_number or dialled, emergency,
                )  # fmt: skip
                if to_mailbox is not None:
                    return replace(to_mailbox, caller_id=route.caller_id)
            return refusal
        resumed = bool(result["duplicate"])
        if resumed and group is None and callee is not None:
            # Decided again after a reconnection: an earlier decision that sent the call to the
            # full callee's mailbox (no callee leg) must not now ring the callee.
            rows = await self._fetch(CALLEE_OF_CALL, self.node, channel_id)
            if rows and rows[0][0] is None:
                return AdmittedCall(
                    call_id, "", limits, route.caller_id, direction=route.direction,
                    resumed=True, mailbox=callee.username, mailbox_only=True,
                )  # fmt: skip
        if caller is not None and what.kind is DialledKind.number and what.e164 and not resumed:
            try:
                await self._count_number(caller, what.e164, now)
            except BaseException:
                # The call is refused (fail closed): it must not stay counted until a sweep.
                self._release_in_background(channel_id)
                raise
        if not resumed and plan.features.path:  # a forward (issue 15): its number, its CDR
            try:
                if plan.count_number is not None:
                    await self._count_number(*plan.count_number, now)
                await self.features.record(channel_id, plan, now)
            except BaseException:
                self._release_in_background(channel_id)
                raise
        if group is None:
            return AdmittedCall(
                call_id, route.dial, limits, route.caller_id,
                ring_timeout_s=plan.features.ring_timeout_s, direction=route.direction,
                resumed=resumed, features=plan.features,
                mailbox=callee.username if callee is not None else None,
            )  # fmt: skip
        picked = {uuid.UUID(m) for m in result["members"]}
        ringing = [m for m in members if m.id in picked]  # in the group's order
        return AdmittedCall(
            call_id,
            dial_lines(ringing),
            limits,
            route.caller_id,
            ring_timeout_s=group.ring_timeout_s,
            hunt=group.hunt,
            ring_group_id=group.id,
            direction=route.direction,
            resumed=resumed,
            features=plan.features,
        )

    async def _admit_own_mailbox(
        self, channel_id: str, caller: LineInfo, now: datetime
    ) -> AdmittedCall | Refuse:
        """A line dialled the voicemail code: a call of its own line (counted, cut at its
        maximum like any), to its own mailbox; nobody else is involved."""
        limits = call_limits(self.default_max_s, caller)
        call_id = uuid.uuid4()
        rows = await self._fetch(
            ADMIT, call_id, self.node, channel_id, "on-net",
            caller.main_number or caller.username, VOICEMAIL_CODE, caller.id, None,
            limits.max_duration_s, now, None, None, False, False,
        )  # fmt: skip
        result = json.loads(rows[0][0])
        if not result["admitted"]:
            return Refuse(
                "busy", f"caller line at its limit of {caller.max_calls} calls",
                category="line_limit",
            )  # fmt: skip
        if result["duplicate"]:
            call_id = uuid.UUID(result.get("call_id") or str(call_id))
        return AdmittedCall(
            call_id, "", limits, resumed=bool(result["duplicate"]), mailbox=caller.username,
            own_mailbox=True,
        )  # fmt: skip

    async def _forward_to_mailbox(
        self, channel_id: str, caller: LineInfo | None, route: Admit, plan: Plan,
        now: datetime, caller_number: str, callee_as: str, emergency: bool,
    ) -> AdmittedCall | Refuse:  # fmt: skip
        """The line called forwards to a mailbox before ringing (unconditional, do-not-disturb
        or at its limit with a busy forward): as a full line's call to its own mailbox, the
        call counts on the caller's line alone (no phone of the line is involved)."""
        assert plan.mailbox is not None
        limits = call_limits(self.default_max_s, caller, route.target_line)
        admitted = await self._admit_to_mailbox(
            uuid.uuid4(), channel_id, route.direction, caller, plan.mailbox, limits, now,
            caller_number, callee_as, emergency,
        )  # fmt: skip
        if admitted is None:
            return Refuse("busy", "caller line at its limit", category="line_limit")
        if not admitted.resumed:
            await self.features.record(channel_id, plan, now)
        unconditional = plan.features.divert_reason == Condition.unconditional.value
        return replace(
            admitted, caller_id=route.caller_id, features=plan.features,
            mailbox_status="NOANSWER" if unconditional else "BUSY",
        )  # fmt: skip

    async def _mailbox_on(self, username: str) -> bool:
        """Whether the line's mailbox takes calls (the view Asterisk reads, migration 0024)."""
        return bool(await self._fetch(MAILBOX_ON, username))

    async def _admit_to_mailbox(
        self, call_id: uuid.UUID, channel_id: str, direction: str, caller: LineInfo | None,
        callee: LineInfo, limits: CallLimits, now: datetime, caller_number: str, callee_as: str,
        emergency: bool,
    ) -> AdmittedCall | None:  # fmt: skip
        """The called line is at its limit and its mailbox is on: the call is admitted on the
        caller's line alone (the callee is not involved) and goes straight to the mailbox, as
        a busy line's. None: the caller's line filled up meanwhile (the refusal stands)."""
        rows = await self._fetch(
            ADMIT, call_id, self.node, channel_id, direction,
            (caller.main_number or caller.username) if caller else caller_number, callee_as,
            caller.id if caller else None, None, limits.max_duration_s, now, None, None, False,
            emergency,
        )  # fmt: skip
        result = json.loads(rows[0][0])
        if not result["admitted"]:
            return None
        if result["duplicate"]:
            call_id = uuid.UUID(result.get("call_id") or str(call_id))
        return AdmittedCall(
            call_id, "", limits, direction=direction, resumed=bool(result["duplicate"]),
            mailbox=callee.username, mailbox_only=True,
        )  # fmt: skip

    def _release_in_background(self, channel_id: str) -> None:
        """Release without delaying the refusal (nor being cancelled with it)."""

        async def release() -> None:
            try:
                await self.release(channel_id)
            except Exception as exc:  # the sweep releases it, once the channel is gone
                log.warning("call %s: not released (%r); left to the sweep", channel_id, exc)

        task = asyncio.create_task(release())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _count_number(self, caller: LineInfo, e164: str, now: datetime) -> None:
        """The distinct-numbers rule (art. 16): one insert per number new this period, so the
        count stays cheap; past the threshold the suspicion and its restriction are recorded
        now, in force for the line's next call."""
        s = self.settings
        rows = await self._fetch(
            COUNT_NUMBER, caller.id, period_start(now), e164, s.fraud_distinct_numbers,
            s.fraud_action,
        )  # fmt: skip
        result = json.loads(rows[0][0])
        if result.get("suspicion"):
            metrics.FRAUD_SUSPICIONS.labels("distinct_numbers").inc()
            log.warning(
                "line %s: fraud suspicion, %d distinct numbers this period (action: %s)",
                caller.username, result["count"], s.fraud_action,
            )  # fmt: skip

    async def hunt_next(self, channel_id: str) -> str | None:
        """The hunt's member did not answer: the Dial() target of the next member with room
        (members at their limit are skipped), or None when the hunt is over."""
        rows = await self._fetch(HUNT_NEXT, self.node, channel_id)
        result = json.loads(rows[0][0]) if rows and rows[0][0] else None
        if not result or result["line_id"] is None:
            return None
        rows = await self._fetch(LINE_USERNAME, uuid.UUID(result["line_id"]))
        return dial_lines([rows[0][0]]) if rows else None

    async def limits_of(self, channel_id: str) -> AdmittedCall:
        """A hunt's call as admitted (limits, ring timeout), to dial its next member alike."""
        rows = await self._fetch(HUNT_LIMITS, self.node, channel_id)
        call_id, max_s, ring_s = rows[0]
        limits = CallLimits(max_s, int((max_s + ASTERISK_BACKSTOP_S) * 1000))
        return AdmittedCall(call_id, "", limits, ring_timeout_s=ring_s, hunt=True)

    async def mark_answered(
        self, channel_id: str, at: datetime, *, ring_group: bool = False, by: str | None = None
    ) -> CallRef | None:
        """Record the answer (the first one counts) and return the call with its deadline.

        For a ring group call, ``by`` is the endpoint that answered: it becomes the callee and
        the other members stop counting."""
        if ring_group and by:
            rows = await self._fetch(ANSWERED_BY_MEMBER, self.node, channel_id, by, at)
            if rows:
                return CallRef(*rows[0])
        rows = await self._fetch(MARK_ANSWERED, self.node, channel_id, at)
        if not rows:  # answered already (or not ours): as it stands
            rows = await self._fetch(THIS_CALL, self.node, channel_id)
        return CallRef(*rows[0]) if rows else None

    async def release(self, channel_id: str) -> CallRef | None:
        """The call is over: it stops counting. Returns what it was, if it was ours."""
        rows = await self._fetch(RELEASE, self.node, channel_id)
        return CallRef(*rows[0]) if rows else None

    async def calls_on_node(self) -> list[CallRef]:
        rows = await self._fetch(CALLS_ON_NODE, self.node)
        return [CallRef(*row) for row in rows]

    async def record_cutoff(self, call: CallRef, *, ended_at: datetime, enforced_by: str) -> None:
        assert call.answered_at is not None
        # The engine does not ping before use (the call path must not pay for it): after a
        # PostgreSQL restart its pooled connection is dead, and the first cutoff would be lost.
        # A disconnect invalidates that connection; the next attempt opens a fresh one.
        for attempt in range(3):
            try:
                async with self.sessionmaker() as session, session.begin():
                    session.add(
                        CallCutoff(
                            call_id=call.call_id,
                            node=self.node,
                            channel_id=call.channel_id,
                            caller_line_id=call.caller_line_id,
                            callee_line_id=call.callee_line_id,
                            answered_at=call.answered_at,
                            ended_at=ended_at,
                            max_duration_s=call.max_duration_s,
                            reason="max_duration",
                            enforced_by=enforced_by,
                        )
                    )
                return
            except DBAPIError as exc:
                if not exc.connection_invalidated or attempt == 2:
                    raise


def dial_lines(lines: Sequence[LineInfo] | Sequence[str]) -> str:
    """``PJSIP/a&PJSIP/b``: Dial() rings them all at once, the first answer wins."""
    return "&".join(f"PJSIP/{ln if isinstance(ln, str) else ln.username}" for ln in lines)


async def calls_of_line(session: AsyncSession, line_id: uuid.UUID) -> Sequence[ActiveCall]:
    rows = await session.scalars(
        select(ActiveCall)
        .join(ActiveCallLeg, ActiveCallLeg.call_id == ActiveCall.id)
        .where(ActiveCallLeg.line_id == line_id)
        .order_by(ActiveCall.started_at)
    )
    return rows.all()
