"""Rating one answered call: what the bundle covers (split at the exact second), what is
charged out of bundle with the tariff line's increments, and the fraud limits of art. 8.

A call's rating depends on what came before it in its billing period (bundle seconds already
used, numbers already called from its line): :class:`PeriodState` carries that, and the caller
feeds calls in a fixed order (docs/billing.md says which).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from centrex.billing.rules.money import HUNDRED, round_cents
from centrex.billing.rules.tariff import TariffLine
from centrex.core.numbering import EMERGENCY_NUMBERS

#: Billing periods are calendar months of the operator's (French) legal time.
BILLING_ZONE = ZoneInfo("Europe/Paris")
#: Art. 8: beyond the 500th distinct number called from a line in a period, and beyond 120
#: minutes of one call, calls are charged whatever the plan.
FRAUD_DISTINCT_NUMBERS = 500
FRAUD_LONG_CALL_S = 120 * 60


def billing_month(at: datetime) -> date:
    """The first day of the billing period (a Paris calendar month) ``at`` falls in."""
    local = at.astimezone(BILLING_ZONE)
    return date(local.year, local.month, 1)


def billing_day(at: datetime) -> date:
    """The Paris calendar day of ``at``: the day a tariff must be in force on."""
    return at.astimezone(BILLING_ZONE).date()


def is_emergency(callee: str, destination: str | None) -> bool:
    """Emergency calls are free and never rated or invoiced (CPCE): the CDR's own mark, or the
    number itself (a second guard, should a record come without the mark)."""
    return destination == "emergency" or callee.removeprefix("+") in EMERGENCY_NUMBERS


@dataclass(frozen=True)
class CallToRate:
    cdr_id: uuid.UUID
    line_id: uuid.UUID
    start: datetime
    callee: str  # E.164
    billed_s: int  # answered seconds (the CDR's, to the nearest second)
    # The rest of an outside leg already connected (a transferred part that keeps the paid leg
    # to an outside transferee): charged like the remainder of a call the bundle began, no
    # minimum and no connection fee a second time.
    continued: bool = False


@dataclass(frozen=True)
class Rated:
    cdr_id: uuid.UUID
    prefix: str
    bundle_s: int  # seconds the bundle covered, from the call's first second
    out_s: int  # seconds out of bundle (billed_s - bundle_s)
    charged_s: int  # out-of-bundle seconds after minimum and increments
    amount_cents: int  # HT, half up to the cent
    vat_rate: Decimal
    fraud: str | None  # "distinct_numbers" | "long_call": art. 8 charged what it did


@dataclass
class PeriodState:
    """What one billing period has used so far, for one bundle (a line's, or a customer's pool)."""

    bundle_total_s: int
    bundle_used_s: int = 0
    # Per line: the distinct numbers called so far, in order of their first call.
    numbers: dict[uuid.UUID, dict[str, int]] = field(default_factory=dict)

    def number_rank(self, line_id: uuid.UUID, number: str) -> int:
        """1 for the first distinct number this line called in the period, 2 for the next..."""
        seen = self.numbers.setdefault(line_id, {})
        return seen.setdefault(number, len(seen) + 1)


def charged_seconds(seconds: int, line: TariffLine, *, from_first_second: bool) -> int:
    """Billed seconds after the minimum and the increments. A call priced from its first
    second gets the minimum and the first increment; the remainder of a call the bundle began
    is counted in plain increments from the split second."""
    if seconds <= 0:
        return 0
    if not from_first_second:
        return math.ceil(seconds / line.increment_s) * line.increment_s
    seconds = max(seconds, line.min_s)
    if seconds <= line.first_increment_s:
        return line.first_increment_s
    rest = seconds - line.first_increment_s
    return line.first_increment_s + math.ceil(rest / line.increment_s) * line.increment_s


def amount_cents(charged_s: int, line: TariffLine, *, connection_fee: bool) -> int:
    """HT cents: the connection fee (if charged) plus the per-minute price pro rata of the
    charged seconds, rounded once, half up."""
    if charged_s == 0 and not connection_fee:
        return 0
    exact = line.per_minute * HUNDRED * Decimal(charged_s) / 60
    if connection_fee:
        exact += line.connection_fee * HUNDRED
    return round_cents(exact)


def rate_call(call: CallToRate, line: TariffLine, state: PeriodState) -> Rated:
    """Rate one call against its tariff line, consuming the period's bundle."""
    duration = max(0, call.billed_s)
    rank = state.number_rank(call.line_id, call.callee)
    fraud: str | None = None
    if rank > FRAUD_DISTINCT_NUMBERS:
        fraud, eligible = "distinct_numbers", 0
    elif not line.in_bundle:
        eligible = 0
    else:
        eligible = min(duration, FRAUD_LONG_CALL_S)
    if duration > FRAUD_LONG_CALL_S and fraud is None:
        fraud = "long_call"
    left = max(0, state.bundle_total_s - state.bundle_used_s)
    bundle_s = min(eligible, left)
    state.bundle_used_s += bundle_s
    out_s = duration - bundle_s
    fresh = bundle_s == 0 and not call.continued
    charged = charged_seconds(out_s, line, from_first_second=fresh)
    return Rated(
        cdr_id=call.cdr_id,
        prefix=line.prefix,
        bundle_s=bundle_s,
        out_s=out_s,
        charged_s=charged,
        amount_cents=amount_cents(charged, line, connection_fee=fresh and out_s > 0),
        vat_rate=line.vat_rate,
        fraud=fraud if out_s > 0 or fraud == "distinct_numbers" else None,
    )
