"""Silver and Gold numbers (contract art. 9): memorable numbers a customer may pick, for a
monthly fee. The operator writes the rules (patterns over the national number); a number takes
the most expensive tier whose rule it matches.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass


class Tier(enum.StrEnum):
    silver = "silver"
    gold = "gold"


@dataclass(frozen=True)
class TierRule:
    tier: Tier
    name: str
    pattern: str  # a regular expression searched in the 10-digit national number
    monthly_fee_cents: int

    def matches(self, national: str) -> bool:
        return re.search(self.pattern, national) is not None


class TierRuleError(ValueError):
    pass


def check_pattern(pattern: str) -> None:
    """Refuse a rule that can't work, before it is stored."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise TierRuleError(f"not a regular expression: {exc}") from None
    if compiled.search("") is not None:
        raise TierRuleError("matches every number (it matches the empty string)")


def classify_tier(national: str, rules: Iterable[TierRule]) -> TierRule | None:
    """The matching rule with the highest fee (gold before silver on a tie), if any."""
    matching = [r for r in rules if r.matches(national)]
    if not matching:
        return None
    return max(matching, key=lambda r: (r.monthly_fee_cents, r.tier == Tier.gold))


# Examples an operator can start from (docs/numbers.md); not applied unless loaded.
EXAMPLE_RULES = (
    TierRule(Tier.gold, "last four digits identical", r"(\d)\1{3}$", 1500),
    TierRule(Tier.gold, "one pair three times", r"(\d\d)\1\1$", 1500),
    TierRule(Tier.silver, "last three digits identical", r"(\d)\1{2}$", 500),
    TierRule(Tier.silver, "ends in a run of four", r"(0123|1234|2345|3456|4567|5678|6789)$", 500),
)
