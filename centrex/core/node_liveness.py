"""Which nodes are lost, and the record of a call lost with its node (issue 19): pure rules.

A node's daemon writes a heartbeat (PostgreSQL's now()) while its Asterisk answers; another
node's daemon reads the heartbeats with PostgreSQL's now() beside them, so no node's clock is
ever compared with another's (centrex/control/reaper.py holds the SQL).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from centrex.core.cdr import _as_sent, cdr_destination, destination_country

#: The CDR disposition of a call released because its node was lost. Not rated by billing
#: (centrex/billing/rating.py rates "answered" and "cut"): nobody knows when such a call ended.
LOST = "lost"
#: The SIP code of a lost call nobody answered: the node died (503 Service Unavailable).
LOST_UNANSWERED_SIP_CODE = 503


def lost_nodes(
    last_seen: Mapping[str, datetime], now: datetime, lost_after_s: float, own: str
) -> frozenset[str]:
    """The nodes whose heartbeat is older than ``lost_after_s`` at ``now`` (both PostgreSQL's
    clock). ``own`` is never lost to itself: its own calls are its sweep's business, which
    knows its Asterisk's channels. A node absent from ``last_seen`` (no heartbeat row: the
    single-machine shape, an older daemon) is never lost."""
    limit = timedelta(seconds=lost_after_s)
    return frozenset(n for n, seen in last_seen.items() if n != own and now - seen > limit)


@dataclass(frozen=True)
class LostCall:
    """A call released from a lost node (its ``active_calls`` row) and what the record needs."""

    call_id: uuid.UUID
    node: str
    channel_id: str
    direction: str
    caller: str
    callee: str
    caller_line_id: uuid.UUID | None
    callee_line_id: uuid.UUID | None
    ring_group_id: uuid.UUID | None
    started_at: datetime
    answered_at: datetime | None
    deadline_at: datetime | None
    transfer_of: uuid.UUID | None
    customer_id: uuid.UUID | None  # the caller line's, else the callee's, else the group's
    last_seen_at: datetime  # the node's last heartbeat


def lost_end(call: LostCall) -> datetime:
    """When a lost call is taken to have ended: the node's last heartbeat, the latest moment it
    is known to have been alive, never past the call's deadline nor before its start or
    answer. So the record never claims more than was possible (the node died between its last
    heartbeat and the next one, and the call at the latest with it)."""
    end = call.last_seen_at
    if call.deadline_at is not None:
        end = min(end, call.deadline_at)
    return max(end, call.started_at, call.answered_at or call.started_at)


def lost_reason(call: LostCall) -> str:
    return f"lost with node {call.node}: no heartbeat since {call.last_seen_at.isoformat()}"


def lost_cdr(call: LostCall) -> tuple[object, ...]:
    """The CDR row (``centrex.core.cdr.CDR_COLUMNS``) of a call lost with its node. Keyed like
    the journal's record of the same call, ``(node, linkedid = the caller's channel)``: if the
    node returns, its shipper's record takes this one's place (centrex/cdr/shipper.py)."""
    end = lost_end(call)
    answered = call.answered_at
    billed = 0 if answered is None else math.floor((end - answered).total_seconds() + 0.5)
    return (
        uuid.uuid4(), call.node, call.channel_id, call.call_id, call.customer_id,
        call.caller_line_id, call.callee_line_id, call.ring_group_id, None, call.direction,
        _as_sent(call.caller), _as_sent(call.callee), destination_country(call.callee),
        call.started_at, answered, end,
        round((end - call.started_at).total_seconds() * 1000), billed, LOST, None,
        200 if answered is not None else LOST_UNANSWERED_SIP_CODE, cdr_destination(call.callee),
        lost_reason(call), call.transfer_of, None,
    )  # fmt: skip
