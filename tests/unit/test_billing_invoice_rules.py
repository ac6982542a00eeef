"""Billing's invoice arithmetic (issue 17, art. 11): proration to the day, fees in advance,
totals HT / VAT per rate / TTC, the due date, the surcharge for payment other than SEPA; late
interest over a half-year boundary and the 30-day dispute rule (section 10.4, art. 11.3)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from centrex.billing.rules.invoice import (
    BilledLine,
    BilledNumber,
    FeeTerms,
    InvoiceLine,
    active_days,
    due_date,
    fee_lines,
    fee_months,
    number_fee_lines,
    prorated_cents,
    surcharge_line,
    totals,
)
from centrex.billing.rules.late import (
    RECOVERY_INDEMNITY_CENTS,
    dispute_admissible,
    interest_base_cents,
    late_interest,
    late_rate,
)

pytestmark = pytest.mark.unit

NOV, DEC, JAN = date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)
TERMS = FeeTerms("Pro", 2000, Decimal(20), 5000, Decimal(20))


def line(amount: int, rate: str = "20") -> InvoiceLine:
    return InvoiceLine("usage", "x", Decimal(1), amount, amount, Decimal(rate))


def test_proration_to_the_day():
    assert active_days(NOV, date(2026, 11, 16), None) == 15
    assert active_days(DEC, date(2026, 11, 16), date(2026, 12, 10)) == 10
    assert active_days(DEC, date(2027, 1, 5), None) == 0
    assert prorated_cents(2000, 15, NOV) == 1000
    assert prorated_cents(2000, 29, DEC) == 1871  # 1870.97
    assert prorated_cents(2999, 31, DEC) == 2999  # a whole month is the fee itself
    assert prorated_cents(1000, 14, date(2028, 2, 1)) == 483  # 29 days: 482.76


def test_fees_in_advance_and_the_month_no_invoice_covered():
    assert fee_months(NOV, set()) == [NOV, DEC]
    assert fee_months(NOV, {NOV}) == [DEC]
    lines = [BilledLine("a", date(2026, 11, 21), None), BilledLine("b", date(2026, 1, 1),
                                                                 date(2026, 12, 15))]  # fmt: skip
    out = fee_lines([NOV, DEC], date(2026, 11, 16), None, {NOV: TERMS, DEC: TERMS}, lines, True)
    assert [(x.kind, x.service_month, x.amount_cents) for x in out] == [
        ("access_fee", None, 5000),
        ("line_fee", NOV, 667),  # a: 21-30 Nov, 10/30 days
        ("line_fee", NOV, 1000),  # b: subscription from 16 Nov, 15/30
        ("line_fee", DEC, 2000),  # a: all December
        ("line_fee", DEC, 968),  # b: deleted 15 Dec, 15/31 days
    ]


def test_totals_vat_per_rate_and_ttc():
    result = totals([line(1001), line(2002), line(999, "5.5"), line(0, "0")])
    assert result.ht_cents == 4002
    assert result.vat_by_rate == {Decimal("0"): (0, 0), Decimal("5.5"): (999, 55),
                                  Decimal("20"): (3003, 601)}  # fmt: skip
    assert (result.vat_cents, result.ttc_cents) == (656, 4658)


def test_due_date_and_surcharge():
    assert due_date(date(2026, 12, 25)) == date(2027, 1, 4)  # art. 11.2: 10 days
    assert surcharge_line("sepa") is None
    extra = surcharge_line("cheque")
    assert (extra.amount_cents, extra.vat_rate) == (1000, Decimal(20))  # 10 € HT


# --- late payment and disputes ----------------------------------------------------------------
MRO = [(date(2025, 6, 11), Decimal("2.15")), (date(2026, 6, 10), Decimal("1.90"))]
LEGAL = [(date(2026, 1, 1), Decimal("6.67")), (date(2026, 7, 1), Decimal("3.16"))]


def test_the_late_rate_is_the_greater_of_ecb_plus_10_and_3_times_legal_by_half_year():
    # First half of 2026: max(2.15 + 10, 3 x 6.67 = 20.01) = 20.01.
    assert late_rate(date(2026, 6, 30), MRO, LEGAL) == Decimal("20.01")
    # Second half: the MRO of 1 July (1.90, changed 10 June) + 10 = 11.90 > 3 x 3.16 = 9.48.
    assert late_rate(date(2026, 7, 1), MRO, LEGAL) == Decimal("11.90")
    with pytest.raises(ValueError):
        late_rate(date(2025, 12, 31), MRO, LEGAL)  # no legal rate known then: fail closed


def test_interest_across_a_half_year_boundary():
    cents, segments = late_interest(100_000, date(2026, 6, 20), date(2026, 7, 10), MRO, LEGAL)
    assert [(s.first_day, s.last_day, s.days, s.rate) for s in segments] == [
        (date(2026, 6, 21), date(2026, 6, 30), 10, Decimal("20.01")),
        (date(2026, 7, 1), date(2026, 7, 10), 10, Decimal("11.90")),
    ]
    # 1000 € x (20.01 % x 10 + 11.90 % x 10) / 365 = 8.7425 € -> 874 cents (rounded once).
    expected = Decimal(100_000) * (Decimal("20.01") * 10 + Decimal("11.90") * 10) / 100 / 365
    assert cents == round(expected) == 874
    assert late_interest(100_000, date(2026, 6, 20), date(2026, 6, 20), MRO, LEGAL)[0] == 0


def test_disputes_within_30_days_and_what_bears_interest():
    issued = date(2026, 11, 2)
    assert dispute_admissible(issued, date(2026, 12, 2))  # the 30th day
    assert not dispute_admissible(issued, date(2026, 12, 3))
    assert not dispute_admissible(issued, date(2026, 11, 1))
    assert interest_base_cents(12_000, 2_000, 3_000) == 7_000  # disputed part suspended
    assert interest_base_cents(12_000, 12_000, 0) == 0
    assert RECOVERY_INDEMNITY_CENTS == 4000


def test_number_fees_prorated_to_the_days_held():
    numbers = [BilledNumber("+33142341111", "gold", 1500, date(2026, 11, 21), None),
               BilledNumber("+33142342222", "silver", 500, date(2026, 1, 1), date(2026, 12, 11)),
               BilledNumber("+33142343333", None, 0, date(2026, 1, 1), None)]  # fmt: skip
    out = number_fee_lines([NOV, DEC], numbers)
    assert [(x.kind, x.service_month, x.amount_cents) for x in out] == [
        ("number_fee", NOV, 500),  # gold: 21-30 November, 10/30 days
        ("number_fee", NOV, 500),  # silver: all November
        ("number_fee", DEC, 1500),  # gold: all December
        ("number_fee", DEC, 161),  # silver: released on the 11th, 10/31 days: 161.29
    ]
    assert out[0].label.startswith("Gold number +33142341111")
