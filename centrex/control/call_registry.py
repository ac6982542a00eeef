"""Calls in progress, in the database every daemon shares.

Admission is one database statement (``centrex_admit_call``, migration 0003): it locks the rows of
the lines involved (in id order, so two calls between the same lines cannot deadlock), counts
their calls in progress and records the call if every line has room. N simultaneous attempts on
one line, on any number of daemons and Asterisk nodes, admit exactly the line's limit. The pure
core decides everything else (where the call goes, its maximum duration, why it was refused).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.core.admission import CallLimits, admit_call, call_limits
from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.routing import LineInfo, Refuse, route_call
from centrex.db.models import ActiveCall, ActiveCallLeg, CallCutoff, Line, Trunk
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


# In CallRef's field order.
CALL_REF_COLUMNS = (
    ActiveCall.id,
    ActiveCall.channel_id,
    ActiveCall.max_duration_s,
    ActiveCall.answered_at,
    ActiveCall.deadline_at,
    ActiveCall.caller_line_id,
    ActiveCall.callee_line_id,
)


ADMIT = text(
    "SELECT centrex_admit_call(:call_id, :node, :channel_id, :direction, :caller, :callee,"
    " :caller_line, :callee_line, :max_duration_s, :started_at)"
)


class CallRegistry:
    def __init__(self, engine: AsyncEngine, node: str, default_max_s: int) -> None:
        self.engine = engine
        self.sessionmaker = make_sessionmaker(engine)
        self.node = node
        self.default_max_s = default_max_s

    # The per-call statements below are Core, one autocommit round trip each: no ORM objects,
    # no transaction bookkeeping, on the path every call takes.
    async def _run(self, statement: Any) -> list[Row[Any]]:
        async with self._autocommit() as conn:
            return list((await conn.execute(statement)).all())

    @contextlib.asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def directory(
        self, usernames: set[str], numbers: set[str]
    ) -> tuple[dict[str, LineInfo], dict[str, LineInfo]]:
        """Live lines by SIP username and by main number (E.164)."""
        rows = await self._run(
            select(
                Line.id, Line.customer_id, Line.sip_username, Line.max_calls,
                Line.max_call_duration_s, Line.main_number,
            ).where(
                Line.deleted_at.is_(None),
                Line.sip_username.in_(usernames) | Line.main_number.in_(numbers),
            )
        )  # fmt: skip
        lines = [LineInfo(*row) for row in rows]
        return (
            {ln.username: ln for ln in lines},
            {ln.main_number: ln for ln in lines if ln.main_number},
        )

    async def outbound_trunk(self) -> str | None:
        """The trunk calls to the public network leave through: the oldest one."""
        rows = await self._run(select(Trunk.name).order_by(Trunk.created_at).limit(1))
        return f"{TRUNK_PREFIX}{rows[0].name}" if rows else None

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
        async with self._autocommit() as conn:
            result = await conn.scalar(
                ADMIT,
                {
                    "call_id": call_id,
                    "node": self.node,
                    "channel_id": channel_id,
                    "direction": route.direction,
                    "caller": caller.username if caller else caller_number,
                    "callee": what.e164 or dialled,
                    "caller_line": caller.id if caller else None,
                    "callee_line": callee.id if callee else None,
                    "max_duration_s": limits.max_duration_s,
                    "started_at": now,
                },
            )
        if result["duplicate"]:
            return None
        if not result["admitted"]:
            counts = {uuid.UUID(k): int(v) for k, v in result["counts"].items()}
            # The database applied the limit atomically; the pure rule says which side was full.
            return admit_call(caller, callee, counts) or Refuse("busy", "line at its limit")
        return AdmittedCall(call_id, route.dial, limits, route.caller_id)

    def _this_call(self, channel_id: str) -> Any:
        return (ActiveCall.node == self.node) & (ActiveCall.channel_id == channel_id)

    async def mark_answered(self, channel_id: str, at: datetime) -> CallRef | None:
        """Record the answer (the first one counts) and return the call with its deadline."""
        rows = await self._run(
            update(ActiveCall)
            .where(self._this_call(channel_id), ActiveCall.answered_at.is_(None))
            .values(
                answered_at=at,
                deadline_at=at + func.make_interval(0, 0, 0, 0, 0, 0, ActiveCall.max_duration_s),
            )
            .returning(*CALL_REF_COLUMNS)
        )
        if not rows:  # answered already (or not ours): as it stands
            rows = await self._run(select(*CALL_REF_COLUMNS).where(self._this_call(channel_id)))
        return CallRef(*rows[0]) if rows else None

    async def release(self, channel_id: str) -> CallRef | None:
        """The call is over: it stops counting. Returns what it was, if it was ours."""
        rows = await self._run(
            delete(ActiveCall).where(self._this_call(channel_id)).returning(*CALL_REF_COLUMNS)
        )
        return CallRef(*rows[0]) if rows else None

    async def calls_on_node(self) -> list[CallRef]:
        rows = await self._run(select(*CALL_REF_COLUMNS).where(ActiveCall.node == self.node))
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
