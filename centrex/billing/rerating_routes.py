"""The re-rating request (operator): rate the calls of a period again after a tariff
correction (centrex/billing/rerating.py), one transaction per customer and month; a
difference in the customer's favour on a month already invoiced is refunded by a credit note
at once, numbered in the invoices' sequence, its PDF archived and emailed."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from fastapi import APIRouter, Request, status
from sqlalchemy import select

from centrex.api.deps import SessionDep, SettingsDep
from centrex.billing.invoicing import _exists, archive_one, seller_of, take_number
from centrex.billing.items import line_row, link_sources
from centrex.billing.mail import email_pending
from centrex.billing.models import (
    Invoice,
    RatedCall,
    RerateAdjustment,
    ReratedCall,
    Rerating,
)
from centrex.billing.rerating import credit_note_due, credit_note_lines, rerate_month
from centrex.billing.rules.invoice import next_month, totals
from centrex.billing.rules.rating import billing_day
from centrex.billing.schemas import (
    AdjustmentOut,
    ReratedCallOut,
    ReratingIn,
    ReratingOut,
)
from centrex.config import Settings
from centrex.db.models import Customer
from centrex.db.session import SessionMaker
from centrex.services.errors import NotFound, ServiceError, UnknownReference

router = APIRouter(tags=["billing"])


def _month(text: str) -> date:
    year, month = text.split("-")
    return date(int(year), int(month), 1)


async def _credit_note(
    session, rerating: Rerating, adjustments: list[RerateAdjustment], invoice: Invoice,
    today: date, prefix: str,
) -> Invoice:  # fmt: skip
    lines = credit_note_lines(adjustments, rerating.reason)
    sums = totals(lines)
    number = await take_number(session, today)
    note = Invoice(
        id=uuid.uuid4(), number=number, reference=f"{prefix}{number:06d}", kind="credit_note",
        credits_invoice_id=invoice.id, customer_id=invoice.customer_id,
        buyer_name=invoice.buyer_name, period=invoice.period, issued_on=today, due_on=today,
        payment_method=invoice.payment_method, ht_cents=sums.ht_cents,
        vat_cents=sums.vat_cents, ttc_cents=sums.ttc_cents,
        vat=[{"rate": str(r), "base": b, "vat": v} for r, (b, v) in sums.vat_by_rate.items()],
    )  # fmt: skip
    note.lines = [line_row(n, x) for n, x in enumerate(lines, 1)]
    session.add(note)
    await session.flush()
    await link_sources(session, note, lines)
    return note


async def run_rerating(
    sessions: SessionMaker, rerating: Rerating, settings: Settings, today: date
) -> list[str]:
    """Every customer and month of the request, each its own transaction; the credit notes'
    references."""
    async with sessions() as session:
        query = (
            select(RatedCall.customer_id)
            .distinct()
            .where(RatedCall.period >= rerating.from_period, RatedCall.period <= rerating.to_period)
        )
        if rerating.customer_id is not None:
            query = query.where(RatedCall.customer_id == rerating.customer_id)
        customers = list(await session.scalars(query.order_by(RatedCall.customer_id)))
    notes: list[Invoice] = []
    for customer_id in customers:
        period = rerating.from_period
        while period <= rerating.to_period:
            async with sessions() as session:
                adjustments = await rerate_month(session, rerating, customer_id, period)
                invoice_id = await session.scalar(_exists(customer_id, period))
                if adjustments and credit_note_due(adjustments, invoice_id is not None):
                    invoice = await session.get(Invoice, invoice_id)
                    prefix = settings.billing_invoice_prefix
                    note = await _credit_note(session, rerating, adjustments, invoice, today,
                                              prefix)  # fmt: skip
                    notes.append(note)
                await session.commit()
            period = next_month(period)
    for note in notes:
        async with sessions() as session:
            await archive_one(session, note, seller_of(settings))
    if notes:
        async with sessions() as session:
            await email_pending(session, settings)
    return [n.reference for n in notes]


async def _out(session, rerating: Rerating, notes: list[str]) -> ReratingOut:
    calls = await session.scalars(
        select(ReratedCall).where(ReratedCall.rerating_id == rerating.id)
        .order_by(ReratedCall.customer_id, ReratedCall.cdr_id)
    )  # fmt: skip
    adjustments = await session.scalars(
        select(RerateAdjustment).where(RerateAdjustment.rerating_id == rerating.id)
        .order_by(RerateAdjustment.customer_id, RerateAdjustment.period, RerateAdjustment.vat_rate)
    )  # fmt: skip
    return ReratingOut(
        id=rerating.id, from_period=rerating.from_period, to_period=rerating.to_period,
        customer_id=rerating.customer_id, reason=rerating.reason,
        requested_on=rerating.requested_on,
        calls=[ReratedCallOut.model_validate(c) for c in calls],
        adjustments=[AdjustmentOut.model_validate(a) for a in adjustments], credit_notes=notes,
    )  # fmt: skip


@router.post("/v1/billing/reratings", status_code=status.HTTP_201_CREATED,
             response_model=ReratingOut)  # fmt: skip
async def create_rerating(
    body: ReratingIn, request: Request, session: SessionDep, settings: SettingsDep
) -> ReratingOut:
    """Rate a period's calls again against the tariffs now in force for their start (after a
    tariff correction). Invoices are never edited: the differences go on the next invoice, or
    a credit note for a month invoiced whose difference is in the customer's favour."""
    today = billing_day(datetime.now(UTC))
    first = _month(body.from_month)
    last = _month(body.to_month) if body.to_month else first
    if last < first:
        raise ServiceError("to_month", "before from_month")
    if last > today.replace(day=1):
        raise ServiceError("to_month" if body.to_month else "from_month", "a month to come")
    if body.customer_id and await session.get(Customer, body.customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {body.customer_id}")
    rerating = Rerating(id=uuid.uuid4(), from_period=first, to_period=last,
                        customer_id=body.customer_id, reason=body.reason,
                        requested_on=today)  # fmt: skip
    session.add(rerating)
    await session.commit()
    notes = await run_rerating(request.app.state.sessionmaker, rerating, settings, today)
    return await _out(session, rerating, notes)


@router.get("/v1/billing/reratings/{rerating_id}", response_model=ReratingOut)
async def get_rerating(rerating_id: uuid.UUID, session: SessionDep) -> ReratingOut:
    """A re-rating: the calls it changed (previous and new amounts, by CDR), its differences
    and the invoice or credit note line that carried each."""
    rerating = await session.get(Rerating, rerating_id)
    if rerating is None:
        raise NotFound("rerating_id", f"no re-rating {rerating_id}", location="path")
    notes = list(await session.scalars(
        select(Invoice.reference).join(RerateAdjustment, RerateAdjustment.invoice_id == Invoice.id)
        .where(RerateAdjustment.rerating_id == rerating_id, Invoice.kind == "credit_note")
        .distinct()
    ))  # fmt: skip
    return await _out(session, rerating, sorted(notes))
