"""The daemon's part of per-customer music on hold: which class each side of a call hears.

When a phone puts its call on hold, Asterisk plays music to the *other* party, choosing the
class from that party's channel first (``CHANNEL(musicclass)``; musiconhold.conf's
``preferchannelclass``, on by default), then the holder's suggestion (``default``). So the
caller's channel gets the class of the callee's customer, and the channel Dial creates for the
callee gets the caller customer's (``__CENTREX_MOH``, inherited, set on it by the dialplan's
``centrex-answered``): an outside caller held by a customer's line hears that customer's music.

Which customers have music is read at most every :data:`REFRESH_S` (one query), and a call
costs one more query only when one does: calls of customers without music pay nothing.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from centrex.moh.rules import class_name

if TYPE_CHECKING:
    from centrex.control.call_registry import CallRegistry

REFRESH_S = 2.0
WITH_MUSIC = "SELECT customer_id FROM customer_music_on_hold"
CALL_CUSTOMERS = (
    "SELECT a.customer_id, coalesce(b.customer_id, g.customer_id) FROM active_calls c"
    " LEFT JOIN lines a ON a.id = c.caller_line_id"
    " LEFT JOIN lines b ON b.id = c.callee_line_id"
    " LEFT JOIN ring_groups g ON g.id = c.ring_group_id"
    " WHERE c.node = $1 AND c.channel_id = $2"
)


class MusicClasses:
    def __init__(self, registry: CallRegistry, clock=time.monotonic) -> None:
        self.registry = registry
        self.clock = clock
        self._with_music: frozenset[uuid.UUID] = frozenset()
        self._read_at: float | None = None

    async def _customers(self) -> frozenset[uuid.UUID]:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= REFRESH_S:
            rows = await self.registry._fetch(WITH_MUSIC)
            self._with_music, self._read_at = frozenset(r[0] for r in rows), now
        return self._with_music

    def surely_none(self) -> bool:
        """No customer had music at the last read, and it is recent: nothing to look up (the
        daemon's fast path, without a task or a query)."""
        fresh = self._read_at is not None and self.clock() - self._read_at < REFRESH_S
        return fresh and not self._with_music

    async def of_call(self, channel_id: str) -> tuple[str | None, str | None]:
        """(the class the caller hears when held, the class the callee hears); None: the
        default music."""
        with_music = await self._customers()
        if not with_music:
            return None, None
        rows = await self.registry._fetch(CALL_CUSTOMERS, self.registry.node, channel_id)
        if not rows:
            return None, None
        caller_customer, callee_customer = rows[0]
        caller_hears = class_name(callee_customer) if callee_customer in with_music else None
        callee_hears = class_name(caller_customer) if caller_customer in with_music else None
        return caller_hears, callee_hears
