"""Known-down Asterisk nodes and their probe backoff (centrex.core.node_health)."""

from __future__ import annotations

import pytest

from centrex.core.node_health import NodeHealth

pytestmark = pytest.mark.unit


def test_a_down_node_is_probed_after_a_backoff_that_doubles_up_to_a_ceiling():
    health = NodeHealth(first_backoff_s=0.5, max_backoff_s=4)
    assert not health.is_down("a:1") and health.wait_s("a:1", 0) == 0
    assert health.mark_down("a:1", now=100) == 0.5
    assert health.is_down("a:1") and health.down_since("a:1") == 100
    assert health.wait_s("a:1", 100.2) == pytest.approx(0.3)
    backoffs = [health.mark_down("a:1", now=101) for _ in range(4)]
    assert backoffs == [1, 2, 4, 4]
    assert health.down_since("a:1") == 100  # since the first failure
    assert health.wait_s("a:1", 200) == 0  # due


def test_up_again_forgets_the_backoff_and_other_nodes_are_apart():
    health = NodeHealth(first_backoff_s=0.5, max_backoff_s=4)
    health.mark_down("a:1", now=0)
    health.mark_down("a:1", now=1)
    health.mark_down("b:2", now=0)
    health.mark_up("a:1")
    assert not health.is_down("a:1") and health.is_down("b:2")
    assert health.mark_down("a:1", now=5) == 0.5
