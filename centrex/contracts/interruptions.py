"""Service interruptions (art. 10): recorded by the operator (start, end, the whole customer or
some lines, the cause, whether attributable to the operator). After 30 consecutive days of
interruption attributable to the operator the customer may terminate without fee (the special
termination: ``service.terminate_early`` with ``ground = interruption`` asks ``longest``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.contracts import rules
from centrex.contracts.models import ServiceInterruption
from centrex.contracts.schemas import InterruptionEndIn, InterruptionIn
from centrex.db.models import Customer, Line
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference


async def record(
    session: AsyncSession, body: InterruptionIn, *, now: datetime
) -> ServiceInterruption:
    if await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    if body.started_at > now:
        raise ServiceError("started_at", "an interruption is recorded once it has started")
    if body.ended_at is not None and (body.ended_at <= body.started_at or body.ended_at > now):
        raise ServiceError("ended_at", "after started_at and not in the future")
    line_ids = None
    if body.line_ids is not None:
        line_ids = sorted(set(body.line_ids))
        if not line_ids:
            raise ServiceError("line_ids", "omit it for the whole service, or name lines")
        found = set(
            await session.scalars(
                select(Line.id).where(Line.id.in_(line_ids), Line.customer_id == body.customer_id)
            )
        )
        if missing := [str(i) for i in line_ids if i not in found]:
            raise UnknownReference("line_ids", f"not lines of this customer: {missing[:5]}")
    interruption = ServiceInterruption(
        customer_id=body.customer_id,
        line_ids=line_ids,
        started_at=body.started_at,
        ended_at=body.ended_at,
        cause=body.cause,
        attributable_to_operator=body.attributable_to_operator,
    )
    session.add(interruption)
    await session.commit()
    return interruption


async def end(
    session: AsyncSession, interruption_id: uuid.UUID, body: InterruptionEndIn, *, now: datetime
) -> ServiceInterruption:
    found = await session.scalar(
        select(ServiceInterruption)
        .where(ServiceInterruption.id == interruption_id)
        .with_for_update()
    )
    if found is None:
        raise NotFound("interruption_id", f"no interruption {interruption_id}", location="path")
    if found.ended_at is not None:
        raise Conflict("interruption_id", f"ended at {found.ended_at.isoformat()}", location="path")
    if body.ended_at <= found.started_at or body.ended_at > now:
        raise ServiceError("ended_at", "after started_at and not in the future")
    found.ended_at = body.ended_at
    await session.commit()
    return found


async def longest(session: AsyncSession, customer_id: uuid.UUID, now: datetime) -> timedelta:
    """The longest consecutive interruption attributable to the operator the customer had
    (the whole service or some of its lines: either is the service interrupted)."""
    rows = await session.execute(
        select(ServiceInterruption.started_at, ServiceInterruption.ended_at).where(
            ServiceInterruption.customer_id == customer_id,
            ServiceInterruption.attributable_to_operator.is_(True),
        )
    )
    return rules.longest_interruption([(s, e) for s, e in rows], now)
