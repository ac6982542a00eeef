"""Port-in requests: taking one (checks of art. 9.2, a replacement number when ineligible),
applying the donor's answer, activating the number at the slot, cancelling; our numbers' RIOs.

The API calls :func:`request_port_in` and :func:`cancel` inside its audit context; the
portability loop (centrex.portability.scheduler) calls the rest.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.config import Settings
from centrex.core.numbering import NumberError, NumberKind, parse_french_number
from centrex.db.lookup import get_or_404
from centrex.db.models import Customer, Line, NumberBlock, NumberStatus, PhoneNumber, RingGroup
from centrex.portability.donor import DonorAnswer, DonorStatus
from centrex.portability.models import PortIn
from centrex.portability.rules import (
    RIO_VALID_AFTER_RELEASE,
    Ineligible,
    PortStatus,
    cancel_error,
    make_rio,
    normalise_rio,
    own_reference,
    own_rio_valid,
    porting_date,
    requested_date_error,
    rio_error,
)
from centrex.services import numbers as number_service
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortInRequest:
    customer_id: uuid.UUID
    number: str
    rio: str | None
    holder_name: str
    requested_date: date | None
    line_id: uuid.UUID | None
    ring_group_id: uuid.UUID | None


async def _check_destination(session: AsyncSession, request: PortInRequest) -> None:
    if request.line_id is not None:
        line = await session.get(Line, request.line_id)
        if line is None or line.deleted_at is not None or line.customer_id != request.customer_id:
            raise UnknownReference("line_id", f"no line {request.line_id} in this customer")
    if request.ring_group_id is not None:
        group = await session.get(RingGroup, request.ring_group_id)
        if group is None or group.customer_id != request.customer_id:
            raise UnknownReference(
                "ring_group_id", f"no ring group {request.ring_group_id} in this customer"
            )


async def request_port_in(session: AsyncSession, request: PortInRequest, now: datetime) -> PortIn:
    """Record the request: ``requested`` (the loop sends it to the donor) or, when the checks
    of art. 9.2 fail here, ``ineligible`` with the reason and a replacement number."""
    if await session.get(Customer, request.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {request.customer_id}")
    try:
        parsed = parse_french_number(request.number)
    except NumberError as exc:
        raise ServiceError("number", str(exc)) from None
    if why := requested_date_error(request.requested_date, now.date()):
        raise ServiceError("requested_date", why)
    await _check_destination(session, request)
    rio = normalise_rio(request.rio) if request.rio else None
    fields = dict(
        customer_id=request.customer_id,
        e164=parsed.e164,
        national=parsed.national,
        rio=rio if rio and len(rio) <= 12 else None,
        holder_name=request.holder_name,
        requested_date=request.requested_date,
        line_id=request.line_id,
        ring_group_id=request.ring_group_id,
    )
    reason, detail = None, None
    if parsed.kind is NumberKind.mobile:
        reason = Ineligible.mobile_number
        detail = "mobile numbers cannot be ported to this fixed service"
    elif why := rio_error(request.rio, parsed.national):
        reason = Ineligible.no_rio if not request.rio else Ineligible.wrong_rio
        detail = why
    elif await session.get(PhoneNumber, parsed.e164) is not None:
        reason, detail = Ineligible.already_on_platform, f"{parsed.national} is already ours"
    if reason is None:
        day = porting_date(request.requested_date, now.date())
        port = PortIn(**fields, status=PortStatus.requested, porting_date=day.day, detail=day.moved)
        session.add(port)
        try:
            await session.flush()
        except IntegrityError:
            # Another request holds the number (ux_port_ins_in_progress): this one is refused.
            await session.rollback()
            reason, detail = Ineligible.in_progress, "a port request is already in progress here"
        else:
            await session.commit()
            return port
    replacement, missing = await _replacement(session, request.customer_id, parsed.national, now)
    detail = f"{detail}; {missing}" if missing else detail
    port = PortIn(**fields, status=PortStatus.ineligible, reason=reason, detail=detail,
                  replacement_e164=replacement)  # fmt: skip
    session.add(port)
    await session.commit()
    return port


async def _replacement(
    session: AsyncSession, customer_id: uuid.UUID, national: str, now: datetime
) -> tuple[str | None, str | None]:
    """Art. 9.2: the number an ineligible request gets instead, by the usual random allocation
    (residency rules apply), and why there is none if there is none. Commits the allocation
    (numbers.allocate does): call it with nothing else pending in ``session``, and record the
    request after, so nobody ever reads an ineligible request whose replacement is to come."""
    # The same kind and zone; a mobile number (not ours to give) or a geographic zone with none
    # free gets a 09 number, which is not tied to a place (another zone's would be a stranger's).
    parsed = parse_french_number(national)
    attempts = [] if parsed.kind is NumberKind.mobile else [(parsed.kind, parsed.zone)]
    if parsed.kind is not NumberKind.non_geographic:
        attempts.append((NumberKind.non_geographic, None))
    for kind, zone in attempts:
        try:
            number = await number_service.allocate(
                session, customer_id=customer_id, kind=kind, zone=zone, number=None, now=now
            )
        except Conflict:
            continue
        except ServiceError as exc:
            return None, f"no replacement number: {exc.message}"
        return number.e164, None
    return None, "no replacement number: none free"


async def get(session: AsyncSession, port_id: uuid.UUID) -> PortIn:
    return await get_or_404(session, PortIn, port_id, "port_in_id", f"no port-in {port_id}")


async def cancel(session: AsyncSession, port: PortIn, now: datetime) -> PortIn:
    if why := cancel_error(PortStatus(port.status), port.slot_start, now):
        raise Conflict("port_in_id", why, location="path")
    port.status = PortStatus.cancelled
    await session.commit()
    return port


# --- the loop's steps -------------------------------------------------------------------------
async def apply_donor_answer(
    session: AsyncSession,
    port: PortIn,
    answer: DonorStatus,
    now: datetime,
    *,
    allocation_session: AsyncSession,
) -> bool:
    """Apply the donor's answer to a ``requested`` port, locked in ``session``; True when it
    changed it. Commits. A replacement number is allocated in ``allocation_session`` (which
    commits it), so the port's row stays locked until the request records it: another process
    can neither handle the same answer nor read the request without its replacement."""
    if answer.answer is DonorAnswer.pending:
        return False
    if answer.answer is DonorAnswer.accepted:
        port.status = PortStatus.accepted
        port.slot_start, port.slot_end = answer.slot_start, answer.slot_end
        port.porting_date = answer.porting_date or answer.slot_start.date()
        port.donor_contract_ends_on = port.porting_date  # art. 9.2: it ends on the porting day
        await session.commit()
        return True
    if answer.answer is DonorAnswer.refused:
        port.status, port.reason = PortStatus.refused, "donor"
        port.detail = answer.detail or "refused by the donor"
        await session.commit()
        return True
    detail = {
        DonorAnswer.inactive: "the number is inactive at the donor",
        DonorAnswer.not_holder: "the requester is not the line's holder at the donor",
        DonorAnswer.in_progress: "a port request is already in progress at the donor",
    }[answer.answer]
    replacement, missing = await _replacement(
        allocation_session, port.customer_id, port.national, now
    )
    port.status = PortStatus.ineligible
    port.reason = Ineligible(answer.answer.value)
    port.detail = f"{detail}; {missing}" if missing else detail
    port.replacement_e164 = replacement
    await session.commit()
    return True


async def activate(session: AsyncSession, port: PortIn, now: datetime) -> None:
    """The slot has come: the number is ours, assigned to the customer and leading to the
    destination from this commit on (the daemon reads it on the next call). Commits."""
    parsed = parse_french_number(port.national)
    number = await session.get(PhoneNumber, port.e164, with_for_update=True)
    if number is None:
        # A ported-in number is a block of one: the inventory's shape, without the range.
        block = NumberBlock(
            first_e164=parsed.e164, last_e164=parsed.e164, size=1, kind=parsed.kind,
            zone=parsed.zone,
        )  # fmt: skip
        session.add(block)
        await session.flush()
        number = PhoneNumber(
            e164=parsed.e164, national=parsed.national, block_id=block.id, kind=parsed.kind,
            zone=parsed.zone, monthly_fee_cents=0,
        )  # fmt: skip
        session.add(number)
    elif number.status == NumberStatus.assigned and number.customer_id != port.customer_id:
        port.status, port.detail = PortStatus.ported, "the number is another customer's here"
        port.ported_at = now
        await session.commit()
        log.error("port-in %s: %s is assigned to another customer", port.id, port.national)
        return
    number.status = NumberStatus.assigned
    number.customer_id = port.customer_id
    number.assigned_at = now
    number.released_at = number.quarantine_until = None
    line = await session.get(Line, port.line_id) if port.line_id else None
    if line is not None and line.deleted_at is None and line.main_number is None:
        await session.flush()  # the number exists before the line names it
        line.main_number = number.e164  # its caller ID outside, too
    elif line is not None and line.deleted_at is None:
        number.line_id = line.id
    elif port.ring_group_id is not None:
        number.ring_group_id = port.ring_group_id
    port.status = PortStatus.active
    port.ported_at = port.activated_at = now
    await session.commit()


# --- our own numbers' RIOs --------------------------------------------------------------------
@dataclass(frozen=True)
class OwnRio:
    number: PhoneNumber
    rio: str
    valid_until: datetime | None  # None while assigned


def own_rio(number: PhoneNumber, settings: Settings, now: datetime) -> OwnRio:
    """The RIO of one of our numbers: while assigned and 40 days after release, else 404."""
    assigned = number.status == NumberStatus.assigned
    if number.assigned_at is None or not own_rio_valid(assigned, number.released_at, now):
        raise NotFound("number", f"{number.national} has no valid RIO", location="path")
    reference = own_reference(number.e164, number.assigned_at)
    rio = make_rio(settings.rio_operator_code, settings.rio_line_type, reference, number.national)
    until = None if assigned else number.released_at + RIO_VALID_AFTER_RELEASE
    return OwnRio(number, rio, until)


async def port_ins_due(session: AsyncSession, status: PortStatus, limit: int = 20) -> list[PortIn]:
    rows = await session.scalars(
        select(PortIn)
        .where(PortIn.status == status)
        .order_by(PortIn.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows)
