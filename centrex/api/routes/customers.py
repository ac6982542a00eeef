from __future__ import annotations

import uuid

from fastapi import APIRouter, status
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import SessionDep
from centrex.api.schemas import CustomerIn, CustomerOut
from centrex.db.models import Customer
from centrex.services.errors import Conflict, NotFound

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CustomerOut)
async def create_customer(body: CustomerIn, session: SessionDep) -> Customer:
    customer = Customer(name=body.name, external_ref=body.external_ref)
    session.add(customer)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(
            "external_ref", f"a customer with external_ref {body.external_ref!r} already exists"
        ) from None
    return customer


@router.get("/{customer_id}", response_model=CustomerOut)
async def get_customer(customer_id: uuid.UUID, session: SessionDep) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("customer_id", f"no customer with id {customer_id}", location="path")
    return customer
