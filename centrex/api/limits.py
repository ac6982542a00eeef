"""Abuse limits of the API, as pure ASGI middlewares: they answer before FastAPI parses anything.

- :class:`BodySizeLimit`: a body over ``CENTREX_API_MAX_BODY_BYTES`` gets 413, at once when
  Content-Length says so (the body is never read), else when that many bytes have come in (never
  more are held); a malformed Content-Length gets 400.
- :class:`RateLimit`: per token (or address) token buckets, 429 with ``Retry-After`` past them.

Both answer ``{"detail": "..."}`` and close the connection: what the client still sends of a
refused body is not read, and not waited for.
"""

from __future__ import annotations

import hashlib
import math

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from centrex.core.rate_limit import RateLimiter
from centrex.metrics import API_REQUESTS_REFUSED

#: Never rate limited: a monitoring system polls them, and must see an API under attack as up.
UNLIMITED_PREFIXES = ("/health/",)
UNLIMITED_PATHS = frozenset({"/metrics"})


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, reason: str, detail: str,
    headers: dict[str, str] | None = None,
) -> None:  # fmt: skip
    API_REQUESTS_REFUSED.labels(reason=reason).inc()
    # "Connection: close" makes the server drop the connection after the answer, rather than
    # read (and throw away) the rest of a body to reach the next request.
    response = JSONResponse(
        {"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"}
    )
    await response(scope, receive, send)


def _content_length(headers: Headers) -> int | None:
    """The one Content-Length, or None; ValueError if there are several or it is not digits."""
    values = headers.getlist("content-length")
    if not values:
        return None
    if len(values) > 1 or not values[0].isascii() or not values[0].isdigit():
        raise ValueError(values)
    return int(values[0])


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path -> its own limit (bulk imports)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        too_large = f"request body larger than {max_bytes} bytes"
        try:
            length = _content_length(Headers(scope=scope))
        except ValueError:
            detail = "malformed Content-Length header"
            await _refuse(scope, receive, send, 400, "bad_content_length", detail)
            return
        if length is not None and length > max_bytes:
            await _refuse(scope, receive, send, 413, "body_too_large", too_large)
            return
        # Whatever the header says, the bytes are counted as they come (a chunked body has no
        # length to check): the body is read here, up to the limit, and handed on whole.
        body = await self._read_body(receive, max_bytes)
        if body is None:
            await _refuse(scope, receive, send, 413, "body_too_large", too_large)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive, max_bytes: int) -> Message | None:
        """The request's body as one message, or None once it passes the limit (read no
        further); a disconnect is handed on as is."""
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}


def _replay(first: Message, receive: Receive) -> Receive:
    """``first``, then what the server says next (a disconnect)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def rate_key(scope: Scope) -> str:
    """Who a request counts against: its principal (set by the authentication middleware), else
    its bearer credentials, else its address."""
    principal = scope.get("state", {}).get("principal")
    if principal is not None:
        return f"principal:{principal.rate_key}"
    authorization = Headers(scope=scope).get("authorization")
    if authorization:
        # Hashed: no token is kept in the limiter's memory, and a long header is a short key.
        return f"authorization:{hashlib.sha256(authorization.encode()).hexdigest()}"
    client = scope.get("client")
    return f"address:{client[0] if client else 'unknown'}"


class RateLimit:
    def __init__(self, app: ASGIApp, rate: float, burst: int) -> None:
        self.app = app
        self.limiter = RateLimiter(rate, burst) if rate > 0 else None  # 0: no limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.limiter is None or scope["type"] != "http" or _unlimited(scope["path"]):
            await self.app(scope, receive, send)
            return
        wait_s = self.limiter.acquire(rate_key(scope))
        if wait_s > 0:
            retry_after = max(1, math.ceil(wait_s))
            detail = f"rate limit exceeded: retry in {retry_after} s"
            headers = {"Retry-After": str(retry_after)}
            await _refuse(scope, receive, send, 429, "rate_limited", detail, headers)
            return
        await self.app(scope, receive, send)


def _unlimited(path: str) -> bool:
    return path in UNLIMITED_PATHS or path.startswith(UNLIMITED_PREFIXES)
