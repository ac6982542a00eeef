"""Billing's pure rules (issue 17): tariff lookup, increments, bundle split at the second, the
fraud limits of art. 8, money rounding; and a random month rated twice, by the rules and by an
independent recomputation written here from the definitions (fractions, second by second)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from centrex.billing.rules.money import (
    cents_half_up,
    euros,
    ht_from_ttc_cents,
    to_decimal,
    vat_cents,
)
from centrex.billing.rules.rating import (
    FRAUD_DISTINCT_NUMBERS,
    CallToRate,
    PeriodState,
    billing_day,
    billing_month,
    charged_seconds,
    is_emergency,
    rate_call,
)
from centrex.billing.rules.tariff import (
    PrefixIndex,
    TariffLine,
    in_force,
    longest_prefix,
    tariff_line_error,
)

pytestmark = pytest.mark.unit

LINE = uuid.uuid4()
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def tariff(prefix="33", per_minute="0.0250", fee="0", min_s=0, first=60, inc=60, bundle=True):
    return TariffLine(prefix, Decimal(per_minute), Decimal(fee), min_s, first, inc, bundle,
                      Decimal(20))  # fmt: skip


def call(seconds: int, callee: str = "+33145678901", line=LINE) -> CallToRate:
    return CallToRate(uuid.uuid4(), line, T0, callee, seconds)


def test_the_longest_prefix_prices_a_number():
    lines = [tariff("33"), tariff("336"), tariff("3389", "0.80"), tariff("44")]
    assert longest_prefix(lines, "+33612345678").prefix == "336"
    assert longest_prefix(lines, "+33891234567").prefix == "3389"
    assert longest_prefix(lines, "+33145678901").prefix == "33"
    assert longest_prefix(lines, "+14155550100") is None
    index = PrefixIndex(lines)
    for number in ("+33612345678", "+33891234567", "+33145678901", "+14155550100", "+3"):
        assert index.find(number) == longest_prefix(lines, number)


@pytest.mark.parametrize(
    ("seconds", "min_s", "first", "inc", "expected"),
    [
        (1, 0, 60, 60, 60), (60, 0, 60, 60, 60), (61, 0, 60, 60, 120),  # 60/60
        (10, 0, 30, 1, 30), (31, 0, 30, 1, 31), (95, 0, 30, 1, 95),  # 30/1
        (1, 0, 1, 1, 1), (77, 0, 1, 1, 77),  # 1/1
        (5, 20, 1, 1, 20), (25, 20, 1, 1, 25),  # a minimum billed duration
        (0, 20, 60, 60, 0),  # nothing answered: nothing billed
    ],
)  # fmt: skip
def test_increments_and_minimum(seconds, min_s, first, inc, expected):
    line = tariff(min_s=min_s, first=first, inc=inc)
    assert charged_seconds(seconds, line, from_first_second=True) == expected


def test_connection_fee_and_one_rounding_half_up():
    # 45 s at 0.025 €/min, 30/1, plus a 0.05 € fee: 1.875 + 5 = 6.875 cents -> 7.
    rated = rate_call(call(45), tariff(fee="0.05", first=30, inc=1, bundle=False),
                      PeriodState(bundle_total_s=0))  # fmt: skip
    assert (rated.charged_s, rated.amount_cents, rated.bundle_s) == (45, 7, 0)
    # 18 s at 0.025 €/min, 1/1: 0.75 cents -> 1; 6 s: 0.25 -> 0 (half up, not up).
    assert rate_call(call(18), tariff(inc=1, first=1, bundle=False),
                     PeriodState(0)).amount_cents == 1  # fmt: skip
    assert rate_call(call(6), tariff(inc=1, first=1, bundle=False),
                     PeriodState(0)).amount_cents == 0  # fmt: skip


def test_a_call_crossing_the_end_of_the_bundle_is_split_at_the_second():
    state = PeriodState(bundle_total_s=100)
    line = tariff(per_minute="0.12", fee="0.10", first=60, inc=60)
    first = rate_call(call(40), line, state)
    assert (first.bundle_s, first.out_s, first.amount_cents) == (40, 0, 0)
    crossing = rate_call(call(95), line, state)  # 60 s left in the bundle
    assert (crossing.bundle_s, crossing.out_s) == (60, 35)
    # The 35 s remainder counted in plain 60 s increments from the split, no fee, no minimum.
    assert (crossing.charged_s, crossing.amount_cents) == (60, 12)
    after = rate_call(call(30), line, state)  # wholly out: fee + first increment
    assert (after.bundle_s, after.charged_s, after.amount_cents) == (0, 60, 22)
    assert state.bundle_used_s == 100


def test_destinations_outside_the_bundle_do_not_consume_it():
    state = PeriodState(bundle_total_s=600)
    rated = rate_call(call(120, "+447700900123"), tariff("44", "0.20", bundle=False), state)
    assert (rated.bundle_s, rated.amount_cents, state.bundle_used_s) == (0, 40, 0)


def test_beyond_the_500th_distinct_number_calls_are_charged_whatever_the_plan():
    state = PeriodState(bundle_total_s=10**9)
    line = tariff(per_minute="0.06")
    for n in range(FRAUD_DISTINCT_NUMBERS):
        assert rate_call(call(60, f"+3314500{n:04d}"), line, state).bundle_s == 60
    beyond = rate_call(call(60, "+33199999999"), line, state)
    assert (beyond.bundle_s, beyond.amount_cents, beyond.fraud) == (0, 6, "distinct_numbers")
    # A number among the first 500, called again: still in the bundle.
    again = rate_call(call(60, "+33145000000"), line, state)
    assert (again.bundle_s, again.fraud) == (60, None)
    # Another line has its own count.
    other = rate_call(call(60, "+33199999999", line=uuid.uuid4()), line, state)
    assert other.bundle_s == 60


def test_beyond_120_minutes_a_call_is_charged_whatever_the_plan():
    state = PeriodState(bundle_total_s=10**9)
    rated = rate_call(call(7200 + 61), tariff(per_minute="0.06"), state)
    assert (rated.bundle_s, rated.out_s, rated.charged_s) == (7200, 61, 120)
    assert (rated.amount_cents, rated.fraud) == (12, "long_call")


def test_emergency_calls_are_never_rated():
    assert is_emergency("+33612345678", "emergency")
    assert is_emergency("112", None) and is_emergency("15", "33")
    assert not is_emergency("+33612345678", "33")


def test_the_version_in_force_and_the_paris_billing_month():
    versions = [(date(2026, 1, 1), "v1"), (date(2026, 7, 1), "v2")]
    assert in_force(versions, date(2025, 12, 31)) is None
    assert in_force(versions, date(2026, 6, 30)) == "v1"
    assert in_force(versions, date(2026, 7, 1)) == "v2"
    late = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)  # 00:30 on 1 February in Paris
    assert billing_month(late) == date(2026, 2, 1) and billing_day(late) == date(2026, 2, 1)
    summer = datetime(2026, 6, 30, 21, 59, tzinfo=UTC)  # 23:59 in Paris (UTC+2)
    assert billing_month(summer) == date(2026, 6, 1)


def test_money_is_exact_and_rounded_half_up():
    assert cents_half_up(Decimal("0.005")) == 1 and cents_half_up(Decimal("0.0049")) == 0
    assert ht_from_ttc_cents(2999, Decimal(20)) == 2499  # 24.9916...
    assert vat_cents(2499, Decimal(20)) == 500  # 499.8
    assert vat_cents(1000, Decimal("5.5")) == 55
    assert euros(123456) == "1234.56" and euros(-5) == "-0.05"
    with pytest.raises(TypeError):
        to_decimal(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        to_decimal("NaN")


def test_a_bad_tariff_line_is_named():
    assert tariff_line_error(tariff("033"))[0] == "prefix"
    assert tariff_line_error(tariff(inc=0))[0] == "increment_s"
    assert tariff_line_error(tariff()) is None


# --- an independent recomputation ---------------------------------------------------------------
def reference_month(calls, lines, bundle_s):
    """The month rated again from the definitions alone: second by second for the bundle,
    fractions of a cent for money, a plain list for the distinct numbers."""
    left, seen, out = bundle_s, {}, []
    for c in calls:
        line = max((t for t in lines if c.callee[1:].startswith(t.prefix)),
                   key=lambda t: len(t.prefix))  # fmt: skip
        numbers = seen.setdefault(c.line_id, [])
        if c.callee not in numbers:
            numbers.append(c.callee)
        fraud_number = numbers.index(c.callee) >= 500
        covered = 0
        for second in range(c.billed_s):
            if line.in_bundle and not fraud_number and second < 7200 and left > 0:
                covered, left = covered + 1, left - 1
        rest = c.billed_s - covered
        if rest == 0:
            charged, fee = 0, False
        elif covered:
            charged, fee = -(-rest // line.increment_s) * line.increment_s, False
        else:
            charged, fee = max(rest, line.min_s), True
            if charged <= line.first_increment_s:
                charged = line.first_increment_s
            else:
                extra = charged - line.first_increment_s
                charged = line.first_increment_s + -(-extra // line.increment_s) * line.increment_s
        exact = Fraction(line.per_minute) * 100 * charged / 60
        if fee:
            exact += Fraction(line.connection_fee) * 100
        cents = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)
        out.append((covered, charged, cents))
    return out


def test_a_random_month_matches_the_independent_recomputation():
    rng = random.Random(17)
    lines = [tariff("33", "0.0250", "0.0190", 0, 60, 60, True),
             tariff("336", "0.1200", "0", 30, 30, 1, True),
             tariff("3389", "0.8000", "0.1500", 10, 1, 1, False),
             tariff("44", "0.1990", "0.0500", 0, 30, 30, False),
             tariff("1", "0.0333", "0", 0, 1, 1, True)]  # fmt: skip
    numbers = [f"+33{rng.randint(100000000, 999999999)}" for _ in range(600)]
    numbers += ["+33612345678", "+33891234567", "+447700900123", "+14155550100"]
    two_lines = [uuid.uuid4(), uuid.uuid4()]
    calls = [
        CallToRate(uuid.uuid4(), rng.choice(two_lines), T0 + timedelta(minutes=i),
                   rng.choice(numbers), rng.choice([0, 1, 29, 30, 31, 59, 60, 61, 3599,
                                                    7300, rng.randint(1, 900)]))
        for i in range(3000)
    ]  # fmt: skip
    state = PeriodState(bundle_total_s=50 * 3600)
    index = PrefixIndex(lines)
    ours = [rate_call(c, index.find(c.callee), state) for c in calls]
    theirs = reference_month(calls, lines, 50 * 3600)
    assert [(r.bundle_s, r.charged_s, r.amount_cents) for r in ours] == theirs
    assert any(0 < r.bundle_s < c.billed_s for r, c in zip(ours, calls, strict=True))
    assert any(r.fraud == "distinct_numbers" for r in ours)
