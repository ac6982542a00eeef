"""Token buckets, one per key: how many requests a caller may make, and when it may again.

Pure: the clock is injected (``time.monotonic`` by default), nothing else is touched. The API's
middleware (centrex.api.limits) keys the buckets by token or address.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` requests per second on average, ``burst`` at once, per key.

    Each key's bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request
    takes one. A bucket left alone until it is full again is the same as no bucket at all, so
    such buckets are dropped: the memory held is that of the keys seen in the last two refill
    periods, however many keys a caller makes up.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._refill_s = burst / rate
        self._next_sweep = clock() + self._refill_s

    def acquire(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if the request may go, else the seconds until it may."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            elapsed = max(0.0, now - bucket.updated)  # a clock never goes back; be sure of it
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        """Keys with a bucket held in memory."""
        return len(self._buckets)

    def _sweep(self, now: float) -> None:
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        self._next_sweep = now + self._refill_s
