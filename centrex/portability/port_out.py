"""Port-out: another operator asks for one of our numbers with its RIO. Checked like a port-in
(art. 9.2, from the losing side): the RIO must be the number's own, the number assigned here,
no other port-out in progress. At the slot the number leaves the customer and the inventory;
the line that had it as its main number keeps working without it (extensions, on-net calls).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.config import Settings
from centrex.core.numbering import NumberError, parse_french_number
from centrex.db.lookup import get_or_404
from centrex.db.models import Line, NumberStatus, PhoneNumber
from centrex.portability.models import PortOut
from centrex.portability.rules import (
    Ineligible,
    normalise_rio,
    porting_date,
    requested_date_error,
    rio_error,
)
from centrex.portability.service import own_rio
from centrex.services.errors import ServiceError

PARIS = ZoneInfo("Europe/Paris")
SLOT_START = time(9)  # our porting slots start at 09:00 Paris time


@dataclass(frozen=True)
class PortOutRequest:
    number: str
    rio: str | None
    recipient_operator: str
    requested_date: date | None
    slot_start: datetime | None  # agreed between operators; else ours from the date rules


async def request_port_out(
    session: AsyncSession, request: PortOutRequest, settings: Settings, now: datetime
) -> PortOut:
    try:
        parsed = parse_french_number(request.number)
    except NumberError as exc:
        raise ServiceError("number", str(exc)) from None
    if why := requested_date_error(request.requested_date, now.date()):
        raise ServiceError("requested_date", why)
    if request.slot_start is not None and request.slot_start <= now:
        raise ServiceError("slot_start", "the slot must be in the future")
    if request.slot_start is not None and (
        why := requested_date_error(request.slot_start.date(), now.date())
    ):
        raise ServiceError("slot_start", why)
    rio = normalise_rio(request.rio) if request.rio else None
    number = await session.get(PhoneNumber, parsed.e164)
    assigned = number is not None and number.status == NumberStatus.assigned
    fields = dict(
        e164=parsed.e164,
        national=parsed.national,
        customer_id=number.customer_id if assigned else None,
        rio=rio if rio and len(rio) <= 12 else None,
        recipient_operator=request.recipient_operator,
    )
    reason, detail = None, None
    if not request.rio:
        reason, detail = Ineligible.no_rio, "no RIO given"
    elif not assigned:
        reason, detail = Ineligible.inactive, f"{parsed.national} is not an active number here"
    elif why := rio_error(request.rio, parsed.national):
        reason, detail = Ineligible.wrong_rio, why
    elif rio != own_rio(number, settings, now).rio:
        reason, detail = Ineligible.wrong_rio, "not this number's RIO"
    if reason is None:
        if request.slot_start is not None:
            start = request.slot_start
        else:
            day = porting_date(request.requested_date, now.date()).day
            start = datetime.combine(day, SLOT_START, PARIS)
        day = start.astimezone(PARIS).date()
        port = PortOut(**fields, status="accepted", slot_start=start, porting_date=day)
        session.add(port)
        try:
            await session.commit()
            return port
        except IntegrityError:
            await session.rollback()
            reason, detail = Ineligible.in_progress, "a port-out is already in progress"
    port = PortOut(**fields, status="ineligible", reason=reason, detail=detail)
    session.add(port)
    await session.commit()
    return port


async def get(session: AsyncSession, port_id: uuid.UUID) -> PortOut:
    return await get_or_404(session, PortOut, port_id, "port_out_id", f"no port-out {port_id}")


async def execute(session: AsyncSession, port: PortOut, now: datetime) -> None:
    """The slot has come: the number leaves the customer (no line's caller ID any more) and
    the inventory (calls to it from the carrier get 404: it routes at its new operator).
    Commits."""
    number = await session.get(PhoneNumber, port.e164, with_for_update=True)
    if number is not None:
        for line in await session.scalars(select(Line).where(Line.main_number == port.e164)):
            line.main_number = None
        await session.flush()
        await session.delete(number)
    port.status, port.ported_at = "ported", now
    await session.commit()
