"""Pure rules of the customer's contract (contract art. 10, 12, 19, 20): its periods, notice,
early termination fee, equipment refund and the non-payment steps. No I/O, no clock: every
function is given the day it decides for (docs/contracts.md).

Dates are days in Europe/Paris. A period is ``[start, end)``: ``end`` is "the term", the first
day the period no longer covers. Months are calendar months from the start day, clamped to
the month's last day (31 January + 1 month = 28/29 February)."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")
INITIAL_MONTHS = 36  # art. 10: subscriptions, unless the order says otherwise
RENEWAL_MONTHS = 12  # tacit renewal by 12-month periods
NOTICE_MONTHS = 3  # registered letter at least 3 months before the term
REMINDER_AFTER_DUE = timedelta(days=1)  # the day after the due date, it is unpaid
SUSPENSION_AFTER_REMINDER = timedelta(days=15)  # art. 19
TERMINATION_AFTER_SUSPENSION = timedelta(days=7)  # art. 19: "if the cause persists 7 days"
DEPRECIATION_MONTHS = 60  # art. 12: 20 % a year, so nothing is refunded after 5 years
RETURN_DAYS = timedelta(days=10)  # art. 12: equipment back within 10 days of termination


def add_months(day: date, months: int) -> date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def paris_midnight(day: date) -> datetime:
    """The instant a Paris day begins: when a step dated that day falls due."""
    return datetime.combine(day, time(0), tzinfo=PARIS)


def paris_day(at: datetime) -> date:
    return at.astimezone(PARIS).date()


@dataclass(frozen=True)
class Period:
    index: int  # 0: the initial term, 1: the first renewal ...
    start: date
    end: date  # the term: first day not covered


def period_on(
    start: date,
    day: date,
    initial_months: int = INITIAL_MONTHS,
    renewal_months: int = RENEWAL_MONTHS,
) -> Period:
    """The period of a contract started on ``start`` that covers ``day`` (tacitly renewed as
    many times as needed; the first period when ``day`` is before the start)."""
    end = add_months(start, initial_months)
    period = Period(0, start, end)
    while day >= period.end:
        period = Period(
            period.index + 1,
            period.end,
            add_months(start, initial_months + renewal_months * (period.index + 1)),
        )
    return period


@dataclass(frozen=True)
class NoticeDecision:
    accepted: bool
    term: date  # the term the notice is about: the contract ends on it when accepted
    needed_by: date  # the last day a notice for that term could be received


def notice(
    start: date,
    received_on: date,
    initial_months: int = INITIAL_MONTHS,
    renewal_months: int = RENEWAL_MONTHS,
) -> NoticeDecision:
    """A notice of non-renewal received on ``received_on`` (the registered letter's date):
    accepted if at least NOTICE_MONTHS before the current period's term; else refused, with
    the day it would have needed (the contract renews tacitly once more)."""
    period = period_on(start, received_on, initial_months, renewal_months)
    needed_by = add_months(period.end, -NOTICE_MONTHS)
    return NoticeDecision(received_on <= needed_by, period.end, needed_by)


@dataclass(frozen=True)
class EarlyTermination:
    period: Period
    remaining_months: int
    fee_cents: int  # HT, the monthly fees of the remaining months


def early_termination(
    start: date,
    effective_on: date,
    monthly_fee_cents: int,
    initial_months: int = INITIAL_MONTHS,
    renewal_months: int = RENEWAL_MONTHS,
) -> EarlyTermination:
    """Art. 10/20: leaving before the term costs the monthly fees remaining in the current
    period: every contract month of that period that begins on or after the effective day
    (the month under way was billed in advance, so it is not counted again)."""
    period = period_on(start, effective_on, initial_months, renewal_months)
    months = initial_months if period.index == 0 else renewal_months
    remaining = sum(1 for m in range(months) if add_months(period.start, m) >= effective_on)
    return EarlyTermination(period, remaining, remaining * monthly_fee_cents)


def months_between(first: date, last: date) -> int:
    """Whole months from ``first`` to ``last`` (0 if ``last`` is not after it)."""
    months = (last.year - first.year) * 12 + last.month - first.month
    if add_months(first, months) > last:
        months -= 1
    return max(0, months)


def equipment_refund_cents(price_cents: int, provided_on: date, returned_on: date) -> int:
    """Art. 12: a provided device returned is refunded its price less 20 % per year of use,
    counted in whole months (2.5 years: 30 months, 50 % off), rounded half up to the cent."""
    used = min(months_between(provided_on, returned_on), DEPRECIATION_MONTHS)
    refund = Decimal(price_cents) * (DEPRECIATION_MONTHS - used) / DEPRECIATION_MONTHS
    return int(refund.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class NonPaymentSteps:
    reminder_on: date
    suspension_on: date
    termination_possible_on: date


def nonpayment_steps(due_on: date) -> NonPaymentSteps:
    """Art. 19 for an invoice unpaid from the day after ``due_on``: the reminder that day, the
    suspension 15 days after it, termination possible 7 days after the suspension."""
    reminder = due_on + REMINDER_AFTER_DUE
    suspension = reminder + SUSPENSION_AFTER_REMINDER
    return NonPaymentSteps(reminder, suspension, suspension + TERMINATION_AFTER_SUSPENSION)


# --- art. 10: special termination, art. 12: warranty and condition check, art. 21: changes ---

SPECIAL_TERMINATION_AFTER = timedelta(days=30)  # consecutive days of interruption (art. 10)
CONDITION_CHECK_DAYS = timedelta(days=45)  # art. 12: the returned device's condition check
CHANGE_NOTICE_MONTHS = 1  # art. 21: new conditions take effect one month after the notice
WARRANTY_EXCLUSIONS = frozenset({"lightning", "abnormal_use", "unauthorised_repair"})


def longest_interruption(spans: list[tuple[datetime, datetime | None]], now: datetime) -> timedelta:
    """The longest consecutive interruption among ``spans`` (start, end or None while it
    lasts, counted to ``now``): spans that overlap or touch make one (an outage recorded in
    two pieces, or on two lines one after the other, is one interruption of the service)."""
    utc = ZoneInfo("UTC")  # real durations: Paris wall-clock arithmetic skips DST hours
    now = now.astimezone(utc)
    spans = [(s.astimezone(utc), e.astimezone(utc) if e else None) for s, e in spans]
    longest, start, end = timedelta(0), None, None
    for s, e in sorted((s, min(e or now, now)) for s, e in spans if s < now):
        if start is None or s > end:
            start, end = s, e
        else:
            end = max(end, e)
        longest = max(longest, end - start)
    return longest


def condition_check_deadline(returned_on: date) -> date:
    """The last day the operator may check a returned device's condition (art. 12); a check
    not done by then cannot find it damaged: the refund is due as for good condition."""
    return returned_on + CONDITION_CHECK_DAYS


def in_warranty(starts_on: date, initial_months: int, day: date) -> bool:
    """Art. 12: the warranty runs for the initial contract term (not its renewals)."""
    return starts_on <= day < add_months(starts_on, initial_months)


def conditions_effective_on(notified_on: date) -> date:
    return add_months(notified_on, CHANGE_NOTICE_MONTHS)


def tariff_change_term(
    start: date,
    notified_on: date,
    initial_months: int = INITIAL_MONTHS,
    renewal_months: int = RENEWAL_MONTHS,
) -> Period:
    """The renewal a tariff change notified on ``notified_on`` applies at (art. 21: tariffs
    change at renewal): the first term at least one month after the notice for which the
    customer can still refuse the renewal by a notice in time (3 months before the term).
    Returns the period that starts at that term (its ``start`` is the term)."""
    period = period_on(start, notified_on, initial_months, renewal_months)
    # 3 months before the term is also "at least one month after the notice".
    while notified_on > add_months(period.end, -NOTICE_MONTHS):
        period = period_on(start, period.end, initial_months, renewal_months)
    return period_on(start, period.end, initial_months, renewal_months)
