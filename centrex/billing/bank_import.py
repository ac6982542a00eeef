"""Importing a bank's return file: each entry matched to the invoice we collected (our
end-to-end id is the invoice reference, centrex/billing/sepa.py) and its mandate, checked, then
booked. All or nothing: one entry that does not fit refuses the whole file, naming the entry,
and nothing is written.

What each outcome books (the balance is invoices - payments + rejects):

- ``settled`` (camt.054 credit): a ``payment`` of the amount, on the booking day;
- ``returned`` (camt.054 debit with return information, after settlement): a ``reject`` of the
  amount: the invoice is unpaid again, so the non-payment steps (centrex/contracts/nonpayment.py)
  apply to it;
- ``rejected`` (pain.002 RJCT, before settlement): no money moved. If a payment was booked for
  the invoice anyway (an operator who books debits on the collection day), a ``reject`` undoes
  it; otherwise nothing is booked: the invoice stayed unpaid.

Checked: the transaction was collected (its end-to-end id is an invoice in a collection), with
that mandate, for that amount; an invoice is settled, returned, rejected once each; a return
follows a settlement; a reject comes before one. A file already imported (same bytes, or the
same message id of the same kind) is refused with 409 and changes nothing: importing it again
is harmless."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.bank_models import BankEntryRow, BankFileRow
from centrex.billing.bankfile import REJECTED, RETURNED, SETTLED, BankEntry, BankFileError, parse
from centrex.billing.models import CollectionItem, Invoice, Mandate, Payment
from centrex.contracts.nonpayment import lift_if_settled
from centrex.services.errors import Conflict, ServiceError, UnknownReference

LOCK = 0x42414E4B46  # "BANKF": one import at a time


@dataclass(frozen=True)
class Imported:
    file: BankFileRow
    entries: list[BankEntryRow]


def _euros(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} EUR"


async def import_file(session: AsyncSession, data: bytes, now: datetime | None = None) -> Imported:
    try:
        parsed = parse(data)
    except BankFileError as exc:
        raise ServiceError("file", str(exc)) from None
    await session.execute(select(func.pg_advisory_xact_lock(LOCK)))
    digest = hashlib.sha256(data).hexdigest()
    earlier = await session.scalar(select(BankFileRow).where(or_(
        BankFileRow.sha256 == digest,
        (BankFileRow.kind == parsed.kind) & (BankFileRow.message_id == parsed.message_id),
    )))  # fmt: skip
    if earlier is not None:
        raise Conflict("file", f"{parsed.kind} message {parsed.message_id!r} was imported on "
                       f"{earlier.imported_at:%Y-%m-%d %H:%M} UTC (bank file {earlier.id}): "
                       "nothing changed")  # fmt: skip
    if not parsed.entries:
        raise ServiceError("file", "the file reports no rejected, settled or returned debit")
    rows = (await session.execute(
        select(Invoice, CollectionItem, Mandate)
        .join(CollectionItem, CollectionItem.invoice_id == Invoice.id)
        .join(Mandate, Mandate.id == CollectionItem.mandate_id)
        .where(Invoice.reference.in_({e.end_to_end_id for e in parsed.entries}))
    )).all()  # fmt: skip
    collected = {invoice.reference: (invoice, item, mandate) for invoice, item, mandate in rows}
    known = await _outcomes(session, [invoice.id for invoice, _, _ in rows])
    plan: list[tuple[BankEntry, Invoice]] = []
    for entry in parsed.entries:
        invoice = _check(entry, collected, known)
        known.setdefault(invoice.id, set()).add(entry.outcome)
        plan.append((entry, invoice))

    file = BankFileRow(kind=parsed.kind, message_id=parsed.message_id, sha256=digest,
                       entries=len(plan), xml=data.decode("utf-8", "replace"))  # fmt: skip
    session.add(file)
    await session.flush()
    written = []
    for entry, invoice in plan:
        payment = await _money(
            session, entry, invoice, f"{parsed.message_id}/{entry.end_to_end_id}"
        )
        row = BankEntryRow(
            file_id=file.id, invoice_id=invoice.id, outcome=entry.outcome,
            end_to_end_id=entry.end_to_end_id, mandate_reference=entry.mandate_reference,
            amount_cents=entry.amount_cents, booked_on=entry.booked_on, reason=entry.reason,
            payment_id=payment.id if payment else None,
        )  # fmt: skip
        session.add(row)
        written.append(row)
    await session.flush()
    # Art. 19: money that settles what a non-payment suspension was for lifts it at once.
    for customer_id in {invoice.customer_id for _, invoice in plan}:
        await lift_if_settled(session, customer_id, now or datetime.now(UTC))
    return Imported(file, written)


async def _outcomes(session: AsyncSession, invoice_ids: list[uuid.UUID]) -> dict:
    known: dict[uuid.UUID, set[str]] = {}
    query = select(BankEntryRow.invoice_id, BankEntryRow.outcome).where(
        BankEntryRow.invoice_id.in_(invoice_ids)
    )
    for invoice_id, outcome in (await session.execute(query)).all():
        known.setdefault(invoice_id, set()).add(outcome)
    return known


def _check(entry: BankEntry, collected: dict, known: dict) -> Invoice:
    at = f"{entry.where} ({entry.end_to_end_id})"
    if entry.end_to_end_id not in collected:
        raise UnknownReference("file", f"{at}: no direct debit of ours has this end-to-end id")
    invoice, item, mandate = collected[entry.end_to_end_id]
    if entry.mandate_reference is not None and entry.mandate_reference != mandate.reference:
        raise UnknownReference("file", f"{at}: mandate {entry.mandate_reference!r}, the debit "
                               f"was collected under {mandate.reference!r}")  # fmt: skip
    if entry.amount_cents != item.amount_cents:
        raise ServiceError("file", f"{at}: amount {_euros(entry.amount_cents)}, the debit "
                           f"was {_euros(item.amount_cents)}")  # fmt: skip
    done = known.get(invoice.id, set())
    if entry.outcome in done:
        raise Conflict("file", f"{at}: already {entry.outcome} by an earlier bank file")
    if entry.outcome == RETURNED and SETTLED not in done:
        raise Conflict("file", f"{at}: a return of a debit never settled")
    if entry.outcome == SETTLED and REJECTED in done:
        raise Conflict("file", f"{at}: settled, but the debit was rejected")
    if entry.outcome == REJECTED and SETTLED in done:
        raise Conflict("file", f"{at}: rejected, but the debit was settled (a return is a "
                       "camt.054 debit)")  # fmt: skip
    return invoice


async def _money(session: AsyncSession, entry: BankEntry, invoice: Invoice, ref: str):
    kind = "payment" if entry.outcome == SETTLED else "reject"
    if entry.outcome == REJECTED:
        booked = (await session.execute(
            select(Payment.kind, func.sum(Payment.amount_cents))
            .where(Payment.invoice_id == invoice.id).group_by(Payment.kind)
        )).all()  # fmt: skip
        sums = dict(booked)
        if int(sums.get("payment", 0)) - int(sums.get("reject", 0)) < entry.amount_cents:
            return None  # never booked as paid: nothing to undo
    payment = Payment(invoice_id=invoice.id, customer_id=invoice.customer_id, kind=kind,
                      method="sepa", amount_cents=entry.amount_cents,
                      received_on=entry.booked_on, bank_reference=ref[:100])  # fmt: skip
    session.add(payment)
    await session.flush()
    return payment
