"""Service-level credits (art. 11.2, 18.1): the operator records what it owes a customer; the
invoice runs deduct it (centrex/billing/items.py). The customer reads its own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, status
from sqlalchemy import select

from centrex.api.deps import PrincipalDep, SessionDep, visible
from centrex.billing.models import CreditUse, ServiceCredit
from centrex.billing.rules.rating import billing_day
from centrex.billing.schemas import CreditUseOut, ServiceCreditIn, ServiceCreditOut
from centrex.db.models import Customer
from centrex.services.errors import ServiceError, UnknownReference

router = APIRouter(tags=["billing"])


def _out(credit: ServiceCredit, uses: list[CreditUse]) -> ServiceCreditOut:
    return ServiceCreditOut(
        id=credit.id, customer_id=credit.customer_id, amount_ht_cents=credit.amount_cents,
        vat_rate=credit.vat_rate, granted_on=credit.granted_on, reason=credit.reason,
        interruption_id=credit.interruption_id,
        left_cents=credit.amount_cents - sum(u.amount_cents for u in uses),
        uses=[CreditUseOut.model_validate(u) for u in uses],
    )  # fmt: skip


@router.post("/v1/billing/service-credits", status_code=status.HTTP_201_CREATED,
             response_model=ServiceCreditOut)  # fmt: skip
async def grant_credit(body: ServiceCreditIn, session: SessionDep) -> ServiceCreditOut:
    """A credit the operator owes the customer, HT at its VAT rate: deducted from its next
    invoices, never below zero, the rest carried over."""
    if await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    today = billing_day(datetime.now(UTC))
    granted_on = body.granted_on or today
    if granted_on > today:
        raise ServiceError("granted_on", f"in the future (today is {today})")
    credit = ServiceCredit(
        id=uuid.uuid4(), customer_id=body.customer_id, amount_cents=body.amount_ht_cents,
        vat_rate=body.vat_rate, granted_on=granted_on, reason=body.reason,
        interruption_id=body.interruption_id,
    )  # fmt: skip
    session.add(credit)
    await session.commit()
    return _out(credit, [])


@router.get("/v1/customers/{customer_id}/service-credits", response_model=list[ServiceCreditOut])
async def list_credits(
    customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[ServiceCreditOut]:
    """The customer's credits, what is left of each and which invoice lines used them."""
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    credits = list(await session.scalars(
        select(ServiceCredit).where(ServiceCredit.customer_id == customer_id)
        .order_by(ServiceCredit.granted_on, ServiceCredit.created_at)
    ))  # fmt: skip
    uses: dict[uuid.UUID, list[CreditUse]] = {c.id: [] for c in credits}
    for use in await session.scalars(
        select(CreditUse).where(CreditUse.credit_id.in_(uses)).order_by(CreditUse.created_at)
    ):
        uses[use.credit_id].append(use)
    return [_out(c, uses[c.id]) for c in credits]
