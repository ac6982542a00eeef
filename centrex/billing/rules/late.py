"""Late payment (the contract's section "10.4") and disputes (art. 11.3), pure.

Interest runs from the first day late on the amount TTC due, at the greater of the ECB main
refinancing rate + 10 points and 3 times the French legal interest rate. Both are dated
reference data: the rate of a half-year is the one in force on its first day (1 January,
1 July: Code de commerce L. 441-10; the legal rate is itself published per half-year), so a
late period crossing 30 June / 1 July is split there. Interest is exact/365 per day, summed
exactly and rounded once, half up, to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from centrex.billing.rules.money import euros, round_cents
from centrex.billing.rules.tariff import in_force

ECB_MARGIN_POINTS = Decimal(10)
LEGAL_RATE_FACTOR = Decimal(3)
RECOVERY_INDEMNITY_CENTS = 4000  # 40 €, professional customers (Code de commerce D. 441-5)
DISPUTE_DAYS = 30  # art. 11.3: within 30 days of receipt, else the invoice is accepted
DAYS_IN_YEAR = Decimal(365)

Rates = Sequence[tuple[date, Decimal]]  # (in force from, percent per year)


def half_year_start(day: date) -> date:
    return date(day.year, 1 if day.month <= 6 else 7, 1)


def next_half_year(day: date) -> date:
    start = half_year_start(day)
    return date(start.year, 7, 1) if start.month == 1 else date(start.year + 1, 1, 1)


def late_rate(day: date, ecb_mro: Rates, legal: Rates) -> Decimal:
    """The yearly rate, in percent, for a day late: the ECB rate in force on the first day of
    its half-year, the legal rate published for that half-year (dated its first day: a past
    half-year's rate is not carried over). ValueError if either is missing (fail closed)."""
    start = half_year_start(day)
    mro = in_force(ecb_mro, start)
    legal_rate = next((rate for effective, rate in legal if effective == start), None)
    if mro is None or legal_rate is None:
        raise ValueError(f"no reference rate in force on {start}")
    return max(mro + ECB_MARGIN_POINTS, LEGAL_RATE_FACTOR * legal_rate)


@dataclass(frozen=True)
class InterestSegment:
    first_day: date
    last_day: date
    days: int
    rate: Decimal  # percent a year


def late_interest(
    amount_cents: int, due_on: date, until: date, ecb_mro: Rates, legal: Rates
) -> tuple[int, list[InterestSegment]]:
    """Interest on ``amount_cents`` TTC for each day from the day after ``due_on`` to ``until``
    (included), split at each half-year; (cents half up, the segments)."""
    segments: list[InterestSegment] = []
    day = due_on + timedelta(days=1)
    exact = Decimal(0)
    while amount_cents > 0 and day <= until:
        last = min(until, next_half_year(day) - timedelta(days=1))
        days = (last - day).days + 1
        rate = late_rate(day, ecb_mro, legal)
        exact += Decimal(amount_cents) * rate / 100 * days / DAYS_IN_YEAR
        segments.append(InterestSegment(day, last, days, rate))
        day = last + timedelta(days=1)
    return round_cents(exact), segments


def dispute_admissible(received_on: date, disputed_on: date) -> bool:
    """Art. 11.3: a dispute is received within 30 days of the invoice's receipt."""
    return received_on <= disputed_on <= received_on + timedelta(days=DISPUTE_DAYS)


def interest_base_cents(ttc_cents: int, paid_cents: int, disputed_pending_cents: int) -> int:
    """What bears interest: the TTC not paid, less the part under a pending dispute (suspended,
    art. 11.3). A rejected dispute's part is due again, from the original due date."""
    return max(0, ttc_cents - paid_cents - disputed_pending_cents)


@dataclass(frozen=True)
class LateInvoice:
    """An earlier invoice as the next one sees it."""

    reference: str
    due_on: date
    base_cents: int  # what bears interest now (interest_base_cents)
    interest_until: date | None  # the day up to which interest was already charged
    indemnity_charged: bool


@dataclass(frozen=True)
class LateCharge:
    kind: str  # late_interest | indemnity
    reference: str
    amount_cents: int
    until: date | None
    label: str


def late_charges(
    invoices: Sequence[LateInvoice], issued_on: date, ecb_mro: Rates, legal: Rates
) -> list[LateCharge]:
    """What the invoice issued on ``issued_on`` charges for earlier invoices unpaid past their
    due date: interest from the day after the due date (or after the last day already
    charged) to the day before this issue, and the 40 € indemnity once per late invoice.
    Outside the scope of VAT (damages, not a supply)."""
    out: list[LateCharge] = []
    until = issued_on - timedelta(days=1)
    for inv in invoices:
        if inv.base_cents <= 0 or until <= inv.due_on:
            continue
        since = max(inv.due_on, inv.interest_until or inv.due_on)
        cents, segments = late_interest(inv.base_cents, since, until, ecb_mro, legal)
        if cents > 0:
            detail = "; ".join(f"{s.days} d at {s.rate} %" for s in segments)
            label = (
                f"Late-payment interest on {inv.reference} ({euros(inv.base_cents)} EUR, {detail})"
            )
            out.append(LateCharge("late_interest", inv.reference, cents, until, label))
        if not inv.indemnity_charged:
            label = f"Fixed recovery indemnity, {inv.reference} (40 EUR)"
            out.append(
                LateCharge("indemnity", inv.reference, RECOVERY_INDEMNITY_CENTS, None, label)
            )
    return out
