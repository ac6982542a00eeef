"""What an invoice carries besides plan fees and usage, pure: the contract's charges (early
termination fee, equipment refunds, devices not returned), terminal equipment (a provided
device's one-off provision, a rented device's rent in advance prorated to the day) and the
service-level credits deducted from it (art. 11.2, 18.1)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from centrex.billing.rules.invoice import (
    DEFAULT_VAT,
    InvoiceLine,
    active_days,
    month_end,
    prorated_cents,
)
from centrex.billing.rules.money import euros

#: The VAT of a contract charge (docs/billing.md): the early termination fee is the price of
#: the service the contract fixed (CJEU C-295/17 MEO: taxable), a refund reduces the taxed
#: provision charge, a device not returned is sold at its value: all at the standard rate.
CHARGE_VAT = DEFAULT_VAT


@dataclass(frozen=True)
class Charge:
    """A contract charge not invoiced yet (HT; negative: owed back to the customer)."""

    id: str
    kind: str  # early_termination | equipment_refund | equipment_not_returned
    label: str
    quantity: int
    unit_cents: int
    amount_cents: int


def charge_lines(charges: Sequence[Charge]) -> list[InvoiceLine]:
    """One line per charge, as recorded, at the standard rate; the line names its charge."""
    return [
        InvoiceLine(c.kind, c.label, Decimal(c.quantity), c.unit_cents, c.amount_cents,
                    CHARGE_VAT, source=c.id)
        for c in charges
    ]  # fmt: skip


@dataclass(frozen=True)
class Device:
    """A terminal device of the customer (art. 12), HT."""

    id: str
    label: str  # model and serial
    mode: str  # rented | provided
    value_cents: int  # provided: the one-off provision charge
    monthly_fee_cents: int  # rented
    provided_on: date
    returned_on: date | None  # rent stops the day before
    # A warranty exchange's replacement (art. 12) keeps the device it replaces' provided_on (its
    # depreciation runs from then) but is the same provision: never charged again, and its
    # rent runs from the exchange day, when the replaced one's stopped.
    replaces_returned_on: date | None = None
    replaces: bool = False


def equipment_lines(
    devices: Sequence[Device],
    months: Sequence[date],
    rent_billed: set[tuple[str, date]],
    provision_billed: set[str],
    service_until: date | None,
) -> list[InvoiceLine]:
    """A provided device's provision once (the first invoice after it is provided: the
    activation invoice); a rented device's rent for each of ``months`` not billed yet for it,
    prorated to the days from ``provided_on`` to the day before its return, and not past
    ``service_until`` (the subscription's last day)."""
    out: list[InvoiceLine] = []
    last_month = months[-1] if months else None
    for device in devices:
        if device.mode == "provided":
            if (device.replaces or device.id in provision_billed or device.value_cents <= 0
                    or last_month is None):  # fmt: skip
                continue
            if device.provided_on > month_end(last_month):
                continue
            out.append(InvoiceLine(
                "equipment_provision", f"Provision of {device.label} on {device.provided_on}",
                Decimal(1), device.value_cents, device.value_cents, DEFAULT_VAT,
                source=device.id,
            ))  # fmt: skip
            continue
        ends = [d for d in (service_until,) if d is not None]
        if device.returned_on is not None:
            ends.append(device.returned_on - timedelta(days=1))
        last = min(ends) if ends else None
        for month in months:
            if (device.id, month) in rent_billed or device.monthly_fee_cents <= 0:
                continue
            rent_from = device.replaces_returned_on or device.provided_on
            days = active_days(month, rent_from, last)
            if days == 0:
                continue
            amount = prorated_cents(device.monthly_fee_cents, days, month)
            out.append(InvoiceLine(
                "equipment_rent", f"Rent of {device.label}, {month:%Y-%m} ({days}/"
                f"{month_end(month).day} days)", Decimal(1), amount, amount, DEFAULT_VAT,
                month, source=device.id,
            ))  # fmt: skip
    return out


@dataclass(frozen=True)
class Credit:
    """A service-level credit with what is left of it (HT)."""

    id: str
    left_cents: int
    vat_rate: Decimal
    label: str


def credit_lines(lines: Sequence[InvoiceLine], credits: Sequence[Credit]) -> list[InvoiceLine]:
    """Deduct the credits, oldest first, from the invoice's lines: each takes at most what is
    left of the HT base of its VAT rate, so no rate (hence no total) goes below zero; what a
    credit cannot take now stays for the next invoice. One negative line per credit used."""
    room: dict[Decimal, int] = defaultdict(int)
    for line in lines:
        room[line.vat_rate] += line.amount_cents
    out: list[InvoiceLine] = []
    for credit in credits:
        take = min(credit.left_cents, max(0, room[credit.vat_rate]))
        if take <= 0:
            continue
        room[credit.vat_rate] -= take
        rest = credit.left_cents - take
        label = f"{credit.label} ({euros(take)} EUR"
        label += f", {euros(rest)} EUR carried over)" if rest else ")"
        out.append(InvoiceLine("service_credit", label, Decimal(1), -take, -take,
                               credit.vat_rate, source=credit.id))  # fmt: skip
    return out


@dataclass(frozen=True)
class ItemTerms:
    """A catalogue item's version (HT): a monthly fee or a one-off charge."""

    name: str
    billing: str  # monthly | one_off
    fee_cents: int
    vat_rate: Decimal


@dataclass(frozen=True)
class SubscribedItem:
    """A customer's subscription to a catalogue item, with the version in force on each day
    that matters (its start, each invoiced month's first day)."""

    id: str
    reference: str | None  # what it is for: a number, a message's name
    quantity: int
    starts_on: date
    ends_on: date | None
    terms_on: dict[date, ItemTerms]


def item_lines(
    items: Sequence[SubscribedItem],
    months: Sequence[date],
    monthly_billed: set[tuple[str, date]],
    one_off_billed: set[str],
    service_until: date | None,
) -> list[InvoiceLine]:
    """A one-off item once, at the price in force on its start, on the first invoice that
    covers its start; a monthly item for each of ``months`` not billed yet for it, at the
    price in force on the month's first day (or its start), prorated to its days in the month
    and not past ``service_until``."""
    out: list[InvoiceLine] = []
    for item in items:
        what = f" ({item.reference})" if item.reference else ""
        start_terms = item.terms_on.get(item.starts_on)
        if start_terms is not None and start_terms.billing == "one_off":
            if item.id in one_off_billed or not months or item.starts_on > month_end(months[-1]):
                continue
            amount = start_terms.fee_cents * item.quantity
            out.append(InvoiceLine(
                "item_one_off", f"{start_terms.name}{what}, {item.starts_on}",
                Decimal(item.quantity), start_terms.fee_cents, amount, start_terms.vat_rate,
                source=item.id,
            ))  # fmt: skip
            continue
        ends = [d for d in (item.ends_on, service_until) if d is not None]
        for month in months:
            terms = item.terms_on.get(max(month, item.starts_on))
            if terms is None or terms.billing != "monthly" or (item.id, month) in monthly_billed:
                continue
            days = active_days(month, item.starts_on, min(ends) if ends else None)
            if days == 0:
                continue
            amount = prorated_cents(terms.fee_cents * item.quantity, days, month)
            out.append(InvoiceLine(
                "item_fee", f"{terms.name}{what} x{item.quantity}, {month:%Y-%m} ({days}/"
                f"{month_end(month).day} days)", Decimal(item.quantity), terms.fee_cents,
                amount, terms.vat_rate, month, source=item.id,
            ))  # fmt: skip
    return out
