"""Where a call from a line goes, or why it goes nowhere. Pure: the daemon supplies the lines."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class LineInfo:
    id: uuid.UUID
    customer_id: uuid.UUID
    username: str
    max_calls: int
    max_duration_s: int | None = None  # per-line override of the platform maximum


@dataclass(frozen=True)
class Admit:
    dial: str  # an Asterisk Dial() target, e.g. "PJSIP/abc"
    target_line: LineInfo | None = None


@dataclass(frozen=True)
class Refuse:
    # An ARI hangup reason; chan_pjsip turns it into the SIP code the caller sees.
    reason: str
    why: str  # for the log and, later, the CDR


Decision = Admit | Refuse


def route_from_line(caller: LineInfo | None, dialed: str, target: LineInfo | None) -> Decision:
    """A call placed by a line: for now, line to line by SIP username."""
    if caller is None:
        return Refuse("rejected", "caller is not a provisioned line")  # 403
    if target is None:
        return Refuse("unallocated", f"no line {dialed!r}")  # 404
    if target.username == caller.username:
        return Refuse("busy", "a line cannot call itself")  # 486
    return Admit(dial=f"PJSIP/{target.username}", target_line=target)


def endpoint_of_channel(channel_name: str) -> str | None:
    """``PJSIP/abc-0000002a`` -> ``abc``; None for other technologies."""
    tech, _, rest = channel_name.partition("/")
    if tech != "PJSIP" or not rest:
        return None
    endpoint, _, _seq = rest.rpartition("-")
    return endpoint or None
