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
            if device.id in provision_billed or device.value_cents <= 0 or last_month is None:
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
            days = active_days(month, device.provided_on, last)
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
