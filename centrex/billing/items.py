"""The invoice's other sources, read and marked in the invoicing transaction: contract charges
(each carried once: the charge then points to its line), terminal equipment (provision once,
rent per month) and service-level credits (each use recorded against its line). The
arithmetic is in ``rules/items.py``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.billing.models import (
    CatalogueItem,
    CreditUse,
    Invoice,
    InvoiceLineRow,
    ItemSubscription,
    RerateAdjustment,
    ServiceCredit,
)
from centrex.billing.rules.invoice import InvoiceLine
from centrex.billing.rules.items import (
    Charge,
    Credit,
    Device,
    ItemTerms,
    SubscribedItem,
    charge_lines,
    credit_lines,
    equipment_lines,
    item_lines,
)
from centrex.billing.rules.tariff import in_force
from centrex.contracts.models import ContractCharge, Equipment

EQUIPMENT_KINDS = ("equipment_provision", "equipment_rent")
ITEM_KINDS = ("item_fee", "item_one_off")


def customers_with_charges():
    """Customers with a charge no invoice carried yet: the run invoices them even once their
    subscription has ended (a refund or a device not returned after the final invoice)."""
    return select(ContractCharge.customer_id).where(ContractCharge.invoice_line_id.is_(None))


async def charges_due(session: AsyncSession, customer_id: uuid.UUID) -> list[InvoiceLine]:
    """The customer's charges not invoiced yet, locked until the invoice commits (a concurrent
    run of another month waits, then finds them carried)."""
    rows = await session.scalars(
        select(ContractCharge)
        .where(ContractCharge.customer_id == customer_id, ContractCharge.invoice_line_id.is_(None))
        .order_by(ContractCharge.created_at, ContractCharge.id)
        .with_for_update()
    )
    return charge_lines([Charge(str(c.id), c.kind, c.label, c.quantity, c.unit_cents,
                                c.amount_cents) for c in rows])  # fmt: skip


async def equipment_due(
    session: AsyncSession, customer_id: uuid.UUID, months: Sequence[date], until: date | None
) -> list[InvoiceLine]:
    """Provision and rent of the customer's devices for ``months`` not invoiced yet."""
    billed = (await session.execute(
        select(InvoiceLineRow.equipment_id, InvoiceLineRow.kind, InvoiceLineRow.service_month)
        .join(Invoice, Invoice.id == InvoiceLineRow.invoice_id)
        .where(Invoice.customer_id == customer_id, InvoiceLineRow.kind.in_(EQUIPMENT_KINDS))
    )).all()  # fmt: skip
    rent = {(str(e), m) for e, k, m in billed if k == "equipment_rent"}
    provision = {str(e) for e, k, _ in billed if k == "equipment_provision"}
    rows = list(await session.scalars(
        select(Equipment).where(Equipment.customer_id == customer_id)
        .order_by(Equipment.provided_on, Equipment.serial)
    ))  # fmt: skip
    returned = {d.id: d.returned_on for d in rows}
    devices = [
        Device(str(d.id), f"{d.model} {d.serial}", d.mode, d.value_cents, d.monthly_fee_cents,
               d.provided_on, d.returned_on,
               returned.get(d.replaces_id) if d.replaces_id else None,
               d.replaces_id is not None)
        for d in rows
    ]  # fmt: skip
    return equipment_lines(devices, months, rent, provision, until)


async def catalogue_due(
    session: AsyncSession, customer_id: uuid.UUID, months: Sequence[date], until: date | None
) -> list[InvoiceLine]:
    """The customer's catalogue items (alias and special numbers, options, provisions) for
    ``months`` not invoiced yet."""
    subs = list(await session.scalars(
        select(ItemSubscription).where(ItemSubscription.customer_id == customer_id)
        .order_by(ItemSubscription.starts_on, ItemSubscription.created_at)
    ))  # fmt: skip
    if not subs:
        return []
    billed = (await session.execute(
        select(InvoiceLineRow.item_subscription_id, InvoiceLineRow.kind,
               InvoiceLineRow.service_month)
        .join(Invoice, Invoice.id == InvoiceLineRow.invoice_id)
        .where(Invoice.customer_id == customer_id, InvoiceLineRow.kind.in_(ITEM_KINDS))
    )).all()  # fmt: skip
    monthly = {(str(i), m) for i, k, m in billed if k == "item_fee"}
    once = {str(i) for i, k, _ in billed if k == "item_one_off"}
    versions: dict[str, list] = {}
    for item in await session.scalars(
        select(CatalogueItem).where(CatalogueItem.code.in_({s.item_code for s in subs}))
    ):
        versions.setdefault(item.code, []).append((item.effective_from, item))
    items = []
    for sub in subs:
        terms = {}
        for day in {sub.starts_on, *(max(m, sub.starts_on) for m in months)}:
            if (v := in_force(versions.get(sub.item_code, []), day)) is not None:
                terms[day] = ItemTerms(v.name, v.billing, v.fee_cents, v.vat_rate)
        items.append(SubscribedItem(str(sub.id), sub.reference, sub.quantity, sub.starts_on,
                                    sub.ends_on, terms))  # fmt: skip
    return item_lines(items, months, monthly, once, until)


async def credits_due(
    session: AsyncSession, customer_id: uuid.UUID, lines: Sequence[InvoiceLine]
) -> list[InvoiceLine]:
    """The deductions of the customer's credits with something left, oldest first; the credits
    are locked until the invoice commits, so two runs never spend the same euro."""
    credits = list(await session.scalars(
        select(ServiceCredit).where(ServiceCredit.customer_id == customer_id)
        .order_by(ServiceCredit.granted_on, ServiceCredit.created_at, ServiceCredit.id)
        .with_for_update()
    ))  # fmt: skip
    if not credits:
        return []
    used = dict((await session.execute(
        select(CreditUse.credit_id, func.sum(CreditUse.amount_cents))
        .where(CreditUse.credit_id.in_([c.id for c in credits])).group_by(CreditUse.credit_id)
    )).all())  # fmt: skip
    left = [
        Credit(str(c.id), c.amount_cents - int(used.get(c.id, 0)), c.vat_rate,
               f"Service-level credit of {c.granted_on}: {c.reason}"[:200])
        for c in credits
    ]  # fmt: skip
    return credit_lines(lines, [c for c in left if c.left_cents > 0])


def line_row(position: int, line: InvoiceLine) -> InvoiceLineRow:
    """The stored line; its id is set here so charges and credit uses can point to it."""
    return InvoiceLineRow(
        id=uuid.uuid4(), position=position, kind=line.kind, label=line.label[:300],
        quantity=line.quantity, unit_cents=line.unit_cents, amount_cents=line.amount_cents,
        vat_rate=line.vat_rate, service_month=line.service_month,
        refers_to_invoice_id=uuid.UUID(line.refers_to) if line.refers_to else None,
        interest_until=line.interest_until, prefix=line.prefix,
        equipment_id=uuid.UUID(line.source) if line.kind in EQUIPMENT_KINDS else None,
        item_subscription_id=uuid.UUID(line.source) if line.kind in ITEM_KINDS else None,
    )  # fmt: skip


async def link_sources(
    session: AsyncSession, invoice: Invoice, lines: Sequence[InvoiceLine]
) -> None:
    """In the invoice's transaction: each charge and re-rating adjustment points to the line
    that carried it, each credit deduction is recorded as a use of that credit."""
    for line, row in zip(lines, invoice.lines, strict=True):
        if line.source is None or line.kind in EQUIPMENT_KINDS + ITEM_KINDS:
            continue
        if line.kind == "service_credit":
            use = CreditUse(
                credit_id=uuid.UUID(line.source),
                invoice_id=invoice.id,
                invoice_line_id=row.id,
                amount_cents=-line.amount_cents,
            )
            session.add(use)
            continue
        if line.kind == "rerating":
            adjustment = await session.get(RerateAdjustment, uuid.UUID(line.source))
            if adjustment is None or adjustment.invoice_line_id is not None:
                raise RuntimeError(f"re-rating adjustment {line.source} is already carried")
            adjustment.invoice_id, adjustment.invoice_line_id = invoice.id, row.id
            continue
        charge = await session.get(ContractCharge, uuid.UUID(line.source))
        if charge is None or charge.invoice_line_id is not None:  # locked above: never expected
            raise RuntimeError(f"contract charge {line.source} is already invoiced")
        charge.invoice_id, charge.invoice_line_id = invoice.id, row.id
