"""Billing's API: the catalogue and subscriptions (operator), rating runs (operator), rated
usage per line and customer (the customer reads its own: centrex/access/rules.py)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, own_customer, visible
from centrex.billing import service
from centrex.billing.invoicing import run_interim, run_month
from centrex.billing.models import Invoice, InvoiceDocument, Plan, RatedCall, Subscription
from centrex.billing.rating import period_filter, rate_pending
from centrex.billing.rules.rating import billing_day, billing_month
from centrex.billing.schemas import (
    InterimRunOut,
    InvoiceOut,
    InvoiceRunIn,
    InvoiceRunOut,
    LineUsage,
    PlanIn,
    PlanOut,
    RatingRunOut,
    SubscriptionIn,
    SubscriptionOut,
    UsageOut,
    UsageTotals,
)
from centrex.services.errors import Conflict, NotFound, ServiceError

router = APIRouter(tags=["billing"])

MONTH = re.compile(r"^([1-9]\d{3})-(0[1-9]|1[0-2])$")


def _now() -> datetime:
    return datetime.now(UTC)


def _period(month: str | None) -> date:
    if month is None:
        return billing_month(_now())
    match = MONTH.fullmatch(month)
    if not match:
        raise ServiceError("month", "a month as YYYY-MM", location="query")
    return date(int(match[1]), int(match[2]), 1)


@router.post("/v1/billing/plans", status_code=status.HTTP_201_CREATED, response_model=PlanOut)
async def create_plan(body: PlanIn, session: SessionDep) -> Plan:
    """A plan's next version (its first, for a new code). Versions are never edited."""
    plan = await service.create_plan_version(session, body, today=billing_day(_now()))
    try:
        await session.commit()
    except IntegrityError:  # two versions created at once
        await session.rollback()
        raise Conflict("code", f"plan {body.code!r} changed meanwhile; try again") from None
    return plan


@router.get("/v1/billing/plans", response_model=list[PlanOut])
async def list_plans(session: SessionDep) -> list[Plan]:
    return await service.list_plans(session)


@router.post(
    "/v1/billing/subscriptions",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
)
async def create_subscription(body: SubscriptionIn, session: SessionDep) -> Subscription:
    subscription = await service.subscribe(session, body)
    await session.commit()
    return subscription


@router.post("/v1/billing/rating-runs", response_model=RatingRunOut)
async def run_rating(session: SessionDep) -> RatingRunOut:
    """Rate every answered call not rated yet (each once; a repeat rates only new calls)."""
    result = await rate_pending(session)
    return RatingRunOut(rated=result.rated, unpriced=len(result.unpriced),
                        unpriced_cdr_ids=result.unpriced[:100])  # fmt: skip


def _sums():
    return (
        func.count(RatedCall.id), func.sum(RatedCall.billed_s), func.sum(RatedCall.bundle_s),
        func.sum(RatedCall.out_s), func.sum(RatedCall.charged_s), func.sum(RatedCall.amount_cents),
    )  # fmt: skip


def _totals(row) -> dict[str, int]:
    names = ("calls", "billed_s", "bundle_s", "out_s", "charged_s", "amount_cents")
    return {name: int(value or 0) for name, value in zip(names, row, strict=True)}


@router.get("/v1/customers/{customer_id}/usage", response_model=UsageOut)
async def customer_usage(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    month: str | None = Query(
        None,
        pattern=MONTH.pattern,
        description="The billing month, YYYY-MM (Paris); default: this one.",
    ),
) -> UsageOut:
    """Rated usage of a billing month, per line and for the customer (HT)."""
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    period = _period(month)
    where = period_filter(customer_id, period)
    rows = await session.execute(
        select(RatedCall.line_id, *_sums()).where(where).group_by(RatedCall.line_id)
        .order_by(RatedCall.line_id)
    )  # fmt: skip
    lines = [LineUsage(line_id=r[0], **_totals(r[1:])) for r in rows]
    total = (await session.execute(select(*_sums()).where(where))).one()
    return UsageOut(customer_id=customer_id, period=period, lines=lines,
                    total=UsageTotals(**_totals(total)))  # fmt: skip


CSV_COLUMNS = ("cdr_id", "line_id", "start_at", "callee", "prefix", "billed_s", "bundle_s",
               "out_s", "charged_s", "amount_cents", "vat_rate", "fraud")  # fmt: skip


@router.get("/v1/customers/{customer_id}/rated-calls.csv", response_class=StreamingResponse)
async def rated_calls_csv(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: PrincipalDep,
    month: str | None = Query(
        None,
        pattern=MONTH.pattern,
        description="The billing month, YYYY-MM (Paris); default: this one.",
    ),
) -> StreamingResponse:
    """Every rated call of the month, one a line (callee numbers are E.164: no formula)."""
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")
    period = _period(month)
    query = (select(*(getattr(RatedCall, c) for c in CSV_COLUMNS))
             .where(period_filter(customer_id, period))
             .order_by(RatedCall.start_at, RatedCall.id))  # fmt: skip

    async def rows() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        stream = await session.stream(query.execution_options(yield_per=1000))
        async for row in stream:
            writer.writerow(["" if v is None else v.isoformat() if isinstance(v, datetime)
                             else v for v in row])  # fmt: skip
            if buffer.tell() > 65536:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return StreamingResponse(
        rows(), media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="rated-{period:%Y-%m}.csv"'},
    )  # fmt: skip


@router.post("/v1/billing/invoice-runs", response_model=InvoiceRunOut)
async def run_invoices(
    body: InvoiceRunIn, request: Request, settings: SettingsDep
) -> InvoiceRunOut:
    """Invoice a month that has ended (issued today): usage of that month, fees of the next in
    advance. A second run of the same month issues nothing twice."""
    result = await run_month(
        request.app.state.sessionmaker, _period(body.month), billing_day(_now()), settings
    )
    return InvoiceRunOut(
        issued=result.issued, not_issued=result.not_issued,
        unpriced_customers=result.unpriced, documents=result.documents,
        emailed=result.emailed,
    )  # fmt: skip


@router.post("/v1/billing/interim-runs", response_model=InterimRunOut)
async def run_interims(request: Request, settings: SettingsDep) -> InterimRunOut:
    """Art. 11.2: an interim invoice (issued today) for each customer whose out-of-bundle usage
    this month, not yet invoiced, passes its plan's threshold."""
    issued = await run_interim(request.app.state.sessionmaker, billing_day(_now()), settings)
    return InterimRunOut(issued=issued)


@router.get("/v1/invoices", response_model=list[InvoiceOut])
async def list_invoices(
    session: SessionDep,
    principal: PrincipalDep,
    customer_id: uuid.UUID | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> list[Invoice]:
    """Invoices, newest number first (a customer token: its own)."""
    customer_id = own_customer(principal, customer_id)
    query = select(Invoice).order_by(Invoice.number.desc()).limit(limit)
    if customer_id is not None:
        query = query.where(Invoice.customer_id == customer_id)
    return list(await session.scalars(query))


async def _invoice(session, principal, invoice_id: uuid.UUID) -> Invoice:
    invoice = await session.get(Invoice, invoice_id)
    what = f"no invoice with id {invoice_id}"
    if invoice is None:
        raise NotFound("invoice_id", what, location="path")
    visible(principal, invoice.customer_id, "invoice_id", what)
    return invoice


# Before /v1/invoices/{invoice_id}, which would take "….pdf" as an id.
@router.get("/v1/invoices/{invoice_id}.pdf", response_class=Response)
async def invoice_pdf(invoice_id: uuid.UUID, session: SessionDep, principal: PrincipalDep):
    """The archived Factur-X PDF, exactly as issued."""
    invoice = await _invoice(session, principal, invoice_id)
    document = await session.get(InvoiceDocument, invoice.id)
    if document is None:
        raise NotFound("invoice_id", f"invoice {invoice.reference} has no PDF yet", location="path")
    return Response(
        document.pdf, media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{invoice.reference}.pdf"',
                 "X-Content-SHA256": document.sha256},
    )  # fmt: skip


@router.get("/v1/invoices/{invoice_id}", response_model=InvoiceOut)
async def get_invoice(invoice_id: uuid.UUID, session: SessionDep, principal: PrincipalDep):
    return await _invoice(session, principal, invoice_id)
