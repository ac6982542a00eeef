"""The French numbering plan, as the contract uses it (art. 2, 9): what kind a number is, and
what a line dialled. Parsing and E.164 come from ``phonenumbers``; this module only names what
matters to the operator.
"""

from __future__ import annotations

import enum
import re
import tomllib
from dataclasses import dataclass
from datetime import date
from importlib import resources

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from centrex.extensions.rules import is_extension

FRANCE = "FR"
COUNTRY_CODE = 33


@dataclass(frozen=True)
class EmergencyNumber:
    number: str  # as dialled: "112", "116117"
    service: str
    listed_by: str  # the Arcep decision that put it on the list


@dataclass(frozen=True)
class EmergencyList:
    """Arcep's list of emergency numbers (the law, not the contract), as of a date."""

    as_of: date
    law: str
    numbers: tuple[EmergencyNumber, ...]


def parse_emergency_list(text: str) -> EmergencyList:
    """The list as ``emergency_numbers.toml`` writes it; ValueError if an entry is unusable."""
    data = tomllib.loads(text)
    numbers = tuple(
        EmergencyNumber(str(e["number"]), str(e["service"]), str(e["listed_by"]))
        for e in data["number"]
    )
    for entry in numbers:
        if not entry.number.isdigit():
            raise ValueError(f"emergency number {entry.number!r} is not digits")
    if len({e.number for e in numbers}) != len(numbers):
        raise ValueError("an emergency number is listed twice")
    return EmergencyList(data["as_of"], data["law"], numbers)


# Reference data shipped with the code, so a new Arcep decision is a data change
# (centrex/core/emergency_numbers.toml); every consumer reads EMERGENCY_NUMBERS.
EMERGENCY_LIST = parse_emergency_list(
    resources.files(__package__).joinpath("emergency_numbers.toml").read_text("utf-8")
)
# Reachable from every line, whatever its restrictions, never refused, routed to the trunk.
EMERGENCY_NUMBERS = frozenset(e.number for e in EMERGENCY_LIST.numbers)

GEOGRAPHIC_ZONES = {
    "1": "Île-de-France",
    "2": "Nord-Ouest",
    "3": "Nord-Est",
    "4": "Sud-Est",
    "5": "Sud-Ouest",
}


class NumberKind(enum.StrEnum):
    geographic = "geographic"  # 01-05, zone by first digit
    non_geographic = "non_geographic"  # 09
    special_free = "special_free"  # 0800-0805
    special_charged = "special_charged"  # 081, 082, 089
    mobile = "mobile"  # 06, 07: not allocatable here


ALLOCATABLE = frozenset(
    {
        NumberKind.geographic,
        NumberKind.non_geographic,
        NumberKind.special_free,
        NumberKind.special_charged,
    }
)


class NumberError(ValueError):
    """A number that is not a valid French number of a kind this platform knows."""


@dataclass(frozen=True)
class FrenchNumber:
    e164: str  # "+33142345678"
    national: str  # "0142345678"
    kind: NumberKind
    zone: str | None  # "1".."5" for geographic numbers

    @property
    def allocatable(self) -> bool:
        return self.kind in ALLOCATABLE


def parse_french_number(text: str) -> FrenchNumber:
    """``01 42 34 56 78``, ``+33 1 42 34 56 78`` or ``0033142345678`` → a :class:`FrenchNumber`.

    Raises :class:`NumberError` with a sentence an operator can act on.
    """
    cleaned = re.sub(r"[\s.\-()]", "", text or "")
    if not cleaned:
        raise NumberError("empty number")
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    try:
        parsed = phonenumbers.parse(cleaned, FRANCE)
    except NumberParseException as exc:
        raise NumberError(f"{text!r} is not a phone number: {exc}") from None
    if parsed.country_code != COUNTRY_CODE:
        raise NumberError(f"{text!r} is not a French number (+{parsed.country_code})")
    if not phonenumbers.is_valid_number(parsed):
        raise NumberError(f"{text!r} is not a valid French number")
    national = "0" + str(parsed.national_number)
    kind = _kind(national, phonenumbers.number_type(parsed))
    if kind is None:
        raise NumberError(f"{text!r} is of a kind this platform does not handle")
    zone = national[1] if kind is NumberKind.geographic else None
    return FrenchNumber(
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
        national,
        kind,
        zone,
    )


def _kind(national: str, number_type: int) -> NumberKind | None:
    prefix = national[:2]
    if prefix in {"01", "02", "03", "04", "05"}:
        return NumberKind.geographic
    if prefix == "09":
        return NumberKind.non_geographic
    if prefix in {"06", "07"} or number_type == PhoneNumberType.MOBILE:
        return NumberKind.mobile
    if prefix == "08":
        if national[:4] in {"0800", "0801", "0802", "0803", "0804", "0805"}:
            return NumberKind.special_free
        if national[:3] in {"081", "082", "089"}:
            return NumberKind.special_charged
    return None


class DialledKind(enum.StrEnum):
    emergency = "emergency"  # a short emergency number: always to the trunk
    number = "number"  # a full number, E.164 known
    line = "line"  # another line's SIP username
    extension = "extension"  # a short extension of the caller's customer (core/extensions.py)
    invalid = "invalid"


@dataclass(frozen=True)
class Dialled:
    kind: DialledKind
    text: str  # what was dialled
    e164: str | None = None  # for numbers
    why: str | None = None  # for invalid input


_USERNAME = re.compile(r"^[a-z][a-z0-9]{1,63}$")


def classify_dialled(dialled: str) -> Dialled:
    """What a line dialled: ``112``; ``201`` (an extension); ``01 42 …`` (national); ``+44 …``
    (E.164); ``0044 …`` (international); or another line's SIP username."""
    text = dialled.strip()
    if text in EMERGENCY_NUMBERS:
        return Dialled(DialledKind.emergency, text)
    if is_extension(text):
        return Dialled(DialledKind.extension, text)
    if _USERNAME.match(text):
        return Dialled(DialledKind.line, text)
    digits = text[1:] if text.startswith("+") else text
    if not digits.isdigit():
        return Dialled(DialledKind.invalid, text, why="not a number nor a line")
    candidate = "+" + text[2:] if text.startswith("00") else text
    try:
        parsed = phonenumbers.parse(candidate, FRANCE)
    except NumberParseException as exc:
        return Dialled(DialledKind.invalid, text, why=str(exc))
    if not phonenumbers.is_possible_number(parsed):
        return Dialled(DialledKind.invalid, text, why="incomplete or too long")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return Dialled(DialledKind.number, text, e164=e164)
