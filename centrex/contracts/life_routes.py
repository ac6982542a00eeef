"""The contract's life beyond its term (docs/contracts.md): service interruptions (art. 10),
contract changes (art. 21), equipment condition checks, repairs and the provisioning of a
device's line (art. 12), directory preferences per number and the directory file (art. 13)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, own_customer, visible
from centrex.api.fields import NumberText
from centrex.contracts import changes, directory, equipment, interruptions, rules, warranty
from centrex.contracts.models import (
    ContractChange,
    DirectoryListing,
    Equipment,
    EquipmentRepair,
    ServiceInterruption,
)
from centrex.contracts.routes import _visible as visible_contract
from centrex.contracts.schemas import (
    ChangeIn,
    ChangeOut,
    ConditionIn,
    DirectoryIn,
    DirectoryOut,
    EquipmentOut,
    InterruptionEndIn,
    InterruptionIn,
    InterruptionOut,
    ProvisioningOut,
    QuoteDecisionIn,
    RepairIn,
    RepairOut,
)
from centrex.db.models import Line
from centrex.services import numbers as number_service
from centrex.services.errors import Conflict

router = APIRouter(tags=["contracts"])


def _now() -> datetime:
    return datetime.now(UTC)


# --- interruptions (art. 10) ------------------------------------------------------------------


@router.post(
    "/v1/interruptions", status_code=status.HTTP_201_CREATED, response_model=InterruptionOut
)
async def record_interruption(body: InterruptionIn, session: SessionDep) -> ServiceInterruption:
    """A service interruption: 30 consecutive days attributable to the operator open the
    customer's special termination without fee (art. 10)."""
    return await interruptions.record(session, body, now=_now())


@router.post("/v1/interruptions/{interruption_id}/end", response_model=InterruptionOut)
async def end_interruption(
    interruption_id: uuid.UUID, body: InterruptionEndIn, session: SessionDep
) -> ServiceInterruption:
    return await interruptions.end(session, interruption_id, body, now=_now())


@router.get("/v1/interruptions", response_model=list[InterruptionOut])
async def list_interruptions(
    session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = Query(None)
) -> list[ServiceInterruption]:
    customer_id = own_customer(principal, customer_id)
    query = select(ServiceInterruption).order_by(ServiceInterruption.started_at).limit(1000)
    if customer_id is not None:
        query = query.where(ServiceInterruption.customer_id == customer_id)
    return list(await session.scalars(query))


# --- contract changes (art. 21) ---------------------------------------------------------------


@router.post(
    "/v1/contracts/{contract_id}/changes",
    status_code=status.HTTP_201_CREATED,
    response_model=ChangeOut,
)
async def notify_change(
    contract_id: uuid.UUID, body: ChangeIn, session: SessionDep
) -> ContractChange:
    """New conditions (in effect one month after the notice) or a new tariff (at a renewal the
    customer can still refuse); the customer is emailed by the scheduler."""
    return await changes.notify(session, contract_id, body, now=_now())


@router.get("/v1/contracts/{contract_id}/changes", response_model=list[ChangeOut])
async def list_changes(
    contract_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[ContractChange]:
    await visible_contract(session, principal, contract_id)
    rows = await session.scalars(
        select(ContractChange)
        .where(ContractChange.contract_id == contract_id)
        .order_by(ContractChange.created_at)
    )
    return list(rows)


# --- equipment (art. 12) ----------------------------------------------------------------------


async def _device(session, principal, equipment_id: uuid.UUID) -> Equipment:
    device = await equipment.get(session, equipment_id)
    visible(principal, device.customer_id, "equipment_id", f"no device {equipment_id}")
    return device


@router.post("/v1/equipment/{equipment_id}/condition", response_model=EquipmentOut)
async def check_condition(
    equipment_id: uuid.UUID, body: ConditionIn, session: SessionDep
) -> Equipment:
    """The returned device's condition check, within 45 days of its return (art. 12)."""
    return await equipment.check_condition(
        session, equipment_id, body, today=rules.paris_day(_now())
    )


@router.post(
    "/v1/equipment/{equipment_id}/repairs",
    status_code=status.HTTP_201_CREATED,
    response_model=RepairOut,
)
async def report_repair(
    equipment_id: uuid.UUID, body: RepairIn, session: SessionDep
) -> EquipmentRepair:
    """A fault: free under warranty (inherent defect, initial term), else on a quote."""
    return await warranty.report(session, equipment_id, body, today=rules.paris_day(_now()))


@router.get("/v1/equipment/{equipment_id}/repairs", response_model=list[RepairOut])
async def list_repairs(
    equipment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[EquipmentRepair]:
    await _device(session, principal, equipment_id)
    rows = await session.scalars(
        select(EquipmentRepair)
        .where(EquipmentRepair.equipment_id == equipment_id)
        .order_by(EquipmentRepair.created_at)
    )
    return list(rows)


@router.post("/v1/equipment/{equipment_id}/repairs/{repair_id}/decision", response_model=RepairOut)
async def decide_quote(
    equipment_id: uuid.UUID,
    repair_id: uuid.UUID,
    body: QuoteDecisionIn,
    session: SessionDep,
    principal: PrincipalDep,
) -> EquipmentRepair:
    """The customer accepts the repair quote (charged then) or declines it."""
    await _device(session, principal, equipment_id)
    return await warranty.decide(
        session, equipment_id, repair_id, body, today=rules.paris_day(_now())
    )


@router.get("/v1/equipment/{equipment_id}/provisioning", response_model=ProvisioningOut)
async def provisioning(
    equipment_id: uuid.UUID, session: SessionDep, principal: PrincipalDep, settings: SettingsDep
) -> ProvisioningOut:
    """What the device tied to a line is configured with: the line's SIP account. Never its
    password: only its digest hash is stored (renewing the credentials shows a new one once)."""
    device = await _device(session, principal, equipment_id)
    line = await session.get(Line, device.line_id) if device.line_id else None
    if line is None or line.deleted_at is not None:
        raise Conflict("equipment_id", "the device is tied to no line in service", location="path")
    return ProvisioningOut(
        equipment_id=device.id,
        line_id=line.id,
        server=f"{settings.asterisk_host}:{settings.sip_port}",
        transport="tls" if line.media_encryption == "sdes_required" else "udp",
        tls_server=f"{settings.asterisk_host}:{settings.tls_port}",
        username=line.sip_username,
        realm=line.sip_realm,
        secret_note=f"not stored: POST /v1/lines/{line.id}/credentials issues a new password, "
        "shown once (the old one stops working)",
    )


# --- directory (art. 13) ----------------------------------------------------------------------


@router.get("/v1/numbers/{number}/directory", response_model=DirectoryOut)
async def get_directory(
    number: NumberText, session: SessionDep, principal: PrincipalDep
) -> DirectoryListing:
    found = await number_service.get_number(session, number)
    visible(principal, found.customer_id, "number", f"{found.national} is not in the inventory")
    listing = await directory.get(session, found)
    if listing.updated_at is None:  # never set: the defaults, as of now
        listing.updated_at = _now()
    return listing


@router.put("/v1/numbers/{number}/directory", response_model=DirectoryOut)
async def put_directory(
    number: NumberText, body: DirectoryIn, session: SessionDep, principal: PrincipalDep
) -> DirectoryListing:
    """The number's universal directory preferences (art. 13), the customer's choice."""
    found = await number_service.get_number(session, number)
    visible(principal, found.customer_id, "number", f"{found.national} is not in the inventory")
    return await directory.put(session, found, body, now=_now())


@router.get("/v1/directory/export.csv", response_class=StreamingResponse)
async def export_directory(session: SessionDep) -> StreamingResponse:
    """The directory file (CSV): listed numbers with what may be done with them; every cell
    safe to open in a spreadsheet."""
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        directory.export_rows(session),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="directory-{stamp}.csv"'},
    )
