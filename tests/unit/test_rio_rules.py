"""Issue 16: the RIO key as the inter-operator specification computes it, porting dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from centrex.portability.rules import (
    RIO_ALPHABET,
    PortStatus,
    add_working_days,
    cancel_error,
    easter,
    french_public_holidays,
    is_working_day,
    make_rio,
    may_move,
    own_reference,
    own_rio_valid,
    porting_date,
    rio_error,
    rio_key,
)


def test_the_specification_s_example():
    # "Algorithme inter-opérateurs de calcul du RIO": 01 P EROY4P with 06 12 34 56 78 -> 4TR.
    assert rio_key("01", "P", "EROY4P", "0612345678") == "4TR"
    assert rio_error("01PEROY4P4TR", "0612345678", expect_fixed=False) is None
    assert rio_error("01 P EROY4P 4TR", "0612345678", expect_fixed=False) is None  # as printed


def test_a_key_computed_by_hand():
    # 02 F ABC123 with 0142345678: ranks 28 28 5 0 1 2 27 28 29 26 27 30 28 29 30 31 32 33 34;
    # r1 = their sum mod 37, r2 and r3 the doubling and quadrupling sums.
    ranks = [RIO_ALPHABET.index(c) for c in "02FABC1230142345678"]
    r1 = sum(ranks) % 37
    r2 = r3 = 0
    for x in ranks:
        r2, r3 = (2 * r2 + x) % 37, (4 * r3 + x) % 37
    assert rio_key("02", "F", "ABC123", "0142345678") == (
        RIO_ALPHABET[r1] + RIO_ALPHABET[r2] + RIO_ALPHABET[r3]
    )


@pytest.mark.parametrize("position", [9, 10, 11])
def test_every_mutated_key_character_is_refused(position):
    good = make_rio("02", "F", "ABC123", "0142345678")
    for replacement in RIO_ALPHABET:
        if replacement == good[position]:
            continue
        bad = good[:position] + replacement + good[position + 1 :]
        assert rio_error(bad, "0142345678") == "the control key does not match this RIO and number"


def test_the_key_covers_the_number_and_every_field():
    good = make_rio("02", "F", "ABC123", "0142345678")
    assert rio_error(good, "0142345678") is None
    assert rio_error(good, "0142345679") is not None  # another number
    assert rio_error("03" + good[2:], "0142345678") is not None  # another operator
    assert rio_error(good[:3] + "ABC124" + good[9:], "0142345678") is not None
    # Two adjacent characters swapped: the weighted sums see it.
    swapped = good[:3] + "BAC123" + good[9:]
    assert rio_error(swapped, "0142345678") is not None


@pytest.mark.parametrize(
    ("rio", "why"),
    [
        (None, "no RIO"),
        ("", "no RIO"),
        ("02FABC123", "12 characters"),
        ("02FABC123XYZW", "12 characters"),
        ("02fabc12é4TR", "12 characters"),
        ("0?FABC1234TR", "12 characters"),
        ("021ABC1234TR", "12 characters"),  # the line type is a letter
    ],
)
def test_malformed_rios_are_named(rio, why):
    assert why in rio_error(rio, "0142345678")


def test_a_mobile_line_type_is_refused_for_a_fixed_number():
    rio = make_rio("02", "P", "ABC123", "0142345678")  # key right, type wrong
    assert "mobile" in rio_error(rio, "0142345678")
    assert rio_error(rio, "0142345678", expect_fixed=False) is None


def test_own_reference_is_stable_per_assignment():
    at = datetime(2026, 1, 5, 10, tzinfo=UTC)
    ref = own_reference("+33142345678", at)
    assert len(ref) == 6 and set(ref) <= set(RIO_ALPHABET[:36])
    assert own_reference("+33142345678", at) == ref
    assert own_reference("+33142345678", at + timedelta(seconds=1)) != ref
    assert rio_error(make_rio("CX", "F", ref, "0142345678"), "0142345678") is None


def test_own_rio_valid_40_days_after_release():
    released = datetime(2026, 3, 1, tzinfo=UTC)
    assert own_rio_valid(True, None, released)
    assert own_rio_valid(False, released, released + timedelta(days=39, hours=23))
    assert not own_rio_valid(False, released, released + timedelta(days=40))
    assert not own_rio_valid(False, None, released)


def test_easter_and_holidays():
    assert easter(2026) == date(2026, 4, 5)
    assert easter(2027) == date(2027, 3, 28)
    holidays = french_public_holidays(2026)
    assert len(holidays) == 11
    assert {date(2026, 4, 6), date(2026, 5, 14), date(2026, 5, 25)} <= holidays
    assert not is_working_day(date(2026, 12, 25))  # Friday, Christmas
    assert not is_working_day(date(2026, 12, 26))  # Saturday
    assert is_working_day(date(2026, 12, 28))


def test_porting_dates_are_working_days_three_ahead():
    thursday = date(2026, 12, 24)
    # Fri 25 (holiday), Sat, Sun skipped: Mon 28, Tue 29, Wed 30.
    assert add_working_days(thursday, 3) == date(2026, 12, 30)
    assert porting_date(None, thursday).day == date(2026, 12, 30)
    early = porting_date(date(2026, 12, 28), thursday)
    assert early.day == date(2026, 12, 30) and "earliest" in early.moved
    weekend = porting_date(date(2027, 1, 2), thursday)  # a Saturday
    assert weekend.day == date(2027, 1, 4) and "working day" in weekend.moved
    assert porting_date(date(2027, 1, 5), thursday) == porting_date(date(2027, 1, 5), thursday)
    assert porting_date(date(2027, 1, 5), thursday).moved is None


def test_lifecycle():
    assert may_move(PortStatus.requested, PortStatus.accepted)
    assert may_move(PortStatus.accepted, PortStatus.ported)
    assert may_move(PortStatus.ported, PortStatus.active)
    assert not may_move(PortStatus.active, PortStatus.cancelled)
    assert not may_move(PortStatus.ineligible, PortStatus.accepted)
    now = datetime(2026, 12, 30, 9, tzinfo=UTC)
    assert cancel_error(PortStatus.accepted, now + timedelta(seconds=1), now) is None
    assert "too late" in cancel_error(PortStatus.accepted, now, now)
    assert "cannot be cancelled" in cancel_error(PortStatus.active, None, now)
