"""What the daemon follows of a call after admitting it, read from Asterisk's CEL records.

The daemon learns that a call was answered (to arm its cutoff, and, for a ring group, which
member took it) and that it ended (to release it) from the same CEL journal the CDRs come from,
not from an AMI session: with any AMI session open, Asterisk renders every event of every
channel as AMI text, about 1 ms of its CPU per call (docs/benchmarks.md).

A call is known by its caller's channel, the one that entered Stasis; every channel the call
creates carries that channel's uniqueid as its linkedid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from centrex.core.cdr import CelEvent
from centrex.core.routing import endpoint_of_channel


@dataclass(frozen=True)
class CallAnswered:
    channel_id: str  # the caller's channel
    at: datetime
    by: str | None  # the endpoint that answered (a ring group's member)


@dataclass(frozen=True)
class CallEnded:
    channel_id: str
    at: datetime


@dataclass(frozen=True)
class CallTransferred:
    """A blind transfer: ``channel_id`` (the transferer's channel) sent ``transferee`` on."""

    channel_id: str
    transferee: str


@dataclass(frozen=True)
class CallsJoined:
    """An attended transfer: the transferer's two channels (``channel_id``, ``channel2``) leave,
    ``transferee`` and ``target`` (channel uniqueids) are joined."""

    channel_id: str
    linkedid: str  # of ``channel_id``
    channel2: str
    transferee: str
    target: str


def call_event_of(
    cel: CelEvent,
) -> CallAnswered | CallEnded | CallTransferred | CallsJoined | None:
    """``ANSWER`` of a dialled channel: its call was answered, by that channel's endpoint (the
    caller's own ANSWER follows when it is bridged, and says nothing more). ``HANGUP`` of any
    channel: that channel ended; for a caller's channel, its call did."""
    at = datetime.fromtimestamp(cel.at, UTC)
    if cel.event == "ANSWER" and cel.uniqueid != cel.linkedid:
        return CallAnswered(cel.linkedid, at, endpoint_of_channel(cel.channel))
    if cel.event == "HANGUP":
        return CallEnded(cel.uniqueid, at)
    if cel.event == "ATTENDEDTRANSFER":
        extra = {k: str(v) for k, v in cel.extra.items()}
        return CallsJoined(
            cel.uniqueid, cel.linkedid, extra.get("channel2_uniqueid", ""),
            extra.get("transferee_channel_uniqueid", ""),
            extra.get("transfer_target_channel_uniqueid", ""),
        )  # fmt: skip
    if cel.event == "BLINDTRANSFER":
        return CallTransferred(cel.uniqueid, str(cel.extra.get("transferee_channel_uniqueid", "")))
    return None
