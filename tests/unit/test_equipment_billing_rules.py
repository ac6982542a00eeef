"""Equipment on invoices (art. 12; centrex/billing/rules/items.py): a warranty exchange's
replacement is not a second provision, and its rent takes over on the exchange day."""

from __future__ import annotations

from datetime import date

import pytest

from centrex.billing.rules.items import Device, equipment_lines

pytestmark = pytest.mark.unit

MARCH = date(2026, 3, 1)


def test_a_provided_device_s_replacement_is_not_charged_again() -> None:
    old = Device("old", "T54 1", "provided", 15000, 0, date(2026, 1, 10), date(2026, 3, 15))
    new = Device("new", "T54 2", "provided", 15000, 0, date(2026, 1, 10), None,
                 date(2026, 3, 15), replaces=True)  # fmt: skip
    lines = equipment_lines([old, new], [MARCH], set(), set(), None)
    assert [(x.kind, x.source) for x in lines] == [("equipment_provision", "old")]


def test_a_rented_device_s_rent_passes_to_its_replacement_on_the_exchange_day() -> None:
    old = Device("old", "T54 1", "rented", 0, 3100, date(2026, 1, 10), date(2026, 3, 15))
    new = Device("new", "T54 2", "rented", 0, 3100, date(2026, 1, 10), None,
                 date(2026, 3, 15), replaces=True)  # fmt: skip
    lines = equipment_lines([old, new], [MARCH], set(), set(), None)
    rent = {x.source: x.amount_cents for x in lines}
    # 1-14 March on the old one, 15-31 on the new one: the month once, not twice.
    assert rent == {"old": 1400, "new": 1700}
    assert sum(rent.values()) == 3100
