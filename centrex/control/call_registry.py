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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.core.admission import CallLimits, admit_call, call_limits
from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.routing import LineInfo, Refuse, route_call
from centrex.db.models import ActiveCall, ActiveCallLeg, CallCutoff
from centrex.db.session import make_sessionmaker


@dataclass(frozen=True)
class AdmittedCall:
    call_id: uuid.UUID
    dial: str
    limits: CallLimits
    caller_id: str | None = None  # E.164 to present on the public network


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


# The statements of the call path, in plain SQL on asyncpg: each is prepared once per
# connection (asyncpg's statement cache) and then costs one round trip, without SQLAlchemy's
# compilation and result processing, which were most of the daemon's CPU per call.
CALL_REF_COLUMNS = (  # in CallRef's field order
    "id, channel_id, max_duration_s, answered_at, deadline_at, caller_line_id, callee_line_id"
)
DIRECTORY = (
    "SELECT id, customer_id, sip_username, max_calls, max_call_duration_s, main_number"
    " FROM lines WHERE deleted_at IS NULL"
    " AND (sip_username = ANY($1::text[]) OR main_number = ANY($2::text[]))"
)
OUTBOUND_TRUNK = "SELECT name FROM trunks ORDER BY created_at LIMIT 1"
ADMIT = "SELECT centrex_admit_call($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
MARK_ANSWERED = (
    "UPDATE active_calls SET answered_at = $3::timestamptz,"
    " deadline_at = $3::timestamptz + make_interval(secs => max_duration_s)"
    " WHERE node = $1 AND channel_id = $2 AND answered_at IS NULL"
    f" RETURNING {CALL_REF_COLUMNS}"
)
THIS_CALL = f"SELECT {CALL_REF_COLUMNS} FROM active_calls WHERE node = $1 AND channel_id = $2"
RELEASE = (
    f"DELETE FROM active_calls WHERE node = $1 AND channel_id = $2 RETURNING {CALL_REF_COLUMNS}"
)
CALLS_ON_NODE = f"SELECT {CALL_REF_COLUMNS} FROM active_calls WHERE node = $1"


class CallRegistry:
    """Calls in progress of one node. The call path runs on its own asyncpg pool (opened on
    first use, at most ``pool_size`` connections: a burst of calls waits for one rather than
    forking a PostgreSQL backend per call); *engine* serves the rare rest (cutoff records)."""

    def __init__(
        self, engine: AsyncEngine, node: str, default_max_s: int, *, pool_size: int = 20
    ) -> None:
        self.engine = engine
        self.sessionmaker = make_sessionmaker(engine)
        self.node = node
        self.default_max_s = default_max_s
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

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
                        **{k: v for k, v in u.query.items() if k in ("ssl",)},
                    )
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        # Outside a transaction block every statement commits on its own (autocommit).
        return await (await self._db()).fetch(sql, *args)

    async def directory(
        self, usernames: set[str], numbers: set[str]
    ) -> tuple[dict[str, LineInfo], dict[str, LineInfo]]:
        """Live lines by SIP username and by main number (E.164)."""
        rows = await self._fetch(DIRECTORY, list(usernames), list(numbers))
        lines = [LineInfo(*row) for row in rows]
        return (
            {ln.username: ln for ln in lines},
            {ln.main_number: ln for ln in lines if ln.main_number},
        )

    async def outbound_trunk(self) -> str | None:
        """The trunk calls to the public network leave through: the oldest one."""
        rows = await self._fetch(OUTBOUND_TRUNK)
        return f"{TRUNK_PREFIX}{rows[0]['name']}" if rows else None

    async def admit(
        self, *, channel_id: str, endpoint: str | None, dialled: str, caller_number: str,
        now: datetime,
    ) -> AdmittedCall | Refuse | None:  # fmt: skip
        """Route, admit and record the call, or say why not; None if this channel was already
        admitted (decided twice around a reconnection): the first decision stands."""
        from_trunk = bool(endpoint and endpoint.startswith(TRUNK_PREFIX))
        what = classify_dialled(dialled)
        by_name, by_number = await self.directory(
            {n for n in (endpoint, dialled) if n and not from_trunk},
            {what.e164} if what.e164 else set(),
        )
        caller = None if from_trunk or endpoint is None else by_name.get(endpoint)
        target = (
            by_name.get(dialled)
            if what.kind is DialledKind.line
            else by_number.get(what.e164 or "")
        )
        trunk = None
        if (
            not from_trunk
            and target is None
            and what.kind in (DialledKind.number, DialledKind.emergency)
        ):
            trunk = await self.outbound_trunk()
        route = route_call(
            caller=caller, from_trunk=from_trunk, dialled=what, target=target,
            trunk_endpoint=trunk,
        )  # fmt: skip
        if isinstance(route, Refuse):
            return route
        callee = route.target_line
        limits = call_limits(self.default_max_s, caller, callee)
        call_id = uuid.uuid4()
        # One statement in autocommit: the lines' row locks last for the count and the insert
        # only (see migration 0003), never across this process's event loop.
        rows = await self._fetch(
            ADMIT,
            call_id,
            self.node,
            channel_id,
            route.direction,
            caller.username if caller else caller_number,
            what.e164 or dialled,
            caller.id if caller else None,
            callee.id if callee else None,
            limits.max_duration_s,
            now,
        )
        result = json.loads(rows[0][0])  # jsonb arrives as text
        if result["duplicate"]:
            return None
        if not result["admitted"]:
            counts = {uuid.UUID(k): int(v) for k, v in result["counts"].items()}
            # The database applied the limit atomically; the pure rule says which side was full.
            return admit_call(caller, callee, counts) or Refuse("busy", "line at its limit")
        return AdmittedCall(call_id, route.dial, limits, route.caller_id)

    async def mark_answered(self, channel_id: str, at: datetime) -> CallRef | None:
        """Record the answer (the first one counts) and return the call with its deadline."""
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


async def calls_of_line(session: AsyncSession, line_id: uuid.UUID) -> Sequence[ActiveCall]:
    rows = await session.scalars(
        select(ActiveCall)
        .join(ActiveCallLeg, ActiveCallLeg.call_id == ActiveCall.id)
        .where(ActiveCallLeg.line_id == line_id)
        .order_by(ActiveCall.started_at)
    )
    return rows.all()
