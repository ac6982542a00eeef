"""Issue 17 (billing): the rest of an outside leg kept through a transfer (docs/billing.md,
"Rating"): charged like the remainder of a call already connected, no minimum and no connection
fee a second time; a new leg is priced from its first second."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from centrex.billing.rules.rating import CallToRate, PeriodState, rate_call
from centrex.billing.rules.tariff import TariffLine

pytestmark = pytest.mark.unit

LINE = TariffLine("44", Decimal("0.30"), Decimal("0.20"), 60, 60, 30, True, Decimal(20))
AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def leg(seconds: int, continued: bool) -> CallToRate:
    return CallToRate(uuid.uuid4(), uuid.uuid4(), AT, "+442079460123", seconds, continued)


def test_a_kept_leg_is_charged_as_a_remainder_a_new_leg_from_its_first_second():
    # 20 s: a new leg pays the 60 s minimum and the fee (30 + 20 cents); the kept leg's rest
    # pays its 30 s increment only (15 cents).
    new = rate_call(leg(20, False), LINE, PeriodState(bundle_total_s=0))
    kept = rate_call(leg(20, True), LINE, PeriodState(bundle_total_s=0))
    assert (new.charged_s, new.amount_cents) == (60, 50)
    assert (kept.charged_s, kept.amount_cents) == (30, 15)
    # Inside a bundle both are covered alike; past it the kept one still pays no fee.
    state = PeriodState(bundle_total_s=50)
    covered = rate_call(leg(80, True), LINE, state)
    assert (covered.bundle_s, covered.out_s, covered.charged_s, covered.amount_cents) == (
        50, 30, 30, 15)  # fmt: skip
