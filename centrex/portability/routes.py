"""Port-in requests (operator) and the RIO of our numbers (a customer reads its own)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request, status
from sqlalchemy import select

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, visible
from centrex.api.fields import NumberText
from centrex.portability import port_out, service
from centrex.portability.models import PortIn, PortOut
from centrex.portability.scheduler import utcnow
from centrex.portability.schemas import PortInIn, PortInOut, PortOutIn, PortOutOut, RioOut
from centrex.services import numbers as number_service

router = APIRouter(tags=["portability"])


@router.post("/v1/port-ins", status_code=status.HTTP_201_CREATED, response_model=PortInOut)
async def request_port_in(body: PortInIn, session: SessionDep, request: Request) -> PortIn:
    port = await service.request_port_in(
        session, service.PortInRequest(**body.model_dump()), utcnow()
    )
    loop = getattr(request.app.state, "porting_loop", None)
    if loop is not None:
        loop.wake.set()  # to the donor now, not at the next pass
    return port


@router.get("/v1/port-ins", response_model=list[PortInOut])
async def list_port_ins(
    session: SessionDep,
    customer_id: uuid.UUID | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[PortIn]:
    query = select(PortIn).order_by(PortIn.created_at.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(PortIn.customer_id == customer_id)
    return list(await session.scalars(query))


@router.get("/v1/port-ins/{port_in_id}", response_model=PortInOut)
async def get_port_in(port_in_id: uuid.UUID, session: SessionDep) -> PortIn:
    return await service.get(session, port_in_id)


@router.post("/v1/port-ins/{port_in_id}/cancel", response_model=PortInOut)
async def cancel_port_in(port_in_id: uuid.UUID, session: SessionDep, request: Request) -> PortIn:
    port = await service.cancel(session, await service.get(session, port_in_id), utcnow())
    loop = getattr(request.app.state, "porting_loop", None)
    if loop is not None and loop.donor is not None and port.donor_reference:
        await loop.withdraw(port.donor_reference)
    return port


@router.get("/v1/numbers/{number}/rio", response_model=RioOut)
async def number_rio(
    number: NumberText, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> RioOut:
    found = await number_service.get_number(session, number)
    visible(principal, found.customer_id, "number", f"{found.national} is not in the inventory")
    own = service.own_rio(found, settings, utcnow())
    return RioOut(
        e164=found.e164, national=found.national, rio=own.rio, valid_until=own.valid_until
    )


@router.post("/v1/port-outs", status_code=status.HTTP_201_CREATED, response_model=PortOutOut)
async def request_port_out(
    body: PortOutIn, session: SessionDep, settings: SettingsDep, request: Request
) -> PortOut:
    port = await port_out.request_port_out(
        session, port_out.PortOutRequest(**body.model_dump()), settings, utcnow()
    )
    loop = getattr(request.app.state, "porting_loop", None)
    if loop is not None:
        loop.wake.set()  # its slot may be the next one
    return port


@router.get("/v1/port-outs/{port_out_id}", response_model=PortOutOut)
async def get_port_out(port_out_id: uuid.UUID, session: SessionDep) -> PortOut:
    return await port_out.get(session, port_out_id)
