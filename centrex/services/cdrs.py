"""Reading CDRs: filtered pages, a streamed CSV export, per-line usage, retention."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.spreadsheet import safe_cell
from centrex.db.models import Cdr
from centrex.services.errors import ServiceError

CSV_COLUMNS = (
    "id", "start_at", "answer_at", "end_at", "duration_s", "billed_s", "direction", "caller",
    "callee", "dialled_number", "destination_country", "destination", "disposition", "reason",
    "q850_cause", "sip_code",
    "customer_id", "caller_line_id", "callee_line_id", "ring_group_id", "node", "linkedid",
    "transfer_of", "paid_by_line_id",
)  # fmt: skip


@dataclass(frozen=True)
class CdrFilter:
    customer_id: uuid.UUID | None = None
    line_id: uuid.UUID | None = None  # placed, received or paid for by this line
    number: str | None = None  # as caller or callee, E.164
    direction: str | None = None
    disposition: str | None = None
    since: datetime | None = None  # start_at >= since
    until: datetime | None = None  # start_at < until

    def where(self) -> list[Any]:
        if self.since and self.until and self.since >= self.until:
            raise ServiceError("until", "until must come after since", location="query")
        clauses: list[Any] = []
        if self.customer_id:
            clauses.append(Cdr.customer_id == self.customer_id)
        if self.line_id:
            clauses.append(
                or_(
                    Cdr.caller_line_id == self.line_id,
                    Cdr.callee_line_id == self.line_id,
                    Cdr.paid_by_line_id == self.line_id,  # a transferred call's outside leg
                )
            )
        if self.number:
            e164 = e164_of(self.number)
            clauses.append(or_(Cdr.caller == e164, Cdr.callee == e164))
        if self.direction:
            clauses.append(Cdr.direction == self.direction)
        if self.disposition:
            clauses.append(Cdr.disposition == self.disposition)
        if self.since:
            clauses.append(Cdr.start_at >= self.since)
        if self.until:
            clauses.append(Cdr.start_at < self.until)
        return clauses


def e164_of(text: str) -> str:
    dialled = classify_dialled(text)
    if dialled.kind is not DialledKind.number or not dialled.e164:
        raise ServiceError(
            "number", f"{text!r} is not a telephone number (national or +E.164)", location="query"
        )
    return dialled.e164


def _query(flt: CdrFilter) -> Select[tuple[Cdr]]:
    return select(Cdr).where(*flt.where()).order_by(Cdr.start_at, Cdr.id)


async def list_cdrs(
    session: AsyncSession, flt: CdrFilter, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Cdr]:
    query = _query(flt)
    if after is not None:
        at, cdr_id = after
        query = query.where(or_(Cdr.start_at > at, and_(Cdr.start_at == at, Cdr.id > cdr_id)))
    return list((await session.scalars(query.limit(limit))).all())


def _csv_row(row: Any) -> list[object]:
    out: list[object] = []
    for column in CSV_COLUMNS:
        value = row.duration_ms / 1000 if column == "duration_s" else getattr(row, column)
        if isinstance(value, datetime):
            value = value.isoformat(timespec="milliseconds")
        elif isinstance(value, float):
            value = f"{value:.3f}"
        elif isinstance(value, str):
            value = safe_cell(value)
        out.append("" if value is None else value)
    return out


async def stream_csv(session: AsyncSession, flt: CdrFilter) -> AsyncIterator[bytes]:
    """The export, 1,000 rows at a time from a server-side cursor: memory stays flat however
    long the period. Plain rows, not ORM objects: an export can be millions of records."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    query = (
        select(*Cdr.__table__.c)
        .where(*flt.where())
        .order_by(Cdr.start_at, Cdr.id)
        .execution_options(yield_per=1000)
    )
    result = await session.stream(query)
    async for partition in result.partitions():
        writer.writerows(_csv_row(row) for row in partition)
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


@dataclass(frozen=True)
class LineUsage:
    line_id: uuid.UUID
    since: datetime
    until: datetime
    calls_placed: int
    calls_answered: int  # of those placed
    billed_seconds: int
    billed_minutes: float
    distinct_numbers_called: int
    calls_received: int


async def line_usage(
    session: AsyncSession, line_id: uuid.UUID, since: datetime, until: datetime
) -> LineUsage:
    """A line's use over a billing period: what billing and fraud control read (art. 16)."""
    if since >= until:
        raise ServiceError("until", "until must come after since", location="query")
    period = and_(Cdr.start_at >= since, Cdr.start_at < until)
    placed = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Cdr.answer_at.is_not(None)),
                func.coalesce(func.sum(Cdr.billed_s), 0),
                func.count(Cdr.callee.distinct()),
                # Placed by the line that pays it: a transferred call's outside leg is the
                # transferer's (docs/transfers.md), whoever its caller.
            ).where(func.coalesce(Cdr.paid_by_line_id, Cdr.caller_line_id) == line_id, period)
        )
    ).one()
    received = await session.scalar(
        select(func.count()).where(Cdr.callee_line_id == line_id, period)
    )
    return LineUsage(
        line_id=line_id, since=since, until=until, calls_placed=placed[0],
        calls_answered=placed[1], billed_seconds=int(placed[2]),
        billed_minutes=round(int(placed[2]) / 60, 2), distinct_numbers_called=placed[3],
        calls_received=received or 0,
    )  # fmt: skip


async def purge_expired(session: AsyncSession, *, retention_days: int, batch: int = 10_000) -> int:
    """Delete CDRs older than the retention period, in batches (no long lock); returns how many."""
    total = 0
    cutoff = func.now() - func.make_interval(0, 0, 0, retention_days)
    while True:
        ids = select(Cdr.id).where(Cdr.start_at < cutoff).limit(batch).scalar_subquery()
        result = await session.execute(delete(Cdr).where(Cdr.id.in_(ids)))
        await session.commit()
        total += result.rowcount or 0
        if (result.rowcount or 0) < batch:
            return total
