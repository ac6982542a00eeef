"""The catalogue's rules: which plan version is in force on a day, and which tariff line prices
a called number (the longest E.164 prefix)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TypeVar

#: A prefix is E.164 digits without the "+": "33", "336", "3389" (a French premium range), "1".
PREFIX = re.compile(r"[1-9][0-9]{0,14}")
#: Increments the contract's brochures use; any positive pair is accepted.
MAX_INCREMENT_S = 3600


@dataclass(frozen=True)
class TariffLine:
    """The out-of-bundle price of calls to a prefix, HT."""

    prefix: str
    per_minute: Decimal  # euros HT per minute
    connection_fee: Decimal  # euros HT, charged once per call priced from its first second
    min_s: int  # minimum billed duration of a call priced from its first second
    first_increment_s: int  # 60/60: 60 then 60; 30/1: 30 then 1; 1/1
    increment_s: int
    in_bundle: bool  # whether the plan's bundle covers this destination
    vat_rate: Decimal  # percent


def tariff_line_error(line: TariffLine) -> tuple[str, str] | None:
    """(field, why) when a tariff line cannot be one, else None."""
    if not PREFIX.fullmatch(line.prefix):
        return "prefix", "E.164 digits without '+', 1 to 15, not starting with 0"
    if line.per_minute < 0 or line.connection_fee < 0:
        return "per_minute", "prices are not negative"
    if not (0 <= line.min_s <= MAX_INCREMENT_S):
        return "min_s", f"0 to {MAX_INCREMENT_S} seconds"
    for name in ("first_increment_s", "increment_s"):
        if not (1 <= getattr(line, name) <= MAX_INCREMENT_S):
            return name, f"1 to {MAX_INCREMENT_S} seconds"
    if not (0 <= line.vat_rate <= 100):
        return "vat_rate", "a percentage from 0 to 100"
    return None


def longest_prefix(lines: Iterable[TariffLine], e164: str) -> TariffLine | None:
    """The line whose prefix is the longest one starting ``e164`` ("+33612..."), or None."""
    digits = e164.removeprefix("+")
    best: TariffLine | None = None
    for line in lines:
        if digits.startswith(line.prefix) and (best is None or len(line.prefix) > len(best.prefix)):
            best = line
    return best


class PrefixIndex:
    """Longest-prefix lookup for many calls: a dict per prefix, tried from the longest."""

    def __init__(self, lines: Iterable[TariffLine]) -> None:
        self._by_prefix = {line.prefix: line for line in lines}
        self._lengths = sorted({len(p) for p in self._by_prefix}, reverse=True)

    def find(self, e164: str) -> TariffLine | None:
        digits = e164.removeprefix("+")
        for length in self._lengths:
            if (line := self._by_prefix.get(digits[:length])) is not None and len(digits) >= length:
                return line
        return None


V = TypeVar("V")


def in_force(versions: Sequence[tuple[date, V]], day: date) -> V | None:
    """The version effective on ``day``: the latest whose effective date is not after it."""
    best: tuple[date, V] | None = None
    for effective, version in versions:
        if effective <= day and (best is None or effective >= best[0]):
            best = (effective, version)
    return best[1] if best else None
