"""An invoice's arithmetic (art. 11): monthly fees in advance prorated to the day, totals HT,
VAT per rate, TTC, the due date, the surcharge for payment other than SEPA direct debit."""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from centrex.billing.rules.money import round_cents, vat_cents

#: Art. 11.2: payment within 10 days of issue.
PAYMENT_TERM_DAYS = 10
#: Art. 11.2: transfer or cheque cost 10 € excl. VAT per invoice.
OTHER_MEANS_SURCHARGE_CENTS = 1000
DEFAULT_VAT = Decimal(20)


@dataclass(frozen=True)
class InvoiceLine:
    kind: str  # line_fee | access_fee | usage | surcharge
    label: str
    quantity: Decimal  # what the unit price multiplies (days/month, calls, 1)
    unit_cents: int  # HT
    amount_cents: int  # HT, rounded once
    vat_rate: Decimal
    service_month: date | None = None  # the month a fee pays for
    refers_to: str | None = None  # a late-payment charge: the id of the invoice it is about
    interest_until: date | None = None  # and the last day of interest it charges
    prefix: str | None = None  # a usage line: its tariff prefix
    source: str | None = None  # the charge, device or credit a line carries (rules/items.py)


@dataclass(frozen=True)
class Totals:
    ht_cents: int
    vat_by_rate: dict[Decimal, tuple[int, int]]  # rate -> (base HT, VAT)
    vat_cents: int
    ttc_cents: int


def month_end(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def next_month(month: date) -> date:
    return month_end(month) + timedelta(days=1)


def active_days(month: date, starts_on: date, ends_on: date | None) -> int:
    """Days of ``month`` from ``starts_on`` to ``ends_on`` (both included)."""
    first, last = max(month, starts_on), month_end(month)
    if ends_on is not None:
        last = min(last, ends_on)
    return max(0, (last - first).days + 1)


def prorated_cents(monthly_cents: int, days: int, month: date) -> int:
    """A monthly fee for ``days`` days of ``month``: monthly * days / days in that month, half
    up; a whole month is the fee itself."""
    in_month = calendar.monthrange(month.year, month.month)[1]
    if days >= in_month:
        return monthly_cents
    return round_cents(Decimal(monthly_cents) * days / in_month)


def totals(lines: Iterable[InvoiceLine]) -> Totals:
    """HT = sum of lines; VAT computed once per rate on that rate's HT base (half up);
    TTC = HT + VAT."""
    bases: dict[Decimal, int] = defaultdict(int)
    for line in lines:
        bases[line.vat_rate] += line.amount_cents
    by_rate = {rate: (base, vat_cents(base, rate)) for rate, base in sorted(bases.items())}
    ht = sum(base for base, _ in by_rate.values())
    vat = sum(v for _, v in by_rate.values())
    return Totals(ht, by_rate, vat, ht + vat)


def due_date(issued_on: date) -> date:
    return issued_on + timedelta(days=PAYMENT_TERM_DAYS)


def surcharge_line(payment_method: str) -> InvoiceLine | None:
    if payment_method == "sepa":
        return None
    return InvoiceLine("surcharge", f"Payment by {payment_method} (not SEPA direct debit)",
                       Decimal(1), OTHER_MEANS_SURCHARGE_CENTS, OTHER_MEANS_SURCHARGE_CENTS,
                       DEFAULT_VAT)  # fmt: skip


@dataclass(frozen=True)
class FeeTerms:
    """A plan version's fees, HT."""

    plan_name: str
    line_fee_cents: int
    line_fee_vat: Decimal
    access_fee_cents: int
    access_fee_vat: Decimal


@dataclass(frozen=True)
class BilledLine:
    """A SIP line of the customer and the days it exists (Paris days)."""

    label: str
    live_from: date
    live_until: date | None  # its deletion day, if deleted


def fee_months(period: date, billed: set[date]) -> list[date]:
    """Months whose fees an invoice for usage ``period`` carries: the next one, in advance,
    and ``period`` itself if no earlier invoice did (a subscription that began after it)."""
    months = [] if period in billed else [period]
    return [*months, next_month(period)]


def fee_lines(
    months: list[date],
    starts_on: date,
    ends_on: date | None,
    terms_on: dict[date, FeeTerms],
    lines: list[BilledLine],
    access_fee_due: bool,
) -> list[InvoiceLine]:
    """Each line's subscription for each month, prorated to the days both the subscription
    and the line run in it (the price of the version in force on the month's first day); the
    access fee (FAS) once, when due."""
    out: list[InvoiceLine] = []
    if access_fee_due and (terms := terms_on.get(months[0])):
        out.append(InvoiceLine("access_fee", f"Access fee ({terms.plan_name})", Decimal(1),
                               terms.access_fee_cents, terms.access_fee_cents,
                               terms.access_fee_vat))  # fmt: skip
    for month in months:
        terms = terms_on.get(month)
        if terms is None:
            continue
        for line in lines:
            start = max(starts_on, line.live_from)
            ends = [d for d in (ends_on, line.live_until) if d is not None]
            days = active_days(month, start, min(ends) if ends else None)
            if days == 0:
                continue
            amount = prorated_cents(terms.line_fee_cents, days, month)
            in_month = month_end(month).day
            out.append(InvoiceLine(
                "line_fee", f"{terms.plan_name}, line {line.label}, {month:%Y-%m} "
                f"({days}/{in_month} days)", Decimal(1), amount, amount, terms.line_fee_vat,
                month,
            ))  # fmt: skip
    return out


@dataclass(frozen=True)
class BilledNumber:
    """A number of the customer with a monthly fee (Silver/Gold tier, special number), HT."""

    e164: str
    tier: str | None
    monthly_fee_cents: int
    assigned_on: date
    released_on: date | None  # its release day (not billed), if released


def number_fee_lines(months: list[date], numbers: list[BilledNumber]) -> list[InvoiceLine]:
    """Each number's monthly fee for each month, prorated to the days it was the customer's
    (from its assignment day to the day before its release)."""
    out: list[InvoiceLine] = []
    for month in months:
        for number in numbers:
            last = number.released_on - timedelta(days=1) if number.released_on else None
            days = active_days(month, number.assigned_on, last)
            if days == 0 or number.monthly_fee_cents <= 0:
                continue
            amount = prorated_cents(number.monthly_fee_cents, days, month)
            what = f"{number.tier.title()} number" if number.tier else "Number"
            out.append(InvoiceLine(
                "number_fee", f"{what} {number.e164}, {month:%Y-%m} ({days}/{month_end(month).day}"
                " days)", Decimal(1), amount, amount, DEFAULT_VAT, month,
            ))  # fmt: skip
    return out
