"""Calls in progress: the operator's live view, and a hang-up button."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from centrex.access import rules
from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, visible
from centrex.api.schemas import CallOut
from centrex.asterisk.ari import AriClient
from centrex.control.call_registry import calls_of_line
from centrex.db.models import ActiveCall, Line
from centrex.services import calls as call_service
from centrex.services import lines as line_service
from centrex.services.errors import Conflict, NotFound

router = APIRouter(tags=["calls"])


def _as_seen_from(call: ActiveCall, line_id: uuid.UUID) -> CallOut:
    outbound = call.caller_line_id == line_id
    return CallOut(
        id=call.id,
        node=call.node,
        channel_id=call.channel_id,
        direction="outbound" if outbound else "inbound",
        peer=call.callee if outbound else call.caller,
        started_at=call.started_at,
        answered_at=call.answered_at,
        deadline_at=call.deadline_at,
        max_duration_s=call.max_duration_s,
    )


@router.get("/v1/lines/{line_id}/calls", response_model=list[CallOut])
async def line_calls(
    line_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[CallOut]:
    line = await line_service.get_live_line(session, line_id)
    visible(principal, line.customer_id, "line_id", f"no line with id {line_id}")
    return [_as_seen_from(c, line_id) for c in await calls_of_line(session, line_id)]


@router.delete("/v1/calls/{call_id}", status_code=status.HTTP_204_NO_CONTENT)
async def hang_up(
    call_id: uuid.UUID,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
    principal: PrincipalDep,
) -> Response:
    call = await session.get(ActiveCall, call_id)
    if call is not None and not await _involves(session, principal, call):
        call = None  # another customer's call: as if there were none
    if call is None:
        raise NotFound("call_id", f"no call in progress with id {call_id}", location="path")
    if call.node != settings.node_name:
        raise Conflict(
            "call_id",
            f"call is on node {call.node!r}; this API drives node {settings.node_name!r}",
            location="path",
        )
    ari: AriClient = request.app.state.ari
    # The daemon sees the hangup and releases the call; nothing else to do here.
    await call_service.hang_up(session, ari, call)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _involves(session: SessionDep, principal: PrincipalDep, call: ActiveCall) -> bool:
    """Whether one of the call's lines is ``principal``'s to see."""
    for line_id in (call.caller_line_id, call.callee_line_id):
        line = await session.get(Line, line_id) if line_id else None
        if line is not None and rules.sees(principal, line.customer_id):
            return True
    return False
