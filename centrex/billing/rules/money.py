"""Money: integer cents, Decimal for everything finer, one rounding rule (half up, the
commercial rounding an accountant expects), applied where docs/billing.md says."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def to_decimal(value: str | int | Decimal) -> Decimal:
    """An exact amount from its text or an integer; a float is refused (it is not exact)."""
    if isinstance(value, float | bool):
        raise TypeError("money is never a float")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError("money is a finite number")
    return result


def cents_half_up(euros_exact: Decimal) -> int:
    """Euros (any precision) to whole cents, half up."""
    return int((euros_exact * HUNDRED).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def round_cents(cents_exact: Decimal) -> int:
    """Cents with a fraction to whole cents, half up."""
    return int(cents_exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ht_from_ttc_cents(ttc_cents: int, vat_rate: Decimal) -> int:
    """The HT price of a price the contract states TTC: TTC / (1 + rate), half up to the cent."""
    return round_cents(Decimal(ttc_cents) / (1 + vat_rate / HUNDRED))


def vat_cents(ht_cents: int, vat_rate: Decimal) -> int:
    """The VAT on an HT amount (a sum of lines of one rate), half up to the cent."""
    return round_cents(Decimal(ht_cents) * vat_rate / HUNDRED)


def euros(cents: int) -> str:
    """'1234.56' (negative with a sign): for documents and XML, never for arithmetic."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"
