"""Authentication before anything else: an ASGI middleware, so that a request without a valid
token is answered 401 before its body is read, parsed or counted against anyone's limits."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from centrex.access.service import Refusal, authenticate
from centrex.metrics import API_REFUSED

log = logging.getLogger(__name__)

#: What needs a token: the API itself. /health, /metrics, /docs and /openapi.json stay open.
PROTECTED_PREFIX = "/v1/"


class Authenticate:
    def __init__(
        self, app: ASGIApp, bootstrap_token: Callable[[], str], sessionmaker: Callable[[], Any]
    ) -> None:
        self.app = app
        self.bootstrap_token = bootstrap_token
        self.sessionmaker = sessionmaker  # read at each request: the lifespan sets it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        try:
            async with self.sessionmaker()() as session:
                found = await authenticate(
                    session, self.bootstrap_token(), presented, datetime.now(UTC)
                )
        except Exception:  # the database: the token can't be checked, so nothing runs
            log.exception("could not check a bearer token")
            API_REFUSED.labels(reason="unchecked").inc()
            await _answer(send, 503, "the token could not be checked (database); retry")
            return
        if isinstance(found, Refusal):
            API_REFUSED.labels(reason="unauthenticated").inc()
            await _answer(send, 401, _DETAIL[found.reason], [(b"www-authenticate", b"Bearer")])
            return
        scope.setdefault("state", {})["principal"] = found
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return None
    return None


# A wrong token and one that never existed read the same: nothing to learn from the answer.
_DETAIL = {
    "missing": "missing bearer token",
    "malformed": "missing or wrong bearer token",
    "unknown": "missing or wrong bearer token",
    "revoked": "this token has been revoked",
    "expired": "this token has expired",
}


async def _answer(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The request's body is never read: the connection is not reused after it.
                (b"connection", b"close"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
