"""Where a call goes, or why it goes nowhere. Pure: the daemon supplies the lines and trunk."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from centrex.core.numbering import Dialled, DialledKind


@dataclass(frozen=True)
class LineInfo:
    id: uuid.UUID
    customer_id: uuid.UUID
    username: str
    max_calls: int
    max_duration_s: int | None = None  # per-line override of the platform maximum
    main_number: str | None = None  # E.164: caller ID outside, reached from outside


@dataclass(frozen=True)
class Admit:
    dial: str  # an Asterisk Dial() target, e.g. "PJSIP/abc" or "PJSIP/+33…@trunk-x"
    target_line: LineInfo | None = None
    direction: str = "on-net"  # on-net | outbound | inbound
    caller_id: str | None = None  # E.164 to present on the public network


@dataclass(frozen=True)
class Refuse:
    # An ARI hangup reason; chan_pjsip turns it into the SIP code the caller sees.
    reason: str
    why: str  # for the log and, later, the CDR


Decision = Admit | Refuse


def route_from_line(caller: LineInfo | None, dialed: str, target: LineInfo | None) -> Decision:
    """A line calling another line by SIP username."""
    if caller is None:
        return Refuse("rejected", "caller is not a provisioned line")  # 403
    if target is None:
        return Refuse("unallocated", f"no line {dialed!r}")  # 404
    if target.username == caller.username:
        return Refuse("busy", "a line cannot call itself")  # 486
    return Admit(dial=f"PJSIP/{target.username}", target_line=target)


def route_call(
    *,
    caller: LineInfo | None,
    from_trunk: bool,
    dialled: Dialled,
    target: LineInfo | None,
    trunk_endpoint: str | None,
) -> Decision:
    """Every call: from a line (on-net, or out through the trunk) or in from the trunk.

    ``target`` is the line the dialled username or number belongs to, if any; numbers owned on
    the platform stay on-net and never touch the trunk.
    """
    if from_trunk:
        if dialled.kind is DialledKind.number and target is not None:
            return Admit(dial=f"PJSIP/{target.username}", target_line=target, direction="inbound")
        return Refuse("unallocated", f"no line has number {dialled.text!r}")  # 404
    if caller is None:
        return Refuse("rejected", "caller is not a provisioned line")  # 403
    if dialled.kind is DialledKind.line:
        return route_from_line(caller, dialled.text, target)
    if dialled.kind is DialledKind.invalid:
        return Refuse("number_incomplete", f"{dialled.text!r}: {dialled.why}")  # 484
    if dialled.kind is DialledKind.number and target is not None:
        if target.username == caller.username:
            return Refuse("busy", "a line cannot call itself")
        return Admit(dial=f"PJSIP/{target.username}", target_line=target)
    # Out to the public network: emergency short numbers as dialled, the rest in E.164.
    if trunk_endpoint is None:
        return Refuse("congestion", "no trunk to the public network")  # 503
    if dialled.kind is DialledKind.emergency:
        destination = dialled.text
    else:
        if caller.main_number is None:
            return Refuse("rejected", "the line has no number to call out with")  # 403
        destination = dialled.e164 or dialled.text
    return Admit(
        dial=f"PJSIP/{destination}@{trunk_endpoint}",
        direction="outbound",
        caller_id=caller.main_number,
    )


def endpoint_of_channel(channel_name: str) -> str | None:
    """``PJSIP/abc-0000002a`` -> ``abc``; None for other technologies."""
    tech, _, rest = channel_name.partition("/")
    if tech != "PJSIP" or not rest:
        return None
    endpoint, _, _seq = rest.rpartition("-")
    return endpoint or None
