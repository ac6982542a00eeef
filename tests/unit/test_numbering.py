from datetime import date

import pytest

from centrex.core.numbering import (
    EMERGENCY_LIST,
    EMERGENCY_NUMBERS,
    Dialled,
    DialledKind,
    NumberError,
    NumberKind,
    classify_dialled,
    parse_emergency_list,
    parse_french_number,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "e164", "kind", "zone"),
    [
        ("01 42 34 56 78", "+33142345678", NumberKind.geographic, "1"),
        ("+33 5 67 89 01 23", "+33567890123", NumberKind.geographic, "5"),
        ("0033 4 56 78 90 12", "+33456789012", NumberKind.geographic, "4"),
        ("09.12.34.56.78", "+33912345678", NumberKind.non_geographic, None),
        ("0800 12 34 56", "+33800123456", NumberKind.special_free, None),
        ("0805123456", "+33805123456", NumberKind.special_free, None),
        ("0820 12 34 56", "+33820123456", NumberKind.special_charged, None),
        ("0899 12 34 56", "+33899123456", NumberKind.special_charged, None),
        ("06 12 34 56 78", "+33612345678", NumberKind.mobile, None),
    ],
)
def test_french_numbers(text, e164, kind, zone):
    number = parse_french_number(text)
    assert (number.e164, number.kind, number.zone) == (e164, kind, zone)
    assert number.allocatable == (kind is not NumberKind.mobile)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("hello", "not a phone number"),
        ("+44 20 7946 0958", "not a French number"),
        ("01 42", "not a valid French number"),
    ],
)
def test_bad_numbers_say_why(text, why):
    with pytest.raises(NumberError, match=why):
        parse_french_number(text)


@pytest.mark.parametrize(
    ("dialled", "kind", "e164"),
    [
        ("112", DialledKind.emergency, None),
        ("15", DialledKind.emergency, None),
        ("0142345678", DialledKind.number, "+33142345678"),
        ("+33142345678", DialledKind.number, "+33142345678"),
        ("0044207946095", DialledKind.number, "+44207946095"),
        ("+12025550123", DialledKind.number, "+12025550123"),
        ("h7m8g285t8", DialledKind.line, None),
        ("01423", DialledKind.invalid, None),
        ("12*34", DialledKind.invalid, None),
    ],
)
def test_classify_dialled(dialled, kind, e164):
    result = classify_dialled(dialled)
    assert (result.kind, result.e164) == (kind, e164)


# Arcep's list (CPCE L. 33-1, D. 98-8) as of the data file's date, with the 2017 decision
# n° 2017-1251 that added 116111: see centrex/core/emergency_numbers.toml for the sources.
ARCEP_LIST = ["15", "17", "18", "112", "114", "115", "116000", "116111", "116117", "119", "191",
              "196", "197"]  # fmt: skip


@pytest.mark.parametrize("number", ARCEP_LIST)
def test_every_arcep_emergency_number_is_dialled_as_an_emergency(number):
    assert classify_dialled(number) == Dialled(DialledKind.emergency, number)


def test_the_emergency_list_is_dated_and_each_number_says_where_it_comes_from():
    assert sorted(EMERGENCY_NUMBERS) == sorted(ARCEP_LIST)
    assert EMERGENCY_LIST.as_of >= date(2017, 10, 23)  # after the latest decision it holds
    assert "D. 98-8" in EMERGENCY_LIST.law
    for entry in EMERGENCY_LIST.numbers:
        assert entry.service and "decision" in entry.listed_by, entry


@pytest.mark.parametrize(
    ("toml", "why"),
    [
        ('as_of = 2026-01-01\nlaw = "x"\n[[number]]\nnumber = "1 12"\nservice = "s"\n'
         'listed_by = "d"\n', "not digits"),
        ('as_of = 2026-01-01\nlaw = "x"\n' + '[[number]]\nnumber = "15"\nservice = "s"\n'
         'listed_by = "d"\n' * 2, "twice"),
    ],
)  # fmt: skip
def test_an_unusable_emergency_list_is_refused(toml, why):
    with pytest.raises(ValueError, match=why):
        parse_emergency_list(toml)
