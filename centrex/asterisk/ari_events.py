"""The ARI events websocket: registers the Stasis application and yields its events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import websockets

from centrex.config import Settings

log = logging.getLogger(__name__)


def events_url(settings: Settings) -> str:
    query = urlencode(
        {
            "app": settings.stasis_app,
            "api_key": f"{settings.ari_username}:{settings.ari_password.get_secret_value()}",
            "subscribeAll": "false",
        }
    )
    return f"{settings.ari_ws_url}?{query}"


async def stream_events(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """One websocket session; ends (raises) when the connection drops. The caller reconnects."""
    async with websockets.connect(
        events_url(settings), open_timeout=settings.asterisk_timeout_s, ping_interval=5
    ) as ws:
        log.info("ARI events connected, Stasis app %r registered", settings.stasis_app)
        yield {"type": "CentrexConnected"}
        async for raw in ws:
            try:
                yield json.loads(raw)
            except ValueError:
                log.warning("ignoring non-JSON ARI event: %.200r", raw)
