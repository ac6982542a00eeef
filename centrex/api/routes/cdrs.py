"""CDRs: the operator's records of every call attempt (contract art. 11.2, 18.2)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from centrex.api.cursor import decode_cursor, encode_cursor
from centrex.api.deps import PrincipalDep, SessionDep, own_customer, visible
from centrex.api.fields import DateTime, NumberText
from centrex.api.schemas import CdrOut, CdrPage, LineUsageOut
from centrex.services import cdrs as cdr_service
from centrex.services import lines as line_service

router = APIRouter(tags=["cdrs"])

Direction = Literal["outbound", "inbound", "on-net"]
DispositionName = Literal[
    "answered",
    "busy",
    "no_answer",
    "failed",
    "refused_limit",
    "refused_policy",
    "cut",
    "voicemail",
    "lost",  # released with a lost node (docs/cluster.md "Node failure")
]


def _utc(value: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC, the zone every record is kept in.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


async def cdr_filter(
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    line_id: uuid.UUID | None = None,
    number: NumberText | None = Query(None, description="As caller or callee; national or +E.164."),
    direction: Direction | None = None,
    disposition: DispositionName | None = None,
    since: DateTime | None = Query(None, description="Calls started at or after (ISO 8601)."),
    until: DateTime | None = Query(None, description="Calls started before (ISO 8601)."),
) -> cdr_service.CdrFilter:
    return cdr_service.CdrFilter(
        own_customer(principal, customer_id),
        line_id,
        number,
        direction,
        disposition,
        _utc(since),
        _utc(until),
    )


FilterDep = Annotated[cdr_service.CdrFilter, Depends(cdr_filter)]


@router.get("/v1/cdrs", response_model=CdrPage)
async def list_cdrs(
    session: SessionDep,
    flt: FilterDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
) -> CdrPage:
    after = decode_cursor(cursor) if cursor else None
    rows = await cdr_service.list_cdrs(session, flt, after=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return CdrPage(
        items=[CdrOut.model_validate(r) for r in page],
        next_cursor=encode_cursor(page[-1].start_at, page[-1].id) if more else None,
    )


@router.get("/v1/cdrs.csv", response_class=StreamingResponse)
async def export_cdrs(session: SessionDep, flt: FilterDep) -> StreamingResponse:
    """The same filters, as a CSV file streamed row by row (any period, flat memory)."""
    flt.where()  # bad filters are a 4xx now, not a broken stream later
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        cdr_service.stream_csv(session, flt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="cdrs-{stamp}.csv"'},
    )


@router.get("/v1/lines/{line_id}/usage", response_model=LineUsageOut)
async def line_usage(
    line_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    since: DateTime = Query(description="Start of the billing period (ISO 8601)."),
    until: DateTime = Query(description="End of the billing period, excluded."),
) -> cdr_service.LineUsage:
    line = await line_service.get_line_any(session, line_id)
    visible(principal, line.customer_id, "line_id", f"no line with id {line_id}")
    return await cdr_service.line_usage(session, line_id, _utc(since), _utc(until))  # type: ignore[arg-type]
