"""Issue 14: cache expiries fail fast for an Asterisk node known down, and reach it again once
it is back (centrex.services.provisioning, centrex.core.node_health).

The node that is "down" is a port nothing listens on (connections refused, as for an Asterisk
that is not running); it comes back as a relay process to the session's real Asterisk AMI."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from centrex import metrics
from centrex.asterisk.errors import AsteriskUnavailable
from centrex.config import Settings
from centrex.sandbox.postgres import free_port
from centrex.services.provisioning import AsteriskProjector

pytestmark = pytest.mark.integration

RELAY = Path(__file__).with_name("tcp_relay.py")


def undelivered(node: str) -> float:
    return metrics.CACHE_EXPIRIES_UNDELIVERED.labels(node)._value.get()


async def test_a_node_known_down_fails_at_once_and_is_used_again_once_back(
    settings: Settings, asterisk, wait_until
):
    port = free_port()
    node = f"127.0.0.1:{port}"
    projector = AsteriskProjector(settings.model_copy(update={"asterisk_cache_nodes": [node]}))
    before = undelivered(node)
    try:
        # The first change learns the node is down: refused at once, not after the AMI timeout
        # (settings.asterisk_timeout_s); this node (the real Asterisk) was still told.
        started = time.monotonic()
        with pytest.raises(AsteriskUnavailable):
            await projector.forget_line("nobody-at-all")
        assert time.monotonic() - started < 1.5
        assert projector.health.is_down(node)
        # The next ones do not even try it: each fails at once and is counted as undelivered.
        started = time.monotonic()
        for _ in range(20):
            with pytest.raises(AsteriskUnavailable, match="known down"):
                await projector.forget_line("nobody-at-all")
        assert time.monotonic() - started < 2 < settings.asterisk_timeout_s
        assert undelivered(node) == before + 21
        # Back (a relay to the real AMI on that port): the background probe marks it up, and
        # expiries reach it again.
        relay = await asyncio.create_subprocess_exec(
            sys.executable, str(RELAY), str(port), settings.asterisk_host, str(settings.ami_port),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert relay.stdout is not None and b"ready" in await relay.stdout.readline()
            deadline = time.monotonic() + 20
            while projector.health.is_down(node):
                assert time.monotonic() < deadline, "the probe never marked the node up"
                await asyncio.sleep(0.1)  # polling the probe (a task of its own)
            await projector.forget_line("nobody-at-all")
            assert undelivered(node) == before + 21
        finally:
            relay.kill()
            await relay.wait()
    finally:
        projector.close()
