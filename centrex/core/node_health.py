"""Which Asterisk nodes are known down, and when to try each again (pure; the clock is given).

The API tells every Asterisk node over AMI when a line or trunk changed (cache expiry). A node
that refused a connection is marked down: changes then fail at once for it (the database has
the change, the line stays pending, the reconciler delivers the expiry later) instead of each
one waiting for AMI to time out. A probe tries the node again after a backoff that doubles up
to a ceiling; the first success marks it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: First wait before trying a down node again, and the ceiling the doubling stops at.
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0


@dataclass
class _Down:
    since: float
    backoff_s: float
    retry_at: float


@dataclass
class NodeHealth:
    first_backoff_s: float = FIRST_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S
    _down: dict[str, _Down] = field(default_factory=dict)

    def is_down(self, node: str) -> bool:
        return node in self._down

    def down_since(self, node: str) -> float | None:
        down = self._down.get(node)
        return down.since if down else None

    def mark_down(self, node: str, now: float) -> float:
        """Record a failure (the first, or a failed probe); returns the seconds until the next
        probe: the backoff doubles at each failure, up to the ceiling."""
        down = self._down.get(node)
        if down is None:
            backoff = self.first_backoff_s
            self._down[node] = _Down(since=now, backoff_s=backoff, retry_at=now + backoff)
            return backoff
        down.backoff_s = min(down.backoff_s * 2, self.max_backoff_s)
        down.retry_at = now + down.backoff_s
        return down.backoff_s

    def mark_up(self, node: str) -> None:
        self._down.pop(node, None)

    def wait_s(self, node: str, now: float) -> float:
        """Seconds until the node's next probe is due (0 if due, or not down)."""
        down = self._down.get(node)
        return max(0.0, down.retry_at - now) if down else 0.0
