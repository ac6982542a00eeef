"""`centrex up`'s restart policy: at once, then backing off, reset once a child has held."""

from __future__ import annotations

import sys

import pytest

from centrex.supervisor import MAX_DELAY_S, STABLE_AFTER_S, Supervisor, restart_delay

pytestmark = pytest.mark.unit


def test_restart_delay_backs_off_up_to_a_ceiling():
    assert [restart_delay(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert restart_delay(50) == MAX_DELAY_S


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_dead_child_is_started_again_and_its_deaths_reset_once_it_held():
    clock = Clock()
    dies = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = Supervisor({"x": dies}, {}, clock=clock)
    supervisor.start_all()
    (child,) = supervisor.children
    child.process.wait()
    supervisor.poll()  # noticed: first death, restart due at once
    assert (child.deaths, child.restart_at) == (1, clock.now)
    supervisor.poll()
    first = child.process
    assert child.restart_at is None and first is not None
    first.wait()
    supervisor.poll()  # second death in a row: half a second later
    assert (child.deaths, child.restart_at) == (2, clock.now + 0.5)
    supervisor.poll()
    assert child.process is first  # not yet
    clock.now += 0.5
    supervisor.poll()
    assert child.process is not first
    child.process.wait()
    clock.now += STABLE_AFTER_S  # it had held long enough: this death is a first again
    supervisor.poll()
    assert (child.deaths, child.restart_at) == (1, clock.now)
    supervisor.stop_all()
