"""``centrex up``'s children: the API, the call-control daemon, the CDR shipper and the guard,
each a process of its own, started again when it dies.

One child dying never takes the others down, nor Asterisk or PostgreSQL: calls in progress go
on in Asterisk, and the restarted child picks up where it stopped (the daemon from the database
and Asterisk's channels, the shipper from its checkpoint). A child that keeps dying is restarted
with a growing delay, so a broken configuration does not spin a core. In production the same
job is systemd's (``deploy/systemd/``, ``Restart=always``).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from centrex import metrics

log = logging.getLogger(__name__)

FIRST_DELAY_S = 0.0  # a first death is restarted at once: new calls get 503 meanwhile
MAX_DELAY_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long had recovered: its next death is a "first"


def restart_delay(consecutive_deaths: int) -> float:
    """Seconds to wait before starting a child again after its n-th death in a row (n >= 1):
    0, 0.5, 1, 2, 4 … up to 30."""
    if consecutive_deaths <= 1:
        return FIRST_DELAY_S
    return min(MAX_DELAY_S, 0.5 * 2 ** (consecutive_deaths - 2))


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    deaths: int = 0  # consecutive, reset once it has run STABLE_AFTER_S
    restart_at: float | None = None


class Supervisor:
    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(name, argv) for name, argv in commands.items()]
        self.env = dict(env)
        self.clock = clock

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(list(child.argv), env=self.env)
        child.started_at = self.clock()
        child.restart_at = None

    def poll(self) -> None:
        """Notice dead children and start those whose delay is over."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    log.warning("restarting %s (death %d in a row)", child.name, child.deaths)
                    metrics.CHILD_RESTARTS.labels(child.name).inc()
                    self._start(child)
                continue
            if child.process is None or child.process.poll() is None:
                continue
            if now - child.started_at >= STABLE_AFTER_S:
                child.deaths = 0
            child.deaths += 1
            delay = restart_delay(child.deaths)
            child.restart_at = now + delay
            log.error(
                "%s (pid %d) died with status %s; starting it again in %.1fs",
                child.name, child.process.pid, child.process.returncode, delay,
            )  # fmt: skip

    def stop_all(self, timeout: float = 10) -> None:
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
