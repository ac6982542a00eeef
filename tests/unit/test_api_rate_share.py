"""With several API workers (processes), each holds its share of the rate limit: the token
buckets are in process, and together they must not allow more than the setting says."""

from __future__ import annotations

import pytest

from centrex.api.app import create_app
from centrex.api.limits import RateLimit
from centrex.config import Settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("workers", "rate", "burst"), [(1, 50, 100), (2, 25, 50), (4, 12.5, 25)])
def test_each_worker_limits_its_share(workers, rate, burst):
    settings = Settings(
        _env_file=None, api_workers=workers, api_rate_limit_per_s=50, api_rate_limit_burst=100
    )
    app = create_app(settings)
    (limit,) = [m for m in app.user_middleware if m.cls is RateLimit]
    assert (limit.kwargs["rate"], limit.kwargs["burst"]) == (rate, burst)
