"""The API's abuse limits as ASGI middlewares, driven message by message (no server): what they
read of a body, what they answer, who they count a request against."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

import pytest

from centrex.access.principal import bootstrap_principal
from centrex.api.limits import BodySizeLimit, RateLimit, rate_key
from centrex.metrics import API_REGISTRY

pytestmark = pytest.mark.unit

LIMIT = 1000


async def echo_length(scope, receive, send) -> None:
    """The route behind the middlewares: answers 200 with the length of the body it read."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def http_scope(path: str = "/v1/customers", headers: Iterable[tuple[str, str]] = (), **extra):
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return {"type": "http", "method": "POST", "path": path, "headers": raw,
            "client": ("192.0.2.7", 40000), **extra}  # fmt: skip


class Client:
    """What the server would feed the app: body chunks, counted as the app reads them."""

    def __init__(self, chunks: Iterable[bytes], *, endless: bool = False) -> None:
        self.chunks = list(chunks)
        self.endless = endless
        self.read = 0

    async def receive(self):
        # "Endless" ends after 10,000 chunks all the same, so a broken limit fails, not hangs.
        total = 10_000 if self.endless else len(self.chunks)
        if self.read < total:
            chunk = self.chunks[self.read % len(self.chunks)]
            self.read += 1
            return {"type": "http.request", "body": chunk, "more_body": self.read < total}
        return {"type": "http.disconnect"}


async def call(app, scope, client: Client) -> tuple[int, dict[str, str], bytes]:
    sent = []

    async def send(message) -> None:
        sent.append(message)

    await app(scope, client.receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def refused(reason: str) -> float:
    return API_REGISTRY.get_sample_value("centrex_api_requests_refused_total", {"reason": reason})


async def test_a_declared_length_over_the_limit_is_refused_unread():
    before = refused("body_too_large")
    client = Client([b"x" * 100] * 20)
    status, headers, body = await call(
        BodySizeLimit(echo_length, LIMIT), http_scope(headers=[("Content-Length", "2000")]), client
    )
    assert status == 413
    assert json.loads(body) == {"detail": "request body larger than 1000 bytes"}
    assert headers["connection"] == "close"  # the server reads no more of it either
    assert client.read == 0
    assert refused("body_too_large") == before + 1


async def test_a_chunked_body_is_refused_once_it_passes_the_limit():
    client = Client([b"x" * 100], endless=True)  # it would never end
    scope = http_scope(headers=[("Transfer-Encoding", "chunked")])
    status, _, body = await call(BodySizeLimit(echo_length, LIMIT), scope, client)
    assert status == 413
    assert json.loads(body)["detail"] == "request body larger than 1000 bytes"
    assert client.read == LIMIT // 100 + 1  # read up to the first byte past the limit, no more


async def test_a_body_lying_about_its_length_is_counted_anyway():
    client = Client([b"x" * 600] * 2)
    scope = http_scope(headers=[("Content-Length", "10")])
    assert (await call(BodySizeLimit(echo_length, LIMIT), scope, client))[0] == 413


@pytest.mark.parametrize("declared", [None, "1000"])
async def test_a_body_within_the_limit_reaches_the_route_whole(declared):
    headers = [("Content-Length", declared)] if declared else []
    client = Client([b"x" * 250] * 4)
    status, _, body = await call(BodySizeLimit(echo_length, LIMIT), http_scope(headers=headers),
                                 client)  # fmt: skip
    assert (status, body) == (200, b"1000")


@pytest.mark.parametrize(
    "values", [["abc"], ["-1"], ["1e3"], ["12 "], [" "], ["\u00b2"], ["10", "10"], ["10", "20"]]
)
async def test_a_malformed_content_length_is_a_400(values):
    before = refused("bad_content_length")
    scope = http_scope(headers=[("Content-Length", v) for v in values])
    client = Client([b"x" * 10])
    status, _, body = await call(BodySizeLimit(echo_length, LIMIT), scope, client)
    assert status == 400
    assert json.loads(body) == {"detail": "malformed Content-Length header"}
    assert client.read == 0
    assert refused("bad_content_length") == before + 1


async def test_past_the_burst_429_with_retry_after():
    before = refused("rate_limited")
    app = RateLimit(echo_length, rate=0.25, burst=2)
    scope = http_scope(headers=[("Authorization", "Bearer a")])
    assert [(await call(app, scope, Client([b""])))[0] for _ in range(2)] == [200, 200]
    status, headers, body = await call(app, scope, Client([b""]))
    assert status == 429
    assert headers["retry-after"] == "4"  # whole seconds: one token every 4 s
    assert json.loads(body) == {"detail": "rate limit exceeded: retry in 4 s"}
    assert refused("rate_limited") == before + 1


async def test_retry_after_is_at_least_one_second():
    app = RateLimit(echo_length, rate=1000, burst=1)
    await call(app, http_scope(), Client([b""]))
    status, headers, _ = await call(app, http_scope(), Client([b""]))
    assert (status, headers["retry-after"]) == (429, "1")


async def test_health_and_metrics_are_never_limited():
    app = RateLimit(echo_length, rate=0.001, burst=1)
    for path in ["/health/live", "/health/ready", "/metrics"] * 20:
        assert (await call(app, http_scope(path), Client([b""])))[0] == 200
    assert (await call(app, http_scope("/v1/lines"), Client([b""])))[0] == 200
    assert (await call(app, http_scope("/metrics/x"), Client([b""])))[0] == 429


async def test_a_rate_of_zero_limits_nothing():
    app = RateLimit(echo_length, rate=0, burst=1)
    for _ in range(500):
        assert (await call(app, http_scope(), Client([b""])))[0] == 200


async def test_each_token_is_counted_on_its_own():
    app = RateLimit(echo_length, rate=0.001, burst=1)
    for token in ("a", "b"):
        scope = http_scope(headers=[("Authorization", f"Bearer {token}")])
        assert (await call(app, scope, Client([b""])))[0] == 200
    assert (await call(app, scope, Client([b""])))[0] == 429


def test_requests_count_against_their_principal_then_their_token_then_their_address():
    principal = bootstrap_principal()
    with_token = http_scope(headers=[("Authorization", "Bearer s3cret")])
    assert rate_key({**with_token, "state": {"principal": principal}}) == "principal:bootstrap"
    digest = hashlib.sha256(b"Bearer s3cret").hexdigest()
    assert rate_key(with_token) == f"authorization:{digest}"
    assert "s3cret" not in rate_key(with_token)
    assert rate_key(http_scope()) == "address:192.0.2.7"
    assert rate_key(http_scope(client=None)) == "address:unknown"
