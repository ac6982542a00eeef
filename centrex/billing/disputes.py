"""Disputes (art. 11.3): accepted within 30 days of the invoice's receipt, on part of it (an
amount HT at one of its VAT rates); upheld, they produce a credit note numbered in the
invoices' sequence; rejected, the part is due as before (interest from the original due date).
The invoice is emailed on its issue day: its receipt is taken as its issue date."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.invoicing import archive_one, seller_of, take_number
from centrex.billing.mail import email_pending
from centrex.billing.models import Dispute, Invoice, InvoiceLineRow
from centrex.billing.rules.invoice import InvoiceLine, totals
from centrex.billing.rules.late import DISPUTE_DAYS, dispute_admissible
from centrex.billing.rules.money import vat_cents
from centrex.config import Settings
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference


async def open_dispute(
    session: AsyncSession, invoice_id: uuid.UUID, received_on: date, amount_ht_cents: int,
    vat_rate: Decimal, reason: str,
) -> Dispute:  # fmt: skip
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None or invoice.kind == "credit_note":
        raise NotFound("invoice_id", f"no invoice with id {invoice_id}", location="path")
    if not dispute_admissible(invoice.issued_on, received_on):
        why = (f"a dispute is received within {DISPUTE_DAYS} days of the invoice "
               f"({invoice.issued_on}); the invoice is accepted")  # fmt: skip
        raise ServiceError("received_on", why)
    base = next((v["base"] for v in invoice.vat if Decimal(v["rate"]) == vat_rate), None)
    if base is None:
        raise ServiceError("vat_rate", f"invoice {invoice.reference} has no line at {vat_rate} %")
    disputed = await session.scalar(
        select(func.coalesce(func.sum(Dispute.amount_ht_cents), 0)).where(
            Dispute.invoice_id == invoice_id, Dispute.vat_rate == vat_rate,
            Dispute.status != "rejected",
        )
    )  # fmt: skip
    if amount_ht_cents > base - int(disputed):
        raise ServiceError("amount_ht_cents", f"at most {base - int(disputed)} cents HT at "
                           f"{vat_rate} % are left to dispute on {invoice.reference}")  # fmt: skip
    dispute = Dispute(
        invoice_id=invoice_id, customer_id=invoice.customer_id, received_on=received_on,
        amount_ht_cents=amount_ht_cents, vat_rate=vat_rate, reason=reason, status="pending",
        amount_ttc_cents=amount_ht_cents + vat_cents(amount_ht_cents, vat_rate),
    )  # fmt: skip
    session.add(dispute)
    await session.flush()
    return dispute


async def resolve(
    session: AsyncSession, dispute_id: uuid.UUID, outcome: str, resolved_on: date,
    settings: Settings,
) -> Dispute:  # fmt: skip
    """Upheld: a credit note for the disputed part, numbered now (committed here, then its
    PDF archived); rejected: the part is due again."""
    dispute = await session.scalar(
        select(Dispute).where(Dispute.id == dispute_id).with_for_update()
    )
    if dispute is None:
        raise NotFound("dispute_id", f"no dispute with id {dispute_id}", location="path")
    if dispute.status != "pending":
        raise Conflict("outcome", f"the dispute was already {dispute.status}")
    invoice = await session.get(Invoice, dispute.invoice_id)
    if invoice is None:
        raise UnknownReference("dispute_id", "its invoice is gone")  # never: append-only
    if resolved_on < dispute.received_on:
        raise ServiceError("resolved_on", "a dispute is resolved after it was received")
    dispute.status, dispute.resolved_on = outcome, resolved_on
    credit = None
    if outcome == "upheld":
        line = InvoiceLine("credit", f"Dispute upheld on invoice {invoice.reference}: "
                           f"{dispute.reason}"[:300], Decimal(1), dispute.amount_ht_cents,
                           dispute.amount_ht_cents, dispute.vat_rate)  # fmt: skip
        sums = totals([line])
        number = await take_number(session, resolved_on)
        prefix = settings.billing_invoice_prefix
        credit = Invoice(
            number=number, reference=f"{prefix}{number:06d}", kind="credit_note",
            credits_invoice_id=invoice.id, customer_id=invoice.customer_id,
            buyer_name=invoice.buyer_name, period=invoice.period, issued_on=resolved_on,
            due_on=resolved_on, payment_method=invoice.payment_method,
            ht_cents=sums.ht_cents, vat_cents=sums.vat_cents, ttc_cents=sums.ttc_cents,
            vat=[{"rate": str(r), "base": b, "vat": v} for r, (b, v) in sums.vat_by_rate.items()],
        )  # fmt: skip
        credit.lines = [
            InvoiceLineRow(position=1, kind=line.kind, label=line.label, quantity=line.quantity,
                           unit_cents=line.unit_cents, amount_cents=line.amount_cents,
                           vat_rate=line.vat_rate)
        ]  # fmt: skip
        session.add(credit)
        await session.flush()
        dispute.credit_note_id = credit.id
    await session.commit()
    if credit is not None:
        await archive_one(session, credit, seller_of(settings))
        await email_pending(session, settings)
    return dispute
