"""The monthly invoice run: one invoice per customer and month, numbered in one gapless,
chronological sequence, then its Factur-X PDF archived.

Each customer's invoice is its own transaction: the calls still pending are rated, the lines
computed, then the counter row is locked (FOR UPDATE), the invoice re-checked absent, numbered,
written, and the counter moved: a number is taken only by an invoice that commits, and two runs
at once serialise on the counter (no gap, no duplicate); a second run of the same month finds
every invoice there and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from centrex import metrics
from centrex.audit.recorder import record
from centrex.billing import items, rerating
from centrex.billing.document import InvoiceDoc, Party, render
from centrex.billing.mail import email_pending
from centrex.billing.models import (
    Dispute,
    Invoice,
    InvoiceCounter,
    InvoiceDocument,
    InvoiceLineRow,
    Payment,
    Plan,
    RatedCall,
    ReferenceRate,
    Subscription,
)
from centrex.billing.rating import rate_customer
from centrex.billing.rules.invoice import (
    BilledLine,
    BilledNumber,
    FeeTerms,
    InvoiceLine,
    Totals,
    due_date,
    fee_lines,
    fee_months,
    month_end,
    next_month,
    number_fee_lines,
    surcharge_line,
    totals,
)
from centrex.billing.rules.late import LateInvoice, interest_base_cents, late_charges
from centrex.billing.rules.money import euros
from centrex.billing.rules.rating import billing_day
from centrex.billing.rules.tariff import in_force
from centrex.config import Settings
from centrex.db.models import Customer, Line, PhoneNumber
from centrex.db.session import SessionMaker
from centrex.services.errors import Conflict, ServiceError

log = logging.getLogger(__name__)
SERIES = "invoice"


def billing_month_of(day: date) -> date:
    return day.replace(day=1)


#: Customers invoiced at once in a run: their transactions meet only on the counter row, held
#: from numbering to commit.
RUN_WORKERS = 4


@dataclass
class RunResult:
    issued: list[str] = field(default_factory=list)  # references, in number order
    not_issued: int = 0  # customers already invoiced for the month, or with nothing due
    unpriced: list[uuid.UUID] = field(default_factory=list)  # customers held back
    documents: int = 0
    emailed: int = 0


def seller_of(settings: Settings) -> Party:
    return Party(settings.billing_seller_name, settings.billing_seller_address,
                 settings.billing_seller_postcode, settings.billing_seller_city,
                 settings.billing_seller_country, settings.billing_seller_vat_id)  # fmt: skip


def _exists(customer_id: uuid.UUID, period: date):
    return select(Invoice.id).where(
        Invoice.customer_id == customer_id, Invoice.period == period, Invoice.kind == "invoice"
    )


async def _fee_terms(session: AsyncSession, sub: Subscription, months: list[date]) -> dict:
    versions = [(p.effective_from, p) for p in
                await session.scalars(select(Plan).where(Plan.code == sub.plan_code))]  # fmt: skip
    out = {}
    for month in months:
        plan = in_force(versions, max(month, sub.starts_on))
        if plan is not None:
            out[month] = FeeTerms(plan.name, plan.line_fee_cents, plan.line_fee_vat,
                                  plan.access_fee_cents, plan.access_fee_vat)  # fmt: skip
    return out


async def _late_lines(
    session: AsyncSession, customer_id: uuid.UUID, issued_on: date
) -> list[InvoiceLine]:
    """Interest and the 40 € indemnity for the customer's earlier invoices unpaid past due."""
    paid = (select(func.coalesce(func.sum(case((Payment.kind == "reject", -Payment.amount_cents),
                                               else_=Payment.amount_cents)), 0))
            .where(Payment.invoice_id == Invoice.id).scalar_subquery())  # fmt: skip
    pending = (select(func.coalesce(func.sum(Dispute.amount_ttc_cents), 0))
               .where(Dispute.invoice_id == Invoice.id, Dispute.status == "pending")
               .scalar_subquery())  # fmt: skip
    upheld = (select(func.coalesce(func.sum(Dispute.amount_ttc_cents), 0))
              .where(Dispute.invoice_id == Invoice.id, Dispute.status == "upheld")
              .scalar_subquery())  # fmt: skip
    # Interest is on the invoice's TTC, not on late charges it carried (no interest on interest).
    charges = (select(func.coalesce(func.sum(InvoiceLineRow.amount_cents), 0))
               .where(InvoiceLineRow.invoice_id == Invoice.id,
                      InvoiceLineRow.kind.in_(("late_interest", "indemnity")))
               .scalar_subquery())  # fmt: skip
    about = InvoiceLineRow.refers_to_invoice_id == Invoice.id
    charged = select(func.max(InvoiceLineRow.interest_until)).where(about).scalar_subquery()
    indemnity = select(InvoiceLineRow.id).where(about, InvoiceLineRow.kind == "indemnity").exists()
    rows = (await session.execute(
        select(Invoice.id, Invoice.reference, Invoice.due_on, Invoice.ttc_cents - charges, paid,
               pending, upheld, charged, indemnity)
        .where(Invoice.customer_id == customer_id, Invoice.kind.in_(("invoice", "interim")),
               Invoice.due_on < issued_on)
        .order_by(Invoice.number)
    )).all()  # fmt: skip
    late = {
        r[1]: (r[0], LateInvoice(r[1], r[2], interest_base_cents(r[3] - r[6], r[4], r[5]),
                                 r[7], r[8]))
        for r in rows
    }  # fmt: skip
    if not any(inv.base_cents > 0 for _, inv in late.values()):
        return []
    rates: dict[str, list[tuple[date, Decimal]]] = {"ecb_mro": [], "legal_professional": []}
    for rate in await session.scalars(select(ReferenceRate)):
        rates[rate.kind].append((rate.effective_from, rate.rate))
    try:
        charges = late_charges([inv for _, inv in late.values()], issued_on,
                               rates["ecb_mro"], rates["legal_professional"])  # fmt: skip
    except ValueError as exc:  # a reference rate missing: hold the invoice back (fail closed)
        raise ServiceError("month", f"late-payment interest: {exc}") from None
    return [
        InvoiceLine(c.kind, c.label, Decimal(1), c.amount_cents, c.amount_cents, Decimal(0),
                    None, str(late[c.reference][0]), c.until)
        for c in charges
    ]  # fmt: skip


async def usage_lines(
    session: AsyncSession, customer_id: uuid.UUID, period: date
) -> list[InvoiceLine]:
    """Out-of-bundle usage of ``period`` in arrears, one line per tariff prefix and VAT rate:
    the rated calls' amounts, less what interim invoices of the period already billed."""
    billed = (select(func.coalesce(func.sum(InvoiceLineRow.amount_cents), 0))
              .join(Invoice, Invoice.id == InvoiceLineRow.invoice_id)
              .where(Invoice.customer_id == customer_id, Invoice.kind.in_(("interim", "invoice")),
                     InvoiceLineRow.kind == "usage", InvoiceLineRow.service_month == period,
                     InvoiceLineRow.prefix == RatedCall.prefix,
                     InvoiceLineRow.vat_rate == RatedCall.vat_rate)
              .correlate(RatedCall).scalar_subquery())  # fmt: skip
    usage = await session.execute(
        select(RatedCall.prefix, RatedCall.vat_rate, func.count(), func.sum(RatedCall.charged_s),
               func.sum(RatedCall.amount_cents), billed)
        .where(RatedCall.customer_id == customer_id, RatedCall.period == period,
               RatedCall.amount_cents > 0)
        .group_by(RatedCall.prefix, RatedCall.vat_rate).order_by(RatedCall.prefix)
    )  # fmt: skip
    out = []
    for prefix, rate, calls, seconds, cents, already in usage:
        due = int(cents) - int(already)
        if due <= 0:
            continue
        label = f"Calls to +{prefix} out of bundle, {period:%Y-%m}: {calls} calls, {seconds} s"
        if already:
            label += f", less {euros(int(already))} EUR invoiced before"
        out.append(InvoiceLine("usage", label, Decimal(calls), 0, due, rate, period,
                               prefix=prefix))  # fmt: skip
    return out


async def invoice_lines(
    session: AsyncSession, customer_id: uuid.UUID, period: date, issued_on: date
) -> tuple[list[InvoiceLine], str]:
    """The lines of the customer's invoice for usage ``period`` (fees of the month after, in
    advance), and its payment method."""
    advance_end = month_end(next_month(period))
    subs = list(await session.scalars(
        select(Subscription).where(
            Subscription.customer_id == customer_id, Subscription.starts_on <= advance_end,
            (Subscription.ends_on.is_(None)) | (Subscription.ends_on >= period),
        ).order_by(Subscription.starts_on)
    ))  # fmt: skip
    if not subs:  # ended: only the charges the contract made due since (a final refund…)
        last = await session.scalar(select(Subscription.payment_method)
                                    .where(Subscription.customer_id == customer_id)
                                    .order_by(Subscription.starts_on.desc()).limit(1))  # fmt: skip
        out = await items.charges_due(session, customer_id)
        out += await rerating.adjustments_due(session, customer_id)
        return out + await items.credits_due(session, customer_id, out), last or "sepa"
    billed_rows = await session.execute(
        select(InvoiceLineRow.kind, InvoiceLineRow.service_month)
        .join(Invoice, Invoice.id == InvoiceLineRow.invoice_id)
        .where(Invoice.customer_id == customer_id,
               InvoiceLineRow.kind.in_(("line_fee", "access_fee")))
    )  # fmt: skip
    billed = {(kind, month) for kind, month in billed_rows}
    months = fee_months(period, {m for k, m in billed if k == "line_fee"})
    lines = [
        BilledLine(line.sip_username, billing_day(line.created_at),
                   billing_day(line.deleted_at) if line.deleted_at else None)
        for line in await session.scalars(
            select(Line).where(Line.customer_id == customer_id).order_by(Line.created_at)
        )
    ]  # fmt: skip
    out: list[InvoiceLine] = []
    access_billed = any(kind == "access_fee" for kind, _ in billed)
    for sub in subs:
        terms = await _fee_terms(session, sub, months)
        due = not access_billed and sub is subs[0]
        out += fee_lines(months, sub.starts_on, sub.ends_on, terms, lines, due)
    out += await usage_lines(session, customer_id, period)
    numbers = [
        BilledNumber(n.e164, n.tier, n.monthly_fee_cents, billing_day(n.assigned_at),
                     billing_day(n.released_at) if n.released_at else None)
        for n in await session.scalars(
            select(PhoneNumber).where(PhoneNumber.customer_id == customer_id,
                                      PhoneNumber.monthly_fee_cents > 0,
                                      PhoneNumber.assigned_at.is_not(None))
            .order_by(PhoneNumber.e164)
        )
    ]  # fmt: skip
    out += number_fee_lines(months, numbers)
    until = None if any(s.ends_on is None for s in subs) else max(s.ends_on for s in subs)
    out += await items.equipment_due(session, customer_id, [period, next_month(period)], until)
    out += await items.catalogue_due(session, customer_id, [period, next_month(period)], until)
    out += await _late_lines(session, customer_id, issued_on)
    out += await items.charges_due(session, customer_id)
    out += await rerating.adjustments_due(session, customer_id)
    method = subs[-1].payment_method
    if sum(x.amount_cents for x in out) > 0 and (extra := surcharge_line(method)):
        out.append(extra)
    out += await items.credits_due(session, customer_id, out)
    return out, method


async def take_number(session: AsyncSession, issued_on: date, *, unless=None) -> int | None:
    """The next number of the sequence, for a document issued on ``issued_on``, in the
    caller's transaction: the counter row stays locked until it commits or rolls back, so the
    number is used by exactly what commits with it. None if ``unless`` (a query) finds a row
    once the lock is held."""
    counter = await session.scalar(
        select(InvoiceCounter).where(InvoiceCounter.series == SERIES).with_for_update()
    )
    if counter is None:
        raise RuntimeError("no invoice counter row: is migration 0023 applied?")
    if unless is not None and await session.scalar(unless) is not None:
        return None
    last_issued_on = counter.last_issued_on
    if last_issued_on is not None and issued_on < last_issued_on:
        await session.rollback()  # expires ``counter``: its date was read before
        raise Conflict("issued_on", f"documents are already issued on {last_issued_on}:"
                       " numbering is chronological")  # fmt: skip
    counter.last_number += 1
    counter.last_issued_on = issued_on
    return counter.last_number


async def invoice_customer(
    session: AsyncSession, customer_id: uuid.UUID, period: date, issued_on: date, prefix: str
) -> str | None:
    """Issue the customer's invoice for ``period`` (committed here): its reference, or None if
    it already had one or has nothing to invoice. Raises if calls of the month are unpriced."""
    if await session.scalar(_exists(customer_id, period)) is not None:
        return None
    rating = await rate_customer(session, customer_id)
    if period in rating.unpriced_periods:
        await session.rollback()
        raise ServiceError("month", f"customer {customer_id} has calls no tariff prices")
    lines, method = await invoice_lines(session, customer_id, period, issued_on)
    if not lines:
        await session.commit()  # the rating stays
        return None
    sums = totals(lines)
    # Re-read under the counter's lock: a concurrent run may have issued it meanwhile.
    number = await take_number(session, issued_on, unless=_exists(customer_id, period))
    if number is None:
        await session.rollback()
        return None
    customer = await session.get(Customer, customer_id)
    invoice = Invoice(
        id=uuid.uuid4(), number=number, reference=f"{prefix}{number:06d}",
        kind="invoice", customer_id=customer_id, buyer_name=customer.name if customer else "?",
        period=period, issued_on=issued_on, due_on=due_date(issued_on), payment_method=method,
        ht_cents=sums.ht_cents, vat_cents=sums.vat_cents, ttc_cents=sums.ttc_cents,
        vat=[{"rate": str(r), "base": b, "vat": v} for r, (b, v) in sums.vat_by_rate.items()],
    )  # fmt: skip
    invoice.lines = [items.line_row(n, x) for n, x in enumerate(lines, 1)]
    session.add(invoice)
    await session.flush()  # the lines exist before the charges and credit uses point to them
    await items.link_sources(session, invoice, lines)
    await session.commit()
    return invoice.reference


async def interim_customer(
    session: AsyncSession, customer_id: uuid.UUID, today: date, prefix: str
) -> str | None:
    """Art. 11.2: an interim invoice of the month's out-of-bundle usage not invoiced yet, when
    it passes the threshold of the customer's plan (committed here); its reference, or None."""
    await rate_customer(session, customer_id)
    period = billing_month_of(today)
    sub = await session.scalar(
        select(Subscription).where(
            Subscription.customer_id == customer_id, Subscription.starts_on <= today,
            (Subscription.ends_on.is_(None)) | (Subscription.ends_on >= today),
        )
    )  # fmt: skip
    versions = [] if sub is None else [(p.effective_from, p) for p in await session.scalars(
        select(Plan).where(Plan.code == sub.plan_code))]  # fmt: skip
    plan = in_force(versions, today)
    lines = await usage_lines(session, customer_id, period)
    if (
        plan is None
        or plan.interim_threshold_cents is None
        or (sum(x.amount_cents for x in lines) <= plan.interim_threshold_cents)
    ):
        await session.commit()  # the rating stays
        return None
    if extra := surcharge_line(sub.payment_method):
        lines.append(extra)
    sums = totals(lines)
    number = await take_number(session, today)
    customer = await session.get(Customer, customer_id)
    invoice = Invoice(
        number=number, reference=f"{prefix}{number:06d}", kind="interim",
        customer_id=customer_id, buyer_name=customer.name if customer else "?", period=period,
        issued_on=today, due_on=due_date(today), payment_method=sub.payment_method,
        ht_cents=sums.ht_cents, vat_cents=sums.vat_cents, ttc_cents=sums.ttc_cents,
        vat=[{"rate": str(r), "base": b, "vat": v} for r, (b, v) in sums.vat_by_rate.items()],
    )  # fmt: skip
    invoice.lines = [
        InvoiceLineRow(position=n, kind=x.kind, label=x.label[:300], quantity=x.quantity,
                       unit_cents=x.unit_cents, amount_cents=x.amount_cents,
                       vat_rate=x.vat_rate, service_month=x.service_month, prefix=x.prefix)
        for n, x in enumerate(lines, 1)
    ]  # fmt: skip
    session.add(invoice)
    await session.commit()
    return invoice.reference


async def run_interim(sessionmaker: SessionMaker, today: date, settings: Settings) -> list[str]:
    """Interim invoices for every subscribed customer past its threshold, then their PDFs and
    emails. Customers one at a time: a rare run, small."""
    async with sessionmaker() as session:
        customers = list(await session.scalars(
            select(Subscription.customer_id).distinct().where(
                Subscription.starts_on <= today,
                (Subscription.ends_on.is_(None)) | (Subscription.ends_on >= today),
            ).order_by(Subscription.customer_id)
        ))  # fmt: skip
    issued = []
    for customer_id in customers:
        async with sessionmaker() as session:
            reference = await interim_customer(session, customer_id, today,
                                               settings.billing_invoice_prefix)  # fmt: skip
        if reference:
            issued.append(reference)
    async with sessionmaker() as session:
        await archive_documents(session, billing_month_of(today), seller_of(settings))
    async with sessionmaker() as session:
        await email_pending(session, settings)
    return issued


def document_of(
    invoice: Invoice, seller: Party, country: str | None, preceding: str | None = None
) -> InvoiceDoc:
    lines = [InvoiceLine(r.kind, r.label, r.quantity, r.unit_cents, r.amount_cents, r.vat_rate,
                         r.service_month) for r in invoice.lines]  # fmt: skip
    by_rate = {Decimal(v["rate"]): (v["base"], v["vat"]) for v in invoice.vat}
    sums = Totals(invoice.ht_cents, by_rate, invoice.vat_cents, invoice.ttc_cents)
    buyer = Party(invoice.buyer_name, "-", "-", "-", country or "FR")
    means = "SEPA direct debit" if invoice.payment_method == "sepa" else invoice.payment_method
    terms = (f"Payment due {invoice.due_on:%d/%m/%Y} (10 days, art. 11.2), {means}."
             " Late payment: interest at the greater of the ECB rate + 10 points and 3 times the"
             " legal rate, and a 40 EUR fixed recovery indemnity.")  # fmt: skip
    if invoice.kind == "credit_note":
        terms = "Deducted from the amounts due (art. 11.3: dispute upheld)."
    return InvoiceDoc(invoice.reference, invoice.issued_on, invoice.due_on, invoice.period,
                      month_end(invoice.period), seller, buyer, lines, sums, terms,
                      "381" if invoice.kind == "credit_note" else "380", preceding,
                      invoice.kind == "interim")  # fmt: skip


async def archive_documents(session: AsyncSession, period: date, seller: Party) -> int:
    """Render and store the PDF of each invoice of ``period`` that has none yet."""
    pending = list(await session.scalars(
        select(Invoice.id).where(Invoice.period == period,
                              ~select(InvoiceDocument.invoice_id)
                              .where(InvoiceDocument.invoice_id == Invoice.id).exists())
        .order_by(Invoice.number)
    ))  # fmt: skip
    archived = 0
    for invoice_id in pending:  # by id: a failed one's rollback expires every object loaded
        invoice = await session.get(Invoice, invoice_id)
        assert invoice is not None  # invoices are never deleted
        reference = invoice.reference
        try:
            await archive_one(session, invoice, seller)
        except Exception:
            # One document that cannot be made must not keep the others from their customers;
            # it stays without a PDF, is counted and logged, and the next run tries it again.
            await session.rollback()
            metrics.BILLING_DOCUMENTS.labels("failed").inc()
            log.exception("billing: the PDF of %s could not be archived", reference)
            continue
        metrics.BILLING_DOCUMENTS.labels("archived").inc()
        archived += 1
    return archived


async def archive_one(session: AsyncSession, invoice: Invoice, seller: Party) -> None:
    """Render and store one invoice's or credit note's PDF (committed here)."""
    country = await session.scalar(
        select(Customer.residence_country).where(Customer.id == invoice.customer_id)
    )
    preceding = None
    if invoice.credits_invoice_id is not None:
        preceding = await session.scalar(
            select(Invoice.reference).where(Invoice.id == invoice.credits_invoice_id)
        )
    document = document_of(invoice, seller, country, preceding)
    pdf, xml = await asyncio.to_thread(render, document)
    digest = hashlib.sha256(pdf).hexdigest()
    # Two runs at once may both render it: the first stored is the one kept.
    stmt = (
        pg_insert(InvoiceDocument)
        .values(invoice_id=invoice.id, pdf=pdf, facturx_xml=xml.decode(), sha256=digest)
        .on_conflict_do_nothing()
        .execution_options(audited="record() below")
    )
    await session.execute(stmt)
    await record(session, InvoiceDocument, invoice.id, "archived", after={"sha256": digest})
    await session.commit()


async def run_month(
    sessionmaker: SessionMaker, period: date, issued_on: date, settings: Settings
) -> RunResult:
    """Invoice every subscribed customer for usage ``period``, then archive the PDFs."""
    if issued_on <= month_end(period):
        raise ServiceError("month", "a month is invoiced once it has ended")
    result = RunResult()
    async with sessionmaker() as session:
        customers = list(await session.scalars(
            select(Subscription.customer_id).where(
                Subscription.starts_on <= month_end(next_month(period)),
                (Subscription.ends_on.is_(None)) | (Subscription.ends_on >= period),
            ).union(items.customers_with_charges(), rerating.customers_with_adjustments())
            .order_by("customer_id")
        ))  # fmt: skip
    workers = asyncio.Semaphore(RUN_WORKERS)

    async def one(customer_id: uuid.UUID) -> None:
        async with workers, sessionmaker() as session:
            try:
                reference = await invoice_customer(session, customer_id, period, issued_on,
                                                   settings.billing_invoice_prefix)  # fmt: skip
            except Conflict:
                raise
            except ServiceError as exc:
                log.warning("billing: customer %s not invoiced for %s: %s", customer_id, period,
                            exc.message)  # fmt: skip
                result.unpriced.append(customer_id)
                return
        if reference is None:
            result.not_issued += 1
        else:
            result.issued.append(reference)

    # Every customer's transaction runs to its end before an error is raised.
    outcomes = await asyncio.gather(*(one(c) for c in customers), return_exceptions=True)
    if errors := [o for o in outcomes if isinstance(o, BaseException)]:
        raise errors[0]
    result.issued.sort()
    async with sessionmaker() as session:
        result.documents = await archive_documents(session, period, seller_of(settings))
    async with sessionmaker() as session:
        result.emailed = await email_pending(session, settings)
    return result
