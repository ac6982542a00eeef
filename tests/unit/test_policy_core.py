"""The usage policy's pure rules: destinations, restrictions, emergency, dialler signs."""

from datetime import UTC, datetime

import pytest

from centrex.core.policy import (
    CallPolicyFacts,
    DiallerThresholds,
    WindowStats,
    check_call,
    destination_of,
    dialler_signs,
    period_start,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("number", "destination"),
    [
        ("+442071234567", "44"), ("+14165550100", "1"), ("+33145678901", "33"),
        ("+33612345678", "33"), ("+33800123456", "33-free"), ("+33812345678", "33-shared-cost"),
        ("+33899123456", "33-premium"), ("+352123456", "352"), ("112", None), ("+", None),
    ],
)  # fmt: skip
def test_destinations(number, destination):
    assert destination_of(number) == destination


def facts(level="none", **kw) -> CallPolicyFacts:
    base = {"emergency": False, "outbound": True, "destination": "44",
            "destination_listed": True, "destination_suspended": False}  # fmt: skip
    return CallPolicyFacts(level=level, **{**base, **kw})


@pytest.mark.parametrize(
    ("case", "category"),
    [
        (facts(), None),
        (facts(destination_listed=False), "destination"),
        (facts(destination_suspended=True), "destination"),
        (facts("national_only"), "policy"),
        (facts("national_only", destination="33"), None),
        (facts("national_only", destination="33-premium"), "policy"),
        (facts("suspended", outbound=False), "policy"),  # on-net too
        (facts("emergency_only"), "policy"),
        (facts("national_only", outbound=False), None),
        # Emergency: never refused, whatever the restriction or the list says.
        (facts("suspended", emergency=True, destination=None, destination_listed=False), None),
    ],
)
def test_check_call(case, category):
    refusal = check_call(case)
    assert (refusal.category if refusal else None) == category
    if refusal:
        assert refusal.reason == "rejected"  # 403


def test_period_is_the_calendar_month_utc():
    start = period_start(datetime(2026, 11, 26, 15, 0, tzinfo=UTC))
    assert start == datetime(2026, 11, 1, tzinfo=UTC)


def test_dialler_signs():
    t = DiallerThresholds()
    dialler = WindowStats(attempts=40, answered=38, answered_seconds=38 * 20, short_answered=38,
                          span_s=600, sequential=39)  # fmt: skip
    assert len(dialler_signs(dialler, t)) >= 2
    office = WindowStats(attempts=40, answered=30, answered_seconds=30 * 240, short_answered=5,
                         span_s=8 * 3600, sequential=0)  # fmt: skip
    assert dialler_signs(office, t) == []
    few = WindowStats(attempts=10, answered=10, answered_seconds=10, short_answered=10,
                      span_s=10, sequential=9)  # fmt: skip
    assert dialler_signs(few, t) == []  # too few attempts to judge
