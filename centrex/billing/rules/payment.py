"""Payment rules (art. 11.2): bank details checked (IBAN and BIC by ``schwifty``), the SEPA
sequence type of a debit, what a customer owes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from schwifty import BIC, IBAN

#: A mandate reference (RUM): up to 35 characters of the SEPA Latin set, no leading slash.
MANDATE_REFERENCE = re.compile(r"[A-Za-z0-9+?/:().,' -]{1,35}")


@dataclass(frozen=True)
class BankAccount:
    iban: str  # compact
    bic: str


def bank_account(iban: str, bic: str) -> BankAccount:
    """The account, normalised; ValueError naming what is wrong."""
    try:
        checked_iban = IBAN(iban)
    except ValueError as exc:
        raise ValueError(f"iban: {exc}") from None
    try:
        checked_bic = BIC(bic)
    except ValueError as exc:
        raise ValueError(f"bic: {exc}") from None
    if checked_bic.country_code != checked_iban.country_code:
        raise ValueError("bic: not of the IBAN's country")
    return BankAccount(checked_iban.compact, checked_bic.compact)


def mandate_reference_error(reference: str) -> str | None:
    if not MANDATE_REFERENCE.fullmatch(reference) or reference.startswith("/"):
        return "1 to 35 characters: letters, digits, + ? / : ( ) . , ' - and space"
    return None


def sequence_type(mandate_used_before: bool) -> str:
    """FRST for a mandate's first collection, RCUR after (pain.008.001.02)."""
    return "RCUR" if mandate_used_before else "FRST"


def balance_cents(invoiced_ttc: int, paid: int, rejected: int) -> int:
    """What the customer owes: invoices TTC, less payments, plus payments the bank rejected."""
    return invoiced_ttc - paid + rejected
