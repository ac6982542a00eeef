"""SEPA direct debit (art. 11.2: the default means of payment): mandates, one pain.008 file
per collection run (made and checked against its XSD by ``sepaxml``), payments and bank
rejects, the balance."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sepaxml import SepaDD
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.models import (
    Collection,
    CollectionItem,
    Dispute,
    Invoice,
    Mandate,
    Payment,
)
from centrex.billing.rules.payment import (
    balance_cents,
    bank_account,
    mandate_reference_error,
    sequence_type,
)
from centrex.config import Settings
from centrex.db.models import Customer
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference

SCHEMA = "pain.008.001.02"


async def add_mandate(
    session: AsyncSession, customer_id: uuid.UUID, reference: str, debtor_name: str,
    iban: str, bic: str, signed_on: date,
) -> Mandate:  # fmt: skip
    if await session.get(Customer, customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {customer_id}")
    if why := mandate_reference_error(reference):
        raise ServiceError("reference", why)
    try:
        account = bank_account(iban, bic)
    except ValueError as exc:
        field, _, why = str(exc).partition(": ")
        raise ServiceError(field, why) from None
    if await session.scalar(select(Mandate.id).where(Mandate.reference == reference)):
        raise Conflict("reference", f"mandate {reference!r} exists")
    mandate = Mandate(customer_id=customer_id, reference=reference, debtor_name=debtor_name,
                      iban=account.iban, bic=account.bic, signed_on=signed_on)  # fmt: skip
    session.add(mandate)
    await session.flush()
    return mandate


def _creditor(settings: Settings) -> dict:
    if not (settings.billing_creditor_id and settings.billing_creditor_iban
            and settings.billing_creditor_bic):  # fmt: skip
        raise ServiceError(None, "no SEPA creditor configured (CENTREX_BILLING_CREDITOR_ID, "
                           "_IBAN, _BIC)")  # fmt: skip
    account = bank_account(settings.billing_creditor_iban, settings.billing_creditor_bic)
    return {
        "name": settings.billing_seller_name[:70], "IBAN": account.iban, "BIC": account.bic,
        "batch": True, "creditor_id": settings.billing_creditor_id, "currency": "EUR",
    }  # fmt: skip


async def collect(
    session: AsyncSession, collection_date: date, settings: Settings
) -> Collection | None:
    """A pain.008 for every SEPA invoice not collected yet whose customer has a mandate in
    force, for its TTC less what was paid; None when there is nothing to collect. One
    transaction: the items and the file commit together."""
    creditor = _creditor(settings)
    await session.execute(select(func.pg_advisory_xact_lock(0x5345504121)))  # one run at a time
    paid = (select(func.coalesce(func.sum(Payment.amount_cents), 0))
            .where(Payment.invoice_id == Invoice.id, Payment.kind == "payment")
            .scalar_subquery())  # fmt: skip
    # The part of a dispute pending or upheld is not collected (art. 11.3; an upheld one has
    # its credit note).
    disputed = (select(func.coalesce(func.sum(Dispute.amount_ttc_cents), 0))
                .where(Dispute.invoice_id == Invoice.id, Dispute.status != "rejected")
                .scalar_subquery())  # fmt: skip
    rows = (await session.execute(
        select(Invoice, Mandate, paid + disputed)
        .join(Mandate, Mandate.customer_id == Invoice.customer_id)
        .where(Invoice.kind.in_(("invoice", "interim")), Invoice.payment_method == "sepa",
               Mandate.revoked_on.is_(None),
               Mandate.signed_on <= collection_date,
               ~select(CollectionItem.invoice_id)
               .where(CollectionItem.invoice_id == Invoice.id).exists())
        .order_by(Invoice.number, Mandate.signed_on.desc())
    )).all()  # fmt: skip
    used = set(await session.scalars(select(CollectionItem.mandate_id).distinct()))
    debit = SepaDD(dict(creditor), schema=SCHEMA, clean=True)
    items, seen = [], set()
    for invoice, mandate, already in rows:
        amount = invoice.ttc_cents - int(already)
        if invoice.id in seen or amount <= 0:
            continue  # the latest mandate of the customer only; nothing left to collect
        seen.add(invoice.id)
        seq = sequence_type(mandate.id in used)
        debit.add_payment({
            "name": mandate.debtor_name, "IBAN": mandate.iban, "BIC": mandate.bic,
            "amount": amount, "type": seq, "collection_date": collection_date,
            "mandate_id": mandate.reference, "mandate_date": mandate.signed_on,
            "description": f"Invoice {invoice.reference}", "endtoend_id": invoice.reference,
        })  # fmt: skip
        items.append(CollectionItem(invoice_id=invoice.id, mandate_id=mandate.id,
                                    amount_cents=amount, sequence_type=seq))  # fmt: skip
    if not items:
        return None
    xml = debit.export(validate=True)  # raises if the file does not validate against the XSD
    total = sum(i.amount_cents for i in items)
    collection = Collection(collection_date=collection_date, transactions=len(items),
                            total_cents=total, xml=xml.decode())  # fmt: skip
    session.add(collection)
    await session.flush()
    for item in items:
        item.collection_id = collection.id
        session.add(item)
    await session.flush()
    return collection


async def record_payment(
    session: AsyncSession, invoice_id: uuid.UUID, kind: str, method: str, amount_cents: int,
    received_on: date, bank_reference: str | None,
) -> Payment:  # fmt: skip
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None:
        raise UnknownReference("invoice_id", f"no invoice with id {invoice_id}")
    payment = Payment(invoice_id=invoice_id, customer_id=invoice.customer_id, kind=kind,
                      method=method, amount_cents=amount_cents, received_on=received_on,
                      bank_reference=bank_reference)  # fmt: skip
    session.add(payment)
    await session.flush()
    return payment


@dataclass(frozen=True)
class Balance:
    invoiced_ttc_cents: int
    paid_cents: int
    rejected_cents: int
    balance_cents: int


async def balance(session: AsyncSession, customer_id: uuid.UUID) -> Balance:
    if await session.get(Customer, customer_id) is None:
        raise NotFound("customer_id", f"no customer with id {customer_id}", location="path")
    # Credit notes (positive amounts) come off what was invoiced.
    signed = case((Invoice.kind == "credit_note", -Invoice.ttc_cents), else_=Invoice.ttc_cents)
    invoiced = await session.scalar(
        select(func.coalesce(func.sum(signed), 0)).where(Invoice.customer_id == customer_id)
    )
    sums = dict((await session.execute(
        select(Payment.kind, func.sum(Payment.amount_cents))
        .where(Payment.customer_id == customer_id).group_by(Payment.kind)
    )).all())  # fmt: skip
    paid, rejected = int(sums.get("payment", 0)), int(sums.get("reject", 0))
    return Balance(int(invoiced), paid, rejected, balance_cents(int(invoiced), paid, rejected))
