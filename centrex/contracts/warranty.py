"""Equipment warranty and repairs (art. 12): during the initial contract term a device with an
inherent defect is repaired or exchanged free; excluded damage (lightning or surge, abnormal
use, repair by an unauthorised third party), or any fault after the initial term, is repaired on
a quote, charged only once the customer accepts it. An exchange keeps the ledger: the old device
is ``exchanged``, the new one ``replaces`` it, with the old one's line, mode, value and
``provided_on`` (the depreciation of a provided device runs from when the customer paid)."""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.contracts import rules
from centrex.contracts.equipment import _charge, _contract_of, get
from centrex.contracts.models import Contract, Equipment, EquipmentRepair
from centrex.contracts.schemas import QuoteDecisionIn, RepairIn
from centrex.services.errors import Conflict, NotFound, ServiceError


async def _covered(session: AsyncSession, device: Equipment, body: RepairIn) -> bool:
    if body.cause in rules.WARRANTY_EXCLUSIONS:
        return False
    contract_id = await _contract_of(session, device.customer_id)
    contract = await session.get(Contract, contract_id) if contract_id else None
    return contract is not None and rules.in_warranty(
        contract.starts_on, contract.initial_months, body.reported_on
    )


async def _exchange(
    session: AsyncSession,
    device: Equipment,
    repair: EquipmentRepair,
    serial: str | None,
    mac: str | None,
    on: date,
) -> None:
    if serial is None or mac is None:
        field = "replacement_serial" if serial is None else "replacement_mac"
        raise ServiceError(field, "an exchange names the replacement device's serial and MAC")
    new = Equipment(
        customer_id=device.customer_id,
        model=device.model,
        serial=serial,
        mac=mac,
        mode=device.mode,
        value_cents=device.value_cents,
        monthly_fee_cents=device.monthly_fee_cents,
        line_id=device.line_id,
        provided_on=device.provided_on,
        status="in_service",
        replaces_id=device.id,
    )
    session.add(new)
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        raise Conflict(
            "replacement_serial", "a device with this serial or MAC is in the ledger"
        ) from None
    device.status, device.returned_on = "exchanged", on
    repair.replacement_id = new.id


async def report(
    session: AsyncSession, equipment_id: uuid.UUID, body: RepairIn, *, today: date
) -> EquipmentRepair:
    device = await get(session, equipment_id, lock=True)
    if device.status != "in_service":
        raise Conflict("equipment_id", f"the device is {device.status}", location="path")
    if body.reported_on > today or body.reported_on < device.provided_on:
        raise ServiceError("reported_on", f"between {device.provided_on} and today ({today})")
    covered = await _covered(session, device, body)
    if not covered and body.quote_cents is None:
        raise ServiceError(
            "quote_cents",
            "not under warranty (art. 12: excluded damage, or "
            "after the initial term): the repair needs a quote",
        )
    repair = EquipmentRepair(
        equipment_id=device.id,
        reported_on=body.reported_on,
        cause=body.cause,
        action=body.action,
        covered=covered,
        status="done" if covered else "quoted",
        quote_cents=None if covered else body.quote_cents,
        note=body.note,
    )
    session.add(repair)
    if covered and body.action == "exchange":
        await _exchange(
            session, device, repair, body.replacement_serial, body.replacement_mac, body.reported_on
        )
    await session.commit()
    return repair


async def decide(
    session: AsyncSession,
    equipment_id: uuid.UUID,
    repair_id: uuid.UUID,
    body: QuoteDecisionIn,
    *,
    today: date,
) -> EquipmentRepair:
    """The customer accepts the quote (then, and only then, it is charged) or declines it."""
    repair = await session.scalar(
        select(EquipmentRepair)
        .where(EquipmentRepair.id == repair_id, EquipmentRepair.equipment_id == equipment_id)
        .with_for_update()
    )
    if repair is None:
        raise NotFound("repair_id", f"no repair {repair_id} of this device", location="path")
    if repair.status != "quoted":
        raise Conflict("repair_id", f"the repair is {repair.status}", location="path")
    if body.decided_on > today or body.decided_on < repair.reported_on:
        raise ServiceError("decided_on", f"between {repair.reported_on} and today ({today})")
    device = await get(session, equipment_id, lock=True)
    repair.decided_on = body.decided_on
    if not body.accepted:
        repair.status = "declined"
        await session.commit()
        return repair
    cents = repair.quote_cents or 0
    charge = _charge(
        device,
        await _contract_of(session, device.customer_id),
        "equipment_repair",
        f"Repair of {device.model} {device.serial} ({repair.cause}), quote "
        f"accepted on {body.decided_on}",
        cents,
    )
    session.add(charge)
    await session.flush()
    repair.charge_id, repair.status = charge.id, "accepted"
    if repair.action == "exchange":  # the replacement is named when the quote is accepted
        await _exchange(
            session, device, repair, body.replacement_serial, body.replacement_mac, body.decided_on
        )
    await session.commit()
    return repair
