from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse

from centrex.api.cursor import decode_cursor, encode_cursor
from centrex.api.deps import (
    PrincipalDep,
    ProjectorDep,
    SessionDep,
    SettingsDep,
    own_customer,
    refuse_fields,
    visible,
)
from centrex.api.schemas import LineCreated, LineIn, LineOut, LinePage, LinePatch
from centrex.db.models import Line
from centrex.services import lines as line_service

router = APIRouter(prefix="/v1/lines", tags=["lines"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=LineCreated)
async def create_line(
    body: LineIn, session: SessionDep, projector: ProjectorDep, settings: SettingsDep
) -> LineCreated:
    created = await line_service.create_line(
        session,
        projector,
        customer_id=body.customer_id,
        label=body.label,
        realm=settings.sip_realm,
        max_calls=body.max_calls,
        max_call_duration_s=body.max_call_duration_s,
        media_encryption=body.media_encryption,
        extension=body.extension,
    )
    return LineCreated(
        **LineOut.model_validate(created.line).model_dump(),
        sip_password=created.password,
        sip_server=settings.phones_sip_server,
        sip_tls_server=settings.phones_sip_tls_server,
    )


@router.get("", response_model=LinePage)
async def list_lines(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> LinePage:
    customer_id = own_customer(principal, customer_id)
    after = decode_cursor(cursor) if cursor else None
    rows = await line_service.list_lines(
        session, customer_id=customer_id, after=after, limit=limit + 1
    )
    page, more = rows[:limit], len(rows) > limit
    return LinePage(
        items=[LineOut.model_validate(r) for r in page],
        next_cursor=encode_cursor(page[-1].created_at, page[-1].id) if more else None,
    )


@router.get("/{line_id}", response_model=LineOut)
async def get_line(line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Line:
    return await live_line_of(principal, session, line_id)


async def live_line_of(principal: PrincipalDep, session: SessionDep, line_id: uuid.UUID) -> Line:
    """The line, if it exists for ``principal`` (a customer's own lines only)."""
    line = await line_service.get_live_line(session, line_id)
    visible(principal, line.customer_id, "line_id", f"no line with id {line_id}")
    return line


@router.patch("/{line_id}", response_model=LineOut)
async def update_line(
    line_id: uuid.UUID,
    body: LinePatch,
    session: SessionDep,
    projector: ProjectorDep,
    principal: PrincipalDep,
    request: Request,
) -> Line:
    line = await live_line_of(principal, session, line_id)
    refuse_fields(principal, request, set(body.model_fields_set))
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    return await line_service.update_line(session, line, changes, projector)


@router.delete(
    "/{line_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={202: {"description": "Deleted; Asterisk will be updated when reachable."}},
)
async def delete_line(line_id: uuid.UUID, session: SessionDep, projector: ProjectorDep) -> Response:
    line = await line_service.get_live_line(session, line_id)
    if await line_service.delete_line(session, projector, line):
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return JSONResponse(
        status_code=status.HTTP_202_ACCEPTED,
        content={
            "detail": "line deleted; Asterisk is unreachable and will drop it when it is back"
        },
    )
