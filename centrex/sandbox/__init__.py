"""Local, loopback-only infrastructure for development, tests and benchmarks."""

from centrex.sandbox.asterisk import (
    AsteriskNotRunning,
    AsteriskPorts,
    AsteriskSandbox,
    AsteriskSandboxError,
    AsteriskStatus,
    rtp_port_range,
)

__all__ = [
    "AsteriskNotRunning",
    "AsteriskPorts",
    "AsteriskSandbox",
    "AsteriskSandboxError",
    "AsteriskStatus",
    "rtp_port_range",
]
