"""The token buckets behind the API's rate limit, on a fake clock."""

from __future__ import annotations

import pytest

from centrex.core.rate_limit import RateLimiter

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_burst_passes_then_the_next_request_waits_for_a_token(clock):
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    assert [limiter.acquire("t") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("t") == pytest.approx(0.5)  # one token every 1/2 s
    clock.now += 0.2
    assert limiter.acquire("t") == pytest.approx(0.3)  # 0.4 of a token back, 0.6 to go
    clock.now += 0.3
    assert limiter.acquire("t") == 0.0
    assert limiter.acquire("t") > 0


def test_refused_requests_take_no_token(clock):
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    assert limiter.acquire("t") == limiter.acquire("t") == 0.0
    for _ in range(50):  # hammering does not push the next allowed request further away
        assert limiter.acquire("t") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.acquire("t") == 0.0


def test_the_rate_holds_over_time(clock):
    limiter = RateLimiter(rate=10, burst=5, clock=clock)
    allowed = 0
    for _ in range(1000):  # 10 s of a request every 10 ms
        allowed += limiter.acquire("t") == 0.0
        clock.now += 0.01
    assert allowed == pytest.approx(5 + 100, abs=1)  # the burst, then 10 a second


def test_an_idle_bucket_refills_only_up_to_the_burst(clock):
    limiter = RateLimiter(rate=1, burst=3, clock=clock)  # buckets swept every 3 s
    clock.now += 0.5
    limiter.acquire("t")
    clock.now += 2.4  # 2 tokens left + 2.4 refilled, capped at 3 (and not swept yet)
    assert [limiter.acquire("t") > 0 for _ in range(4)] == [False, False, False, True]
    clock.now += 3600  # swept meanwhile: a fresh bucket, as full
    assert [limiter.acquire("t") > 0 for _ in range(4)] == [False, False, False, True]


def test_each_key_has_its_own_bucket(clock):
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    assert limiter.acquire("a") == limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


def test_refilled_buckets_are_forgotten(clock):
    """Made-up keys (random tokens) cost memory for a refill period or two, not forever."""
    limiter = RateLimiter(rate=10, burst=10, clock=clock)  # refill period: 1 s
    for i in range(1000):
        limiter.acquire(f"made-up-{i}")
    assert len(limiter) == 1000
    clock.now += 2.5
    limiter.acquire("other")
    assert len(limiter) == 1


def test_a_bucket_not_yet_refilled_survives_the_sweep(clock):
    limiter = RateLimiter(rate=1, burst=2, clock=clock)  # refill period: 2 s
    clock.now += 1.9
    limiter.acquire("t")
    limiter.acquire("t")
    clock.now += 0.2  # the sweep runs now: forgetting "t" would hand it a full bucket
    assert limiter.acquire("t") == pytest.approx(0.8)
    assert len(limiter) == 1


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_nonsense_limits_are_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate=rate, burst=burst)
