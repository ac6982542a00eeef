"""Calls in progress, in the database every daemon shares.

The admission transaction locks the rows of the lines involved (``SELECT … FOR UPDATE``, in id
order so two calls between the same lines cannot deadlock), counts their calls in progress,
asks the pure core, and records the call: N simultaneous attempts on one line, on any number of
daemons and Asterisk nodes, admit exactly the line's limit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from centrex.core.admission import CallLimits, admit_call, call_limits
from centrex.core.routing import Admit, LineInfo, Refuse, route_from_line
from centrex.db.models import ActiveCall, ActiveCallLeg, CallCutoff, Line


@dataclass(frozen=True)
class AdmittedCall:
    call_id: uuid.UUID
    dial: str
    limits: CallLimits


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


def _line_info(line: Line) -> LineInfo:
    return LineInfo(
        line.id, line.customer_id, line.sip_username, line.max_calls, line.max_call_duration_s
    )


def _ref(call: ActiveCall) -> CallRef:
    return CallRef(
        call.id,
        call.channel_id,
        call.max_duration_s,
        call.answered_at,
        call.deadline_at,
        call.caller_line_id,
        call.callee_line_id,
    )


class CallRegistry:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], node: str, default_max_s: int
    ) -> None:
        self.sessionmaker = sessionmaker
        self.node = node
        self.default_max_s = default_max_s

    async def admit(
        self, *, channel_id: str, caller_username: str | None, dialled: str, now: datetime
    ) -> AdmittedCall | Refuse | None:
        """Admit and record the call, or say why not; None if this channel was already
        admitted (decided twice around a reconnection): the first decision stands."""
        try:
            async with self.sessionmaker() as session, session.begin():
                decision = await self._admit_locked(
                    session, channel_id, caller_username, dialled, now
                )
        except IntegrityError:
            return None  # (node, channel_id) already recorded
        return decision

    async def _admit_locked(
        self,
        session: AsyncSession,
        channel_id: str,
        caller_username: str | None,
        dialled: str,
        now: datetime,
    ) -> AdmittedCall | Refuse:
        names = {n for n in (caller_username, dialled) if n}
        rows = await session.scalars(
            select(Line)
            .where(Line.sip_username.in_(names), Line.deleted_at.is_(None))
            .order_by(Line.id)
            .with_for_update()
        )
        lines = {line.sip_username: _line_info(line) for line in rows}
        caller = lines.get(caller_username) if caller_username else None
        callee = lines.get(dialled)
        route = route_from_line(caller, dialled, callee)
        if isinstance(route, Refuse):
            return route
        assert caller is not None  # route_from_line refuses an unknown caller
        counts = dict(
            (
                await session.execute(
                    select(ActiveCallLeg.line_id, func.count())
                    .where(ActiveCallLeg.line_id.in_([ln.id for ln in lines.values()]))
                    .group_by(ActiveCallLeg.line_id)
                )
            ).all()
        )
        refusal = admit_call(caller, callee, counts)
        if refusal is not None:
            return refusal
        limits = call_limits(self.default_max_s, caller, callee)
        call = ActiveCall(
            node=self.node,
            channel_id=channel_id,
            direction="on-net",
            caller=caller.username,
            callee=dialled,
            caller_line_id=caller.id,
            callee_line_id=callee.id if callee else None,
            max_duration_s=limits.max_duration_s,
            started_at=now,
        )
        call.legs = [ActiveCallLeg(line_id=caller.id, role="caller")]
        if callee is not None:
            call.legs.append(ActiveCallLeg(line_id=callee.id, role="callee"))
        session.add(call)
        await session.flush()
        assert isinstance(route, Admit)
        return AdmittedCall(call.id, route.dial, limits)

    async def mark_answered(self, channel_id: str, at: datetime) -> CallRef | None:
        async with self.sessionmaker() as session, session.begin():
            call = await session.scalar(
                select(ActiveCall).where(
                    ActiveCall.node == self.node, ActiveCall.channel_id == channel_id
                )
            )
            if call is None:
                return None
            if call.answered_at is None:
                call.answered_at = at
                call.deadline_at = at + timedelta(seconds=call.max_duration_s)
            return _ref(call)

    async def release(self, channel_id: str) -> CallRef | None:
        """The call is over: it stops counting. Returns what it was, if it was ours."""
        async with self.sessionmaker() as session, session.begin():
            call = await session.scalar(
                delete(ActiveCall)
                .where(ActiveCall.node == self.node, ActiveCall.channel_id == channel_id)
                .returning(ActiveCall)
            )
            return _ref(call) if call is not None else None

    async def calls_on_node(self) -> list[CallRef]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(select(ActiveCall).where(ActiveCall.node == self.node))
            return [_ref(c) for c in rows]

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
