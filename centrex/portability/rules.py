"""Pure rules of portability: the RIO, eligibility reasons, porting dates, the lifecycle.

The RIO (relevé d'identité opérateur) is 12 characters, ``OO Q RRRRRR CCC``:

- ``OO``: the operator's code (2 characters, digits or capital letters);
- ``Q``: the line type; ``E`` (business) and ``P`` (consumer) are mobile lines, a fixed
  line has another letter (``F`` to ``Z``);
- ``RRRRRR``: the operator's reference of the contract (6 characters, digits, capitals, ``+``);
- ``CCC``: the control key, computed as the inter-operator specification ("Algorithme
  inter-opérateurs de calcul du RIO") defines it, over ``OO Q RRRRRR`` followed by the 10-digit
  national number: each character is its rank in ``A..Z 0..9 +`` (A=0, Z=25, 0=26, 9=35, +=36)
  and three running sums modulo 37 give the three characters of the key::

      r1 = (r1 + x) % 37;  r2 = (2*r2 + x) % 37;  r3 = (4*r3 + x) % 37

  The specification's own example: ``01 P EROY4P`` and 0612345678 give the key ``4TR``.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

RIO_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+"
MOBILE_LINE_TYPES = frozenset("EP")
FIXED_LINE_TYPES = frozenset("FGHIJKLMNOQRSTUVWXYZ")
RIO_VALID_AFTER_RELEASE = timedelta(days=40)

_RIO = re.compile(r"[0-9A-Z]{2}[A-Z][0-9A-Z+]{6}[0-9A-Z+]{3}")
_NATIONAL = re.compile(r"0[0-9]{9}")


def rio_key(operator: str, line_type: str, reference: str, national: str) -> str:
    """The 3-character control key over the RIO's first 9 characters and the number."""
    if not _NATIONAL.fullmatch(national):
        raise ValueError(f"{national!r} is not a 10-digit national number")
    r1 = r2 = r3 = 0
    for char in operator + line_type + reference + national:
        x = RIO_ALPHABET.index(char)
        r1 = (r1 + x) % 37
        r2 = (2 * r2 + x) % 37
        r3 = (4 * r3 + x) % 37
    return RIO_ALPHABET[r1] + RIO_ALPHABET[r2] + RIO_ALPHABET[r3]


def make_rio(operator: str, line_type: str, reference: str, national: str) -> str:
    return operator + line_type + reference + rio_key(operator, line_type, reference, national)


def normalise_rio(text: str) -> str:
    """As people write it: spaces, dashes and lower case are tolerated."""
    return re.sub(r"[\s\-.]", "", text).upper()


def rio_error(text: str | None, national: str, *, expect_fixed: bool = True) -> str | None:
    """Why ``text`` is not a valid RIO of ``national`` (a sentence), or None when it is."""
    if not text:
        return "no RIO given"
    rio = normalise_rio(text)
    if len(rio) != 12 or not _RIO.fullmatch(rio):
        return (
            "a RIO is 12 characters: operator code (2 digits or capitals), line type (a "
            "capital), contract reference (6) and key (3)"
        )
    line_type = rio[2]
    if expect_fixed and line_type in MOBILE_LINE_TYPES:
        return f"line type {line_type!r} is a mobile line's, this is a fixed number"
    if expect_fixed and line_type not in FIXED_LINE_TYPES:
        return f"line type {line_type!r} is not a fixed line's (F to Z)"
    if rio_key(rio[:2], line_type, rio[3:9], national) != rio[9:]:
        return "the control key does not match this RIO and number"
    return None


def own_reference(e164: str, assigned_at: datetime) -> str:
    """The contract reference of one assignment of one of our numbers: derived, so nothing is
    stored, and a new assignment of the same number gets another RIO."""
    digest = hashlib.sha256(f"{e164}|{assigned_at.isoformat()}".encode()).digest()
    return "".join(RIO_ALPHABET[b % 36] for b in digest[:6])  # letters and digits only


def own_rio_valid(assigned: bool, released_at: datetime | None, now: datetime) -> bool:
    """A number's RIO is valid while assigned and for 40 days after its release."""
    if assigned:
        return True
    return released_at is not None and now < released_at + RIO_VALID_AFTER_RELEASE


# --- eligibility ------------------------------------------------------------------------------
class Ineligible(enum.StrEnum):
    """Why a port-in cannot go ahead (contract art. 9.2), as the request records it."""

    no_rio = "no_rio"
    wrong_rio = "wrong_rio"
    mobile_number = "mobile_number"  # this is a fixed service
    already_on_platform = "already_on_platform"
    in_progress = "in_progress"  # another request for the number, here or at the donor
    inactive = "inactive"  # at the donor, at porting time
    not_holder = "not_holder"  # the requester is not the line's holder


# --- lifecycle --------------------------------------------------------------------------------
class PortStatus(enum.StrEnum):
    requested = "requested"  # sent (or about to be) to the donor, waiting for its answer
    accepted = "accepted"  # the donor gave a date and slot
    ported = "ported"  # the slot came: the donor let the number go
    active = "active"  # it routes here
    ineligible = "ineligible"
    refused = "refused"  # by the donor, for a reason outside art. 9.2's list
    cancelled = "cancelled"


IN_PROGRESS = frozenset({PortStatus.requested, PortStatus.accepted, PortStatus.ported})
TRANSITIONS: dict[PortStatus, frozenset[PortStatus]] = {
    PortStatus.requested: frozenset(
        {PortStatus.accepted, PortStatus.ineligible, PortStatus.refused, PortStatus.cancelled}
    ),
    PortStatus.accepted: frozenset({PortStatus.ported, PortStatus.cancelled}),
    PortStatus.ported: frozenset({PortStatus.active}),
}


def may_move(current: PortStatus, to: PortStatus) -> bool:
    return to in TRANSITIONS.get(current, frozenset())


def cancel_error(status: PortStatus, slot_start: datetime | None, now: datetime) -> str | None:
    """The customer may cancel before the slot, not after."""
    if not may_move(status, PortStatus.cancelled):
        return f"a port-in that is {status} cannot be cancelled"
    if slot_start is not None and now >= slot_start:
        return "the porting slot has begun: too late to cancel"
    return None


# --- dates ------------------------------------------------------------------------------------
MIN_WORKING_DAYS = 3  # from the request to the earliest porting day
MAX_CALENDAR_DAYS = 60  # how far ahead a porting date may be asked


def easter(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ll = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ll) // 451
    month = (h + ll - 7 * m + 114) // 31
    day = (h + ll - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def french_public_holidays(year: int) -> frozenset[date]:
    """The 11 public holidays of metropolitan France (Code du travail L3133-1)."""
    sunday = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    moving = [sunday + timedelta(days=1), sunday + timedelta(days=39), sunday + timedelta(days=50)]
    return frozenset([date(year, m, d) for m, d in fixed] + moving)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in french_public_holidays(day.year)


def add_working_days(day: date, count: int) -> date:
    while count > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            count -= 1
    return day


@dataclass(frozen=True)
class PortingDate:
    day: date
    moved: str | None  # why it is not the day asked for, if it is not


def porting_date(requested: date | None, today: date) -> PortingDate:
    """The porting day to ask the donor for: the day asked if it is a working day at least
    MIN_WORKING_DAYS working days ahead; else the next day that is."""
    earliest = add_working_days(today, MIN_WORKING_DAYS)
    if requested is None:
        return PortingDate(earliest, None)
    if requested < earliest:
        return PortingDate(earliest, f"{requested} is earlier than the earliest day {earliest}")
    day = requested
    while not is_working_day(day):
        day += timedelta(days=1)
    return PortingDate(day, None if day == requested else f"{requested} is not a working day")


def requested_date_error(requested: date | None, today: date) -> str | None:
    if requested is not None and requested > today + timedelta(days=MAX_CALENDAR_DAYS):
        return f"a porting date is at most {MAX_CALENDAR_DAYS} days ahead"
    return None
