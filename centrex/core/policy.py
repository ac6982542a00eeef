"""Usage policy from the contract (art. 6, 8, 16, 19): who may call where. Pure.

- Destinations: outbound calls reach only destinations on the operator's list, by E.164
  country code; the French special ranges are destinations of their own (free 080x,
  shared-cost 081/082, premium 089). A suspended destination refuses calls (403).
- Restrictions of a line or its customer, strictest first: ``suspended`` and
  ``emergency_only`` (emergency numbers only), ``national_only`` (on-net and destination "33",
  i.e. French geographic, mobile and 09 numbers — not the special ranges).
- **Emergency numbers are never refused** by any of this, nor by the simultaneous-call limit:
  the safe reading of the law (see docs/policy.md).
- Automated dialling: the measures carriers use, over a sliding window (:func:`dialler_signs`).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from datetime import UTC, datetime

import phonenumbers

from centrex.core.routing import Refuse


class PolicyLevel(enum.StrEnum):
    none = "none"
    national_only = "national_only"
    emergency_only = "emergency_only"
    suspended = "suspended"


RANK = {
    PolicyLevel.none: 0,
    PolicyLevel.national_only: 1,
    PolicyLevel.emergency_only: 2,
    PolicyLevel.suspended: 3,
}
NATIONAL = "33"


@functools.lru_cache(maxsize=1024)
def regions_of(country_code: int) -> tuple[str, ...]:
    """The countries (ISO) that share an E.164 country code; empty for no such code."""
    return tuple(r for r in phonenumbers.region_codes_for_country_code(country_code) if r != "001")


def country_code_of(e164: str) -> str | None:
    """``"+442071234567"`` -> ``"44"``. Country codes are prefix-free: the first known prefix
    of one to three digits is the code. None if it is not E.164."""
    if not e164.startswith("+"):
        return None
    for size in (1, 2, 3):
        prefix = e164[1 : 1 + size]
        if not prefix.isdigit():
            return None
        if regions_of(int(prefix)):
            return prefix
    return None


def destination_of(e164: str) -> str | None:
    """The destination a number belongs to: ``"44"``, ``"33"``, or a French special range
    (``"33-free"``, ``"33-shared-cost"``, ``"33-premium"``); None if it is not E.164."""
    code = country_code_of(e164)
    if code == NATIONAL:
        national = "0" + e164[3:]
        if national.startswith("080"):
            return "33-free"
        if national.startswith(("081", "082")):
            return "33-shared-cost"
        if national.startswith("089"):
            return "33-premium"
    return code


@dataclass(frozen=True)
class CallPolicyFacts:
    level: str  # the caller line's policy_level
    emergency: bool
    outbound: bool  # leaves through the trunk
    destination: str | None = None
    destination_listed: bool = False
    destination_suspended: bool = False


def check_call(facts: CallPolicyFacts) -> Refuse | None:
    """None if the call may proceed, else why not (403, category for the metrics)."""
    if facts.emergency:
        return None
    level = PolicyLevel(facts.level)
    if level in (PolicyLevel.suspended, PolicyLevel.emergency_only):
        return Refuse("rejected", f"line {level.value}: emergency calls only", category="policy")
    if not facts.outbound:
        return None
    if level is PolicyLevel.national_only and facts.destination != NATIONAL:
        return Refuse(
            "rejected",
            f"line restricted to national calls; {facts.destination} is not",
            category="policy",
        )
    if facts.destination is None or not facts.destination_listed:
        return Refuse(
            "rejected",
            f"destination {facts.destination} is not on the operator's list",
            category="destination",
        )
    if facts.destination_suspended:
        return Refuse(
            "rejected", f"destination {facts.destination} is suspended", category="destination"
        )
    return None


def period_start(at: datetime) -> datetime:
    """The billing period ``at`` falls in: the calendar month (UTC), the contract's default."""
    at = at.astimezone(UTC)
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def stricter(a: str, b: str) -> str:
    return a if RANK[PolicyLevel(a)] >= RANK[PolicyLevel(b)] else b


# --- automated dialling (art. 8, 16) ----------------------------------------------------------
@dataclass(frozen=True)
class DiallerThresholds:
    """Defaults from what carriers watch: dialler traffic has an ACD under a minute and 90 % of
    its calls under 60 s, office traffic an ACD of minutes and few attempts per minute."""

    window_s: int = 3600
    min_attempts: int = 30  # below this, too few calls to judge
    max_acd_s: float = 60.0  # average answered duration below this ...
    min_short_ratio: float = 0.9  # ... and this share of answered calls under 60 s
    min_attempts_per_minute: float = 2.0  # ... or this rate of attempts
    max_asr: float = 0.35  # with this answer-seizure ratio or less (many unanswered)
    min_sequential_ratio: float = 0.5  # consecutive attempts to consecutive numbers


@dataclass(frozen=True)
class WindowStats:
    attempts: int
    answered: int
    answered_seconds: float
    short_answered: int  # answered calls under 60 s
    span_s: float  # first attempt -> last attempt
    sequential: int  # attempts whose number is the previous attempt's plus or minus one

    @property
    def asr(self) -> float:
        return self.answered / self.attempts if self.attempts else 0.0

    @property
    def acd_s(self) -> float:
        return self.answered_seconds / self.answered if self.answered else 0.0

    @property
    def short_ratio(self) -> float:
        return self.short_answered / self.answered if self.answered else 0.0

    @property
    def attempts_per_minute(self) -> float:
        return self.attempts / max(self.span_s / 60, 1.0)

    @property
    def sequential_ratio(self) -> float:
        return self.sequential / max(self.attempts - 1, 1)


def dialler_signs(stats: WindowStats, t: DiallerThresholds) -> list[str]:
    """The signs of automated dialling this window shows; empty: none. A suspicion needs
    enough attempts and at least two independent signs."""
    if stats.attempts < t.min_attempts:
        return []
    signs = []
    if stats.answered and stats.acd_s < t.max_acd_s and stats.short_ratio >= t.min_short_ratio:
        signs.append(f"short calls: ACD {stats.acd_s:.0f} s, {stats.short_ratio:.0%} under 60 s")
    if stats.attempts_per_minute >= t.min_attempts_per_minute:
        signs.append(f"{stats.attempts_per_minute:.1f} attempts per minute")
    if stats.asr <= t.max_asr:
        signs.append(f"answer-seizure ratio {stats.asr:.0%}")
    if stats.sequential_ratio >= t.min_sequential_ratio:
        signs.append(f"sequential dialling: {stats.sequential_ratio:.0%} of attempts")
    return signs if len(signs) >= 2 else []
