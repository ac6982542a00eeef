import uuid

import pytest

from centrex.core.admission import ASTERISK_BACKSTOP_S, admit_call, call_limits
from centrex.core.routing import LineInfo, Refuse

pytestmark = pytest.mark.unit


def line(max_calls: int = 2, max_duration_s: int | None = None) -> LineInfo:
    return LineInfo(uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex[:10], max_calls, max_duration_s)


def test_room_on_both_lines_admits():
    a, b = line(), line()
    assert admit_call(a, b, {a.id: 1, b.id: 1}) is None
    assert admit_call(a, None, {}) is None


@pytest.mark.parametrize("full", ["caller", "called"])
def test_a_full_line_on_either_side_is_busy(full):
    a, b = line(), line()
    counts = {a.id: 2} if full == "caller" else {b.id: 2}
    refusal = admit_call(a, b, counts)
    assert isinstance(refusal, Refuse) and refusal.reason == "busy"
    assert refusal.why.startswith(full)


def test_per_line_limit_override():
    a = line(max_calls=5)
    assert admit_call(a, None, {a.id: 4}) is None
    assert admit_call(a, None, {a.id: 5}) is not None


def test_duration_is_the_strictest_of_the_lines():
    assert call_limits(7200, line(), line()).max_duration_s == 7200
    assert call_limits(7200, line(max_duration_s=60), line()).max_duration_s == 60
    # An override can also raise a line above the platform default.
    assert call_limits(7200, line(max_duration_s=9000), None).max_duration_s == 9000
    assert call_limits(7200, line(max_duration_s=9000), line()).max_duration_s == 7200


def test_asterisk_backstop_fires_just_after_the_daemon():
    limits = call_limits(3, line())
    assert limits.asterisk_limit_ms == int((3 + ASTERISK_BACKSTOP_S) * 1000)
