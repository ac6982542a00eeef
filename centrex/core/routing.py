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
    policy_level: str = "none"  # the strictest restriction in force (centrex.core.policy)


@dataclass(frozen=True)
class RingGroupInfo:
    id: uuid.UUID
    hunt: bool  # False: ring-all
    ring_timeout_s: int  # ring-all: for everyone; hunt: for each member in turn
    members: tuple[LineInfo, ...]  # in hunt order


@dataclass(frozen=True)
class NumberTarget:
    """Where one of the platform's assigned numbers leads: its line (the line's main number,
    or an alias attached to a line), a ring group, or nowhere yet (an unattached alias)."""

    e164: str
    line: LineInfo | None = None
    group: RingGroupInfo | None = None


@dataclass(frozen=True)
class Admit:
    dial: str  # an Asterisk Dial() target, e.g. "PJSIP/abc" or "PJSIP/+33…@trunk-x"
    target_line: LineInfo | None = None
    direction: str = "on-net"  # on-net | outbound | inbound
    caller_id: str | None = None  # E.164 to present on the public network
    # A call to a ring group: the members to try (the caller excluded); which of them ring is
    # decided with the count (a member at its limit is skipped), so ``dial`` is empty here.
    group: RingGroupInfo | None = None


# What a caller hears when a number leads nowhere: Asterisk's "the number you have dialled is
# not in service", as early media, then 404.
NOT_IN_SERVICE = "ss-noservice"


@dataclass(frozen=True)
class Refuse:
    # An ARI hangup reason; chan_pjsip turns it into the SIP code the caller sees.
    reason: str
    why: str  # for the log and, later, the CDR
    announcement: str | None = None  # an Asterisk sound played (early media) before hanging up
    # For metrics: line_limit, policy, destination, fraud, no_route, not_a_line, no_trunk.
    category: str = "no_route"


Decision = Admit | Refuse


def route_from_line(caller: LineInfo | None, dialed: str, target: LineInfo | None) -> Decision:
    """A line calling another line by SIP username."""
    if caller is None:
        return Refuse("rejected", "caller is not a provisioned line", category="not_a_line")  # 403
    if target is None:
        return Refuse("unallocated", f"no line {dialed!r}")  # 404
    if target.username == caller.username:
        return Refuse("busy", "a line cannot call itself")  # 486
    return Admit(dial=f"PJSIP/{target.username}", target_line=target)


def route_to_number(caller: LineInfo | None, number: NumberTarget, direction: str) -> Decision:
    """A call to one of the platform's numbers, from a line (on-net) or from the trunk."""
    if number.line is not None:
        if caller is not None and number.line.username == caller.username:
            return Refuse("busy", "a line cannot call itself")  # 486
        return Admit(dial=f"PJSIP/{number.line.username}", target_line=number.line,
                     direction=direction)  # fmt: skip
    if number.group is not None:
        members = tuple(m for m in number.group.members if caller is None or m.id != caller.id)
        if not members:
            return Refuse("unallocated", f"{number.e164}: its ring group has no one to ring",
                          announcement=NOT_IN_SERVICE)  # fmt: skip
        group = RingGroupInfo(number.group.id, number.group.hunt, number.group.ring_timeout_s,
                              members)  # fmt: skip
        return Admit(dial="", direction=direction, group=group)
    return Refuse(
        "unallocated",
        f"{number.e164} is not in service: attached to no line or ring group",
        announcement=NOT_IN_SERVICE,
    )  # 404, after the announcement


def route_call(
    *,
    caller: LineInfo | None,
    from_trunk: bool,
    dialled: Dialled,
    target: LineInfo | None,
    trunk_endpoint: str | None,
    number: NumberTarget | None = None,
    extension: NumberTarget | None = None,
) -> Decision:
    """Every call: from a line (on-net, or out through the trunk) or in from the trunk.

    ``target`` is the line a dialled SIP username belongs to; ``number`` what a dialled number
    of the platform leads to, if it is one; ``extension`` the line or ring group a dialled
    extension names in the caller's customer: those stay on-net and never touch the trunk.
    """
    if from_trunk:
        if dialled.kind is DialledKind.number and number is not None:
            return route_to_number(None, number, "inbound")
        return Refuse("unallocated", f"no line has number {dialled.text!r}")  # 404
    if caller is None:
        return Refuse("rejected", "caller is not a provisioned line", category="not_a_line")  # 403
    if dialled.kind is DialledKind.line:
        return route_from_line(caller, dialled.text, target)
    if dialled.kind is DialledKind.extension:
        if extension is None:  # another customer's extensions do not exist for this caller
            return Refuse("unallocated", f"no extension {dialled.text} in the caller's customer")
        return route_to_number(caller, extension, "on-net")  # 404 above
    if dialled.kind is DialledKind.invalid:
        return Refuse("number_incomplete", f"{dialled.text!r}: {dialled.why}")  # 484
    if dialled.kind is DialledKind.number and number is not None:
        return route_to_number(caller, number, "on-net")
    # Out to the public network: emergency short numbers as dialled, the rest in E.164.
    if trunk_endpoint is None:
        return Refuse("congestion", "no trunk to the public network", category="no_trunk")  # 503
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


def through_proxy(dial: str, proxy: str | None) -> str:
    """A Dial() target list with every line reached through the SIP edge (clustered shape,
    docs/cluster.md): ``PJSIP/abc`` -> ``PJSIP/abc/sip:abc@<proxy>``. The line's registration is
    the edge's, not this node's; the endpoint stays the line's (its codecs, its caller ID, its
    channel name). Trunk targets (``@trunk``) and anything already with a URI are left alone.
    Without a proxy the targets are returned unchanged (one node)."""
    if not proxy:
        return dial
    targets = []
    for target in dial.split("&"):
        tech, _, rest = target.partition("/")
        if tech == "PJSIP" and rest and "@" not in rest and "/" not in rest:
            target = f"PJSIP/{rest}/sip:{rest}@{proxy}"
        targets.append(target)
    return "&".join(targets)
