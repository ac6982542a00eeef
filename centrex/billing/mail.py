"""Invoices by email (art. 11.2: invoices are sent by email), with their Factur-X PDF: a real
SMTP client. Each sending is recorded (``billing_invoice_emails``): a run sends what was not
sent yet, so an SMTP outage is retried by the next run. One mailing pass at a time (an
advisory lock held by its transaction): two runs at once never send an invoice twice. A crash
in the middle of a pass sends its invoices again on the next one (at least once)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from centrex import metrics
from centrex.audit.recorder import record
from centrex.billing.models import Invoice, InvoiceDocument, InvoiceEmail
from centrex.billing.rules.money import euros
from centrex.config import Settings
from centrex.db.models import Customer
from centrex.services.notify import deliver

log = logging.getLogger(__name__)


def _message(settings: Settings, recipient: str, invoice: Invoice, pdf: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = recipient
    title = "Credit note" if invoice.kind == "credit_note" else "Invoice"
    message["Subject"] = f"{title} {invoice.reference} ({euros(invoice.ttc_cents)} EUR)"
    message.set_content(
        f"{title} {invoice.reference} of {invoice.issued_on:%d/%m/%Y}: "
        f"{euros(invoice.ttc_cents)} EUR incl. VAT, due {invoice.due_on:%d/%m/%Y}.\n"
        "The PDF attached carries its Factur-X data. It stays downloadable for 5 years.\n"
    )
    message.add_attachment(pdf, maintype="application", subtype="pdf",
                           filename=f"{invoice.reference}.pdf")  # fmt: skip
    return message


async def email_pending(session: AsyncSession, settings: Settings) -> int:
    """Email every archived document not emailed yet to its customer's address (customers
    without one are skipped: their invoices stay in the customer area). Committed here."""
    await session.execute(select(func.pg_advisory_xact_lock(0x4D41494C)))  # "MAIL"
    rows = (await session.execute(
        select(Invoice, InvoiceDocument.pdf, Customer.email)
        .join(InvoiceDocument, InvoiceDocument.invoice_id == Invoice.id)
        .join(Customer, Customer.id == Invoice.customer_id)
        .where(Customer.email.is_not(None),
               ~select(InvoiceEmail.invoice_id)
               .where(InvoiceEmail.invoice_id == Invoice.id).exists())
        .order_by(Invoice.number)
    )).all()  # fmt: skip
    sent = 0
    for invoice, pdf, email in rows:
        try:
            await asyncio.to_thread(deliver, settings, _message(settings, email, invoice, pdf))
        except (OSError, smtplib.SMTPException) as exc:
            metrics.BILLING_EMAILS.labels("failed").inc()
            log.warning("billing: %s not emailed (%s); the next run retries", invoice.reference,
                        exc)  # fmt: skip
            continue
        metrics.BILLING_EMAILS.labels("sent").inc()
        await session.execute(
            pg_insert(InvoiceEmail).values(invoice_id=invoice.id, recipient=email)
            .on_conflict_do_nothing().execution_options(audited="record() below")
        )  # fmt: skip
        await record(session, InvoiceEmail, invoice.id, "emailed", after={"recipient": email})
        sent += 1
    await session.commit()
    return sent
