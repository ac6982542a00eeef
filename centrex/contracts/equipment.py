"""Terminal equipment (art. 12): the ledger of devices lent to customers, their return with
its condition check (a provided device refunded less 20 % a year of use), and the bill for one
not returned within 10 days of the contract's end (an ``unreturned`` step of the scheduler)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.contracts import rules
from centrex.contracts.models import Contract, ContractCharge, Equipment, ScheduledStep
from centrex.contracts.schemas import ConditionIn, EquipmentIn, ReturnIn
from centrex.contracts.service import schedule
from centrex.db.models import Customer, Line
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference


async def _contract_of(session: AsyncSession, customer_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(
        select(Contract.id)
        .where(Contract.customer_id == customer_id)
        .order_by(Contract.created_at.desc())
        .limit(1)
    )


async def add(session: AsyncSession, body: EquipmentIn) -> Equipment:
    if await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    if body.line_id is not None:
        line = await session.get(Line, body.line_id)
        if line is None or line.deleted_at is not None or line.customer_id != body.customer_id:
            raise UnknownReference("line_id", f"no line {body.line_id} of this customer")
    device = Equipment(**body.model_dump(), status="in_service")
    session.add(device)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("serial", "a device with this serial or MAC is in the ledger") from None
    return device


async def get(session: AsyncSession, equipment_id: uuid.UUID, *, lock: bool = False) -> Equipment:
    query = select(Equipment).where(Equipment.id == equipment_id)
    device = await session.scalar(query.with_for_update() if lock else query)
    if device is None:
        raise NotFound("equipment_id", f"no device {equipment_id}", location="path")
    return device


def _charge(device: Equipment, contract_id, kind: str, label: str, cents: int) -> ContractCharge:
    return ContractCharge(
        contract_id=contract_id, equipment_id=device.id, customer_id=device.customer_id,
        kind=kind, label=label, quantity=1, unit_cents=cents, amount_cents=cents,
    )  # fmt: skip


async def record_return(session: AsyncSession, equipment_id: uuid.UUID, body: ReturnIn, *,
                        today: date) -> Equipment:  # fmt: skip
    """The device is back. Its condition checked now (``body.condition``) or later, within
    45 days (``check_condition``); a provided one in good condition is refunded (a negative
    charge), price less 20 % per year of use (rules). Not checked within 45 days: the
    ``condition_lapsed`` step refunds it as in good condition (art. 12)."""
    device = await get(session, equipment_id, lock=True)
    if device.status in ("returned", "exchanged"):
        raise Conflict("equipment_id", f"the device is {device.status}", location="path")
    if body.returned_on > today or body.returned_on < device.provided_on:
        raise ServiceError("returned_on", f"between {device.provided_on} and today ({today})")
    device.status, device.returned_on = "returned", body.returned_on
    if body.condition is not None:
        await _checked(session, device, body.condition, body.returned_on)
    else:
        last = rules.condition_check_deadline(body.returned_on)
        await schedule(session, "condition_lapsed", device.id, last + timedelta(days=1))
    await session.commit()
    return device


async def _checked(session: AsyncSession, device: Equipment, condition: str, on: date) -> None:
    device.condition, device.checked_on = condition, on
    if device.mode == "provided" and condition == "good":
        refund = rules.equipment_refund_cents(
            device.value_cents, device.provided_on, device.returned_on
        )
        used = rules.months_between(device.provided_on, device.returned_on)
        session.add(
            _charge(
                device,
                await _contract_of(session, device.customer_id),
                "equipment_refund",
                f"Refund of {device.model} {device.serial}: {used} months of use",
                -refund,
            )
        )


async def check_condition(
    session: AsyncSession, equipment_id: uuid.UUID, body: ConditionIn, *, today: date
) -> Equipment:
    """The condition check of a returned device, within 45 days of its return (art. 12)."""
    device = await get(session, equipment_id, lock=True)
    if device.status != "returned" or device.condition is not None:
        raise Conflict(
            "equipment_id",
            f"not a returned device awaiting its check "
            f"({device.status}, condition {device.condition})",
            location="path",
        )
    if body.checked_on > today or body.checked_on < device.returned_on:
        raise ServiceError("checked_on", f"between {device.returned_on} and today ({today})")
    last = rules.condition_check_deadline(device.returned_on)
    if body.checked_on > last:
        raise Conflict(
            "checked_on",
            f"art. 12: the condition check had to be done within 45 "
            f"days of the return, by {last}; the device is refunded as in good "
            f"condition",
        )
    await _checked(session, device, body.condition, body.checked_on)
    await session.commit()
    return device


async def condition_lapsed(session: AsyncSession, step: ScheduledStep, now: datetime) -> str:
    device = await get(session, step.subject_id, lock=True)
    if device.status != "returned" or device.condition is not None:
        return f"nothing to do: checked ({device.condition})"
    # No check within 45 days: the operator can no longer say it came back damaged.
    await _checked(session, device, "good", None)
    return "not checked within 45 days of the return: deemed in good condition"


async def schedule_returns(session: AsyncSession, customer_id: uuid.UUID, ends_on: date) -> int:
    """At termination: each device in service must be back within 10 days."""
    devices = list(await session.scalars(
        select(Equipment.id).where(Equipment.customer_id == customer_id,
                                   Equipment.status == "in_service")
    ))  # fmt: skip
    for device_id in devices:
        await schedule(session, "unreturned", device_id, ends_on + rules.RETURN_DAYS)
    return len(devices)


async def bill_unreturned(session: AsyncSession, step: ScheduledStep, now: datetime) -> str:
    device = await get(session, step.subject_id, lock=True)
    if device.status != "in_service":
        return f"nothing to do: {device.status}"
    device.status = "not_returned"
    session.add(_charge(
        device, await _contract_of(session, device.customer_id), "equipment_not_returned",
        f"{device.model} {device.serial} not returned within 10 days: its value",
        device.value_cents,
    ))  # fmt: skip
    return f"not returned: {device.value_cents} cents billed"
