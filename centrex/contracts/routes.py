"""Contracts' API: the operator records acceptance, notices and early terminations; a
customer token reads its own contracts, their charges and journal (centrex/access/rules.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Query, status
from sqlalchemy import select

from centrex.api.deps import PrincipalDep, SessionDep, own_customer, visible
from centrex.contracts import equipment, gdpr, rules, service
from centrex.contracts.models import Contract, ContractCharge, ContractEvent, Equipment
from centrex.contracts.schemas import (
    ChargeOut,
    ContractIn,
    ContractOut,
    EarlyTerminationIn,
    EquipmentIn,
    EquipmentOut,
    EventOut,
    NoticeIn,
    ReturnIn,
)
from centrex.voicemail.routes import SpoolDep

router = APIRouter(tags=["contracts"])


def _now() -> datetime:
    return datetime.now(UTC)


@router.post("/v1/contracts", status_code=status.HTTP_201_CREATED, response_model=ContractOut)
async def create_contract(body: ContractIn, session: SessionDep) -> Contract:
    """A customer's contract from its acceptance (art. 10): its first renewal is scheduled."""
    return await service.create(session, body, now=_now())


@router.get("/v1/contracts", response_model=list[ContractOut])
async def list_contracts(
    session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = Query(None)
) -> list[Contract]:
    customer_id = own_customer(principal, customer_id)
    query = select(Contract).order_by(Contract.created_at).limit(1000)
    if customer_id is not None:
        query = query.where(Contract.customer_id == customer_id)
    return list(await session.scalars(query))


async def _visible(session, principal, contract_id: uuid.UUID) -> Contract:
    contract = await service.get(session, contract_id)
    visible(principal, contract.customer_id, "contract_id", f"no contract {contract_id}")
    return contract


@router.get("/v1/contracts/{contract_id}", response_model=ContractOut)
async def get_contract(
    contract_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Contract:
    return await _visible(session, principal, contract_id)


@router.post("/v1/contracts/{contract_id}/notice", response_model=ContractOut)
async def give_notice(contract_id: uuid.UUID, body: NoticeIn, session: SessionDep) -> Contract:
    """A notice of non-renewal (registered letter): the contract ends at the term, or 400 with
    the day the letter needed to arrive by."""
    return await service.give_notice(session, contract_id, body, now=_now())


@router.post("/v1/contracts/{contract_id}/early-termination", response_model=ContractOut)
async def terminate_early(
    contract_id: uuid.UUID, body: EarlyTerminationIn, session: SessionDep
) -> Contract:
    """Ends the contract before its term: the fee (the monthly fees left) is recorded."""
    return await service.terminate_early(session, contract_id, body, now=_now())


@router.get("/v1/contracts/{contract_id}/charges", response_model=list[ChargeOut])
async def charges(
    contract_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[ContractCharge]:
    await _visible(session, principal, contract_id)
    rows = await session.scalars(
        select(ContractCharge)
        .where(ContractCharge.contract_id == contract_id)
        .order_by(ContractCharge.created_at)
    )
    return list(rows)


@router.get("/v1/contracts/{contract_id}/events", response_model=list[EventOut])
async def events(
    contract_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[ContractEvent]:
    await _visible(session, principal, contract_id)
    rows = await session.scalars(
        select(ContractEvent)
        .where(ContractEvent.contract_id == contract_id)
        .order_by(ContractEvent.at, ContractEvent.id)
    )
    return list(rows)


@router.post("/v1/equipment", status_code=status.HTTP_201_CREATED, response_model=EquipmentOut)
async def add_equipment(body: EquipmentIn, session: SessionDep) -> Equipment:
    """A device lent to a customer (art. 12), rented or provided, tied to a line or not."""
    return await equipment.add(session, body)


@router.get("/v1/equipment", response_model=list[EquipmentOut])
async def list_equipment(
    session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = Query(None)
) -> list[Equipment]:
    customer_id = own_customer(principal, customer_id)
    query = select(Equipment).order_by(Equipment.created_at).limit(1000)
    if customer_id is not None:
        query = query.where(Equipment.customer_id == customer_id)
    return list(await session.scalars(query))


@router.post("/v1/equipment/{equipment_id}/return", response_model=EquipmentOut)
async def return_equipment(equipment_id: uuid.UUID, body: ReturnIn,
                           session: SessionDep) -> Equipment:  # fmt: skip
    """The device is back, its condition checked: a provided one is refunded (charges)."""
    return await equipment.record_return(session, equipment_id, body,
                                         today=rules.paris_day(_now()))  # fmt: skip


@router.get("/v1/customers/{customer_id}/personal-data")
async def personal_data(customer_id: uuid.UUID, session: SessionDep,
                        principal: PrincipalDep, spool: SpoolDep) -> dict:  # fmt: skip
    """Everything held on the customer (art. 13), machine readable; secrets left out."""
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    return await gdpr.export(session, customer_id, spool)


@router.post("/v1/customers/{customer_id}/erasure")
async def erase(customer_id: uuid.UUID, session: SessionDep, spool: SpoolDep) -> dict:
    """Pseudonymise the customer's personal data (its contracts ended, its lines gone);
    invoices and CDRs are kept (docs/contracts.md)."""
    return await gdpr.erase(session, customer_id, now=_now(), spool=spool)
