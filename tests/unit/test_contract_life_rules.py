"""Issue 18: the pure rules of the contract's life: the special termination's 30 consecutive
days (art. 10), the warranty and the condition check's 45 days (art. 12), and when a change of
conditions or of tariff takes effect (art. 21)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from centrex.contracts import rules

START = date(2026, 1, 15)
T0 = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)


def days(n: float) -> timedelta:
    return timedelta(days=n)


def test_interruptions_that_overlap_or_touch_are_one():
    now = T0 + days(100)
    # 20 days, then 10 more starting the moment it ended: 30 consecutive days.
    assert rules.longest_interruption(
        [(T0, T0 + days(20)), (T0 + days(20), T0 + days(30))], now
    ) == days(30)
    # Overlapping pieces (two lines out at once) count once, not twice.
    assert rules.longest_interruption(
        [(T0, T0 + days(20)), (T0 + days(5), T0 + days(25))], now
    ) == days(25)
    # A gap of one second breaks the run.
    gap = [(T0, T0 + days(15)), (T0 + days(15) + timedelta(seconds=1), T0 + days(30))]
    assert rules.longest_interruption(gap, now) == days(15)


def test_an_interruption_still_going_counts_until_now():
    assert rules.longest_interruption([(T0, None)], T0 + days(31)) == days(31)
    assert rules.longest_interruption([(T0, None)], T0 + days(29)) < rules.SPECIAL_TERMINATION_AFTER
    assert rules.longest_interruption([], T0) == timedelta(0)
    # Recorded ahead of the instant asked about: not counted beyond it.
    assert rules.longest_interruption([(T0, T0 + days(40))], T0 + days(10)) == days(10)


def test_the_condition_check_has_45_days():
    assert rules.condition_check_deadline(date(2028, 7, 15)) == date(2028, 8, 29)


def test_the_warranty_covers_the_initial_term_only():
    assert rules.in_warranty(START, 36, date(2029, 1, 14))
    assert not rules.in_warranty(START, 36, date(2029, 1, 15))  # renewed: no more warranty
    assert not rules.in_warranty(START, 36, date(2026, 1, 14))


def test_new_conditions_take_effect_one_month_after_the_notice():
    assert rules.conditions_effective_on(date(2027, 1, 31)) == date(2027, 2, 28)


def test_a_tariff_changes_at_a_renewal_the_customer_can_still_refuse():
    # Notified in the initial term, more than 3 months before it ends: at its end.
    assert rules.tariff_change_term(START, date(2028, 10, 15)).start == date(2029, 1, 15)
    # A day later the notice of non-renewal for that term is no longer possible: the next one.
    later = rules.tariff_change_term(START, date(2028, 10, 16))
    assert (later.index, later.start) == (2, date(2030, 1, 15))
    # During a renewal period.
    assert rules.tariff_change_term(START, date(2029, 2, 1)).start == date(2030, 1, 15)


def test_days_of_interruption_are_real_days_across_a_dst_change():
    paris = datetime(2027, 3, 1, 8, 0, tzinfo=rules.PARIS)  # DST begins on 28 March 2027
    # 30 days on the Paris wall clock are 29 days and 23 hours of interruption.
    lasted = rules.longest_interruption([(paris, None)], paris + days(30))
    assert lasted == days(30) - timedelta(hours=1)
