"""The Stasis application's websocket: ARI events in, ARI REST requests out.

Asterisk 22 carries REST requests over the same websocket as the events (``RESTRequest`` /
``RESTResponse`` messages). The daemon's per-call requests go that way: a JSON frame each,
instead of an HTTP request each, which was most of the daemon's CPU under load.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import websockets

from centrex.asterisk.errors import AsteriskUnavailable
from centrex.config import Settings

log = logging.getLogger(__name__)

CONNECTED = {"type": "CentrexConnected"}  # handed to the handler after each (re)connection


def events_url(settings: Settings) -> str:
    """The Stasis application's websocket, as the daemon's own ARI user."""
    username, password = settings.ari_user("control")
    query = urlencode(
        {
            "app": settings.stasis_app,
            "api_key": f"{username}:{password}",
            "subscribeAll": "false",
        }
    )
    return f"{settings.ari_ws_url}?{query}"


class AriWebSocket:
    """An :class:`~centrex.asterisk.ari.AriTransport` over the events websocket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.timeout = settings.asterisk_timeout_s
        self._ws: websockets.ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def run(self, on_event: Callable[[dict[str, Any]], None]) -> None:
        """One connection: registers the Stasis app and hands every event to ``on_event``
        (which must not block: it spawns tasks). Returns or raises when the connection ends."""
        async with websockets.connect(
            events_url(self.settings), open_timeout=self.timeout, ping_interval=5
        ) as ws:
            self._ws = ws
            log.info("ARI events connected, Stasis app %r registered", self.settings.stasis_app)
            try:
                on_event(CONNECTED)
                async for raw in ws:
                    try:
                        message = json.loads(raw)
                    except ValueError:
                        log.warning("ignoring non-JSON ARI message: %.200r", raw)
                        continue
                    if message.get("type") == "RESTResponse":
                        future = self._pending.pop(str(message.get("request_id")), None)
                        if future is not None and not future.done():
                            future.set_result(message)
                    else:
                        on_event(message)
            finally:
                self._ws = None
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(AsteriskUnavailable("ARI websocket closed"))
                self._pending.clear()

    async def send(
        self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any
    ) -> tuple[int, str]:
        ws = self._ws
        if ws is None:
            raise AsteriskUnavailable(f"ARI {method} {path}: websocket not connected")
        request_id = str(next(self._ids))
        request: dict[str, Any] = {
            "type": "RESTRequest",
            "request_id": request_id,
            "method": method,
            "uri": path.lstrip("/") + (f"?{urlencode(params)}" if params else ""),
        }
        if json_body is not None:
            request["content_type"] = "application/json"
            request["message_body"] = json.dumps(json_body)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await ws.send(json.dumps(request))
            response = await asyncio.wait_for(future, self.timeout)
        except (websockets.ConnectionClosed, TimeoutError) as exc:
            raise AsteriskUnavailable(f"ARI {method} {path} over websocket: {exc!r}") from exc
        finally:
            self._pending.pop(request_id, None)
        return int(response.get("status_code", 500)), response.get("message_body") or ""

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()
