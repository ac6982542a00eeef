"""Issue 18: the contract's pure rules (art. 10, 12, 19, 20), each day given explicitly."""

from __future__ import annotations

from datetime import date

from centrex.contracts import rules

START = date(2026, 1, 15)


def test_months_clamp_to_the_end_of_the_month():
    assert rules.add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert rules.add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)
    assert rules.add_months(date(2026, 3, 31), -1) == date(2026, 2, 28)


def test_36_months_then_tacit_renewal_by_12():
    first = rules.period_on(START, date(2028, 12, 31))
    assert (first.index, first.start, first.end) == (0, START, date(2029, 1, 15))
    renewed = rules.period_on(START, date(2029, 1, 15))  # the term itself: renewed
    assert (renewed.index, renewed.start, renewed.end) == (1, date(2029, 1, 15), date(2030, 1, 15))
    assert rules.period_on(START, date(2031, 6, 1)).end == date(2032, 1, 15)
    # An order's own initial term.
    assert rules.period_on(START, START, initial_months=12).end == date(2027, 1, 15)


def test_notice_three_months_and_a_day_before_the_term_is_accepted():
    decision = rules.notice(START, date(2028, 10, 14))
    assert decision == rules.NoticeDecision(True, date(2029, 1, 15), date(2028, 10, 15))
    assert rules.notice(START, date(2028, 10, 15)).accepted  # exactly 3 months: in time


def test_notice_two_months_before_is_refused_with_the_day_it_needed():
    decision = rules.notice(START, date(2028, 11, 15))
    assert not decision.accepted
    assert (decision.term, decision.needed_by) == (date(2029, 1, 15), date(2028, 10, 15))
    # After a tacit renewal, the next term counts.
    renewed = rules.notice(START, date(2029, 10, 14))
    assert renewed == rules.NoticeDecision(True, date(2030, 1, 15), date(2029, 10, 15))


def test_early_termination_in_month_20_costs_the_remaining_monthly_fees():
    # Month 20 runs 15 August - 14 September 2027; it was billed in advance: months 21..36 left.
    fee = rules.early_termination(START, date(2027, 9, 1), 4999)
    assert (fee.remaining_months, fee.fee_cents) == (16, 16 * 4999)
    # On the first day of month 20, that month is not begun yet: 17 left.
    assert rules.early_termination(START, date(2027, 8, 15), 4999).remaining_months == 17
    # In a renewal period, the months left of its 12.
    renewal = rules.early_termination(START, date(2029, 7, 15), 1000)
    assert (renewal.period.index, renewal.remaining_months) == (1, 6)
    # On the term itself: a new period has begun, all of it is left (leave by notice instead).
    assert rules.early_termination(START, date(2029, 1, 15), 1000).remaining_months == 12


def test_equipment_refund_20_percent_a_year_of_use():
    assert rules.equipment_refund_cents(15000, date(2026, 1, 15), date(2028, 7, 15)) == 7500
    assert rules.equipment_refund_cents(15000, date(2026, 1, 15), date(2028, 7, 14)) == 7750
    assert rules.equipment_refund_cents(15000, date(2026, 1, 15), date(2031, 2, 1)) == 0
    assert rules.equipment_refund_cents(999, date(2026, 1, 15), date(2026, 2, 15)) == 982


def test_nonpayment_reminder_then_15_days_then_7():
    steps = rules.nonpayment_steps(date(2026, 6, 11))
    assert steps == rules.NonPaymentSteps(date(2026, 6, 12), date(2026, 6, 27), date(2026, 7, 4))
