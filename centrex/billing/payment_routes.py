"""Billing's payment API: SEPA mandates and collection files, payments and rejects (operator),
the balance (the customer reads its own)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, visible
from centrex.billing import disputes, sepa
from centrex.billing.models import (
    Collection,
    Dispute,
    Invoice,
    Mandate,
    Payment,
    ReferenceRate,
)
from centrex.billing.schemas import (
    BalanceOut,
    CollectionIn,
    CollectionOut,
    CollectionRunOut,
    DisputeIn,
    DisputeOut,
    MandateIn,
    MandateOut,
    PaymentIn,
    PaymentOut,
    ReferenceRateIn,
    ReferenceRateOut,
    ResolutionIn,
)
from centrex.contracts.nonpayment import lift_if_settled
from centrex.services.errors import Conflict, NotFound

router = APIRouter(tags=["billing"])


@router.post("/v1/billing/mandates", status_code=status.HTTP_201_CREATED,
             response_model=MandateOut)  # fmt: skip
async def create_mandate(body: MandateIn, session: SessionDep) -> Mandate:
    """A signed SEPA mandate; the IBAN and BIC are checked (checksum, length, country)."""
    mandate = await sepa.add_mandate(session, **body.model_dump())
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("reference", f"mandate {body.reference!r} exists") from None
    return mandate


@router.post("/v1/billing/sepa-collections", response_model=CollectionRunOut)
async def create_collection(
    body: CollectionIn, session: SessionDep, settings: SettingsDep
) -> CollectionRunOut:
    """A pain.008 file of every SEPA invoice not collected yet (validated against its XSD)."""
    collection = await sepa.collect(session, body.collection_date, settings)
    await session.commit()
    out = CollectionOut.model_validate(collection) if collection else None
    return CollectionRunOut(collection=out)


@router.get("/v1/billing/sepa-collections/{collection_id}.xml", response_class=Response)
async def collection_file(collection_id: uuid.UUID, session: SessionDep) -> Response:
    collection = await session.get(Collection, collection_id)
    if collection is None:
        raise NotFound("collection_id", f"no collection {collection_id}", location="path")
    return Response(collection.xml, media_type="application/xml", headers={
        "Content-Disposition": f'attachment; filename="pain008-{collection_id}.xml"'})  # fmt: skip


@router.post("/v1/billing/payments", status_code=status.HTTP_201_CREATED,
             response_model=PaymentOut)  # fmt: skip
async def create_payment(body: PaymentIn, session: SessionDep) -> Payment:
    """Money received for an invoice, or a bank's reject of a debit."""
    payment = await sepa.record_payment(session, **body.model_dump())
    # Art. 19: a payment settling what a non-payment suspension was for lifts it at once.
    await lift_if_settled(session, payment.customer_id, datetime.now(UTC))
    await session.commit()
    return payment


@router.get("/v1/customers/{customer_id}/balance", response_model=BalanceOut)
async def customer_balance(
    customer_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> BalanceOut:
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    result = await sepa.balance(session, customer_id)
    return BalanceOut(customer_id=customer_id, **result.__dict__)


@router.post("/v1/invoices/{invoice_id}/disputes", status_code=status.HTTP_201_CREATED,
             response_model=DisputeOut)  # fmt: skip
async def open_dispute(invoice_id: uuid.UUID, body: DisputeIn, session: SessionDep) -> Dispute:
    """A dispute received (registered letter, art. 11.3): within 30 days of the invoice, on part
    of it; that part is suspended until resolved."""
    dispute = await disputes.open_dispute(session, invoice_id, **body.model_dump())
    await session.commit()
    return dispute


@router.get("/v1/invoices/{invoice_id}/disputes", response_model=list[DisputeOut])
async def list_disputes(
    invoice_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> list[Dispute]:
    invoice = await session.get(Invoice, invoice_id)
    what = f"no invoice with id {invoice_id}"
    if invoice is None:
        raise NotFound("invoice_id", what, location="path")
    visible(principal, invoice.customer_id, "invoice_id", what)
    query = select(Dispute).where(Dispute.invoice_id == invoice_id).order_by(Dispute.created_at)
    return list(await session.scalars(query))


@router.post("/v1/billing/disputes/{dispute_id}/resolution", response_model=DisputeOut)
async def resolve_dispute(
    dispute_id: uuid.UUID, body: ResolutionIn, session: SessionDep, settings: SettingsDep
) -> Dispute:
    """Upheld: a credit note for the disputed part (numbered, its Factur-X PDF archived);
    rejected: the part is due as before."""
    return await disputes.resolve(session, dispute_id, body.outcome, body.resolved_on, settings)


@router.post("/v1/billing/reference-rates", status_code=status.HTTP_201_CREATED,
             response_model=ReferenceRateOut)  # fmt: skip
async def add_reference_rate(body: ReferenceRateIn, session: SessionDep) -> ReferenceRate:
    """A dated ECB main refinancing rate or French legal rate (late-payment interest). Never
    edited: a correction is refused (409); rates are reference data as published."""
    rate = ReferenceRate(**body.model_dump())
    session.add(rate)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("effective_from", f"a {body.kind} rate from {body.effective_from} "
                       "exists") from None  # fmt: skip
    return rate


@router.get("/v1/billing/reference-rates", response_model=list[ReferenceRateOut])
async def list_reference_rates(session: SessionDep) -> list[ReferenceRate]:
    query = select(ReferenceRate).order_by(ReferenceRate.kind, ReferenceRate.effective_from)
    return list(await session.scalars(query))
