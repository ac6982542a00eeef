from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, status
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import PrincipalDep, SessionDep, visible
from centrex.api.schemas import CustomerIn, CustomerOut, CustomerPatch
from centrex.db.lookup import get_or_404
from centrex.db.models import Customer
from centrex.services.errors import Conflict, ServiceError

router = APIRouter(prefix="/v1/customers", tags=["customers"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CustomerOut)
async def create_customer(body: CustomerIn, session: SessionDep) -> Customer:
    customer = Customer(
        name=body.name,
        external_ref=body.external_ref,
        residence_country=body.residence_country,
        email=body.email,
    )
    session.add(customer)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(
            "external_ref", f"a customer with external_ref {body.external_ref!r} already exists"
        ) from None
    return customer


async def _customer(session: SessionDep, customer_id: uuid.UUID) -> Customer:
    return await get_or_404(
        session, Customer, customer_id, "customer_id", f"no customer with id {customer_id}"
    )


@router.get("/{customer_id}", response_model=CustomerOut)
async def get_customer(
    customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> Customer:
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    return await _customer(session, customer_id)


@router.patch("/{customer_id}", response_model=CustomerOut)
async def update_customer(
    customer_id: uuid.UUID, body: CustomerPatch, session: SessionDep
) -> Customer:
    customer = await _customer(session, customer_id)
    fields = body.model_fields_set
    if "name" in fields:
        if body.name is None:
            raise ServiceError("name", "a customer's name cannot be null")
        customer.name = body.name
    if "residence_country" in fields:
        customer.residence_country = body.residence_country
    if "email" in fields:
        customer.email = body.email
    if "fraud_action" in fields:
        customer.fraud_action = body.fraud_action
    if "documents_verified" in fields:
        customer.documents_verified_at = datetime.now(UTC) if body.documents_verified else None
    await session.commit()
    return customer
