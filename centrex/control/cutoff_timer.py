"""One timer per answered call, firing at its deadline (the 120-minute cutoff, art. 8)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)


class CutoffTimer:
    def __init__(self, on_due: Callable[[str], Awaitable[None]]) -> None:
        self._on_due = on_due
        self._handles: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()

    def arm(self, channel_id: str, deadline: datetime) -> None:
        """(Re)arm: a deadline already past fires at once."""
        self.disarm(channel_id)
        loop = asyncio.get_running_loop()
        delay = (deadline - datetime.now(UTC)).total_seconds()
        self._handles[channel_id] = loop.call_at(
            loop.time() + max(delay, 0), self._fire, channel_id
        )

    def disarm(self, channel_id: str) -> None:
        handle = self._handles.pop(channel_id, None)
        if handle is not None:
            handle.cancel()

    def armed(self, channel_id: str) -> bool:
        return channel_id in self._handles

    def _fire(self, channel_id: str) -> None:
        self._handles.pop(channel_id, None)
        task = asyncio.create_task(self._on_due(channel_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
