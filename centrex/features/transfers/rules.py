"""Who pays for which leg after a transfer, what counts against which line, which deadline the
remaining call keeps. Pure: no I/O (docs/transfers.md has the reasoning and examples).

A blind transfer: the *transferer* R, in a call with the *transferee* P, sends P to a *target*
T (what R's REFER names, routed as if R had dialled it). After it P and T are in a new call; R
has left. Every party is a line of the platform or outside (through the trunk).

- **Payers.** A leg through the trunk is paid by a line. The leg to an outside target is paid
  by the transferer R: R chose where it goes, so R's destination policy and fraud rules decide
  it, and R's number is its caller ID. An outside transferee keeps the payer its leg had: the
  line that called it out (an outbound call), nobody if it called in (an inbound call).
- **Counting.** The new call counts against the transferee's line, the target's line and every
  payer, once each: a line keeps a place for an outside leg it pays for even after its phone
  has left (as a forward does), so a line can never run more paid calls than its limit by
  transferring them away. Only the target needs room: the others already held a place in the
  call being transferred, which the transfer ends.
- **Deadline.** The 120 minutes (the maximum duration) run from the first answer of the call
  the customer pays for: a kept paid leg keeps its deadline; a new outside leg starts its own
  at its answer; the call is cut at the earliest. A call with no paid leg (on-net, or an
  incoming call sent on to a line) keeps the deadline of the call it continues: a transfer
  never lengthens a call nobody pays for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from centrex.core.cdr import transfer_part_key
from centrex.core.routing import LineInfo, Refuse


@dataclass(frozen=True)
class CallFacts:
    """The call being transferred, as the database holds it."""

    call_id: uuid.UUID
    direction: str  # on-net | outbound | inbound
    caller_line_id: uuid.UUID | None
    callee_line_id: uuid.UUID | None
    deadline_at: datetime | None  # None: never answered (a transfer before the answer)
    payers: tuple[uuid.UUID, ...] = ()  # lines paying for an outside leg of it
    transfers: int = 0  # transfers made so far in this Asterisk call (linked id)


@dataclass(frozen=True)
class TransferPlan:
    caller_line_id: uuid.UUID | None  # the transferee's line (None: outside)
    callee_line_id: uuid.UUID | None  # the target's line (None: outside)
    payers: tuple[uuid.UUID, ...]  # lines paying for an outside leg, counted too
    direction: str
    # Kept from the call it continues (see the module's "Deadline"); None: set at the answer.
    deadline_at: datetime | None
    paid_by: uuid.UUID | None  # the line billed for the new outside leg (the CDR's paid_by)
    transfers: int  # this transfer's number in the Asterisk call (1, 2 ...)


def kept_payers(call: CallFacts, transferee: LineInfo | None, transferee_was_caller: bool):
    """Who pays for the transferee's leg after the transfer: an outside transferee that was
    called out by a line stays that line's paid call; one that called in is paid by nobody."""
    if transferee is not None:
        return ()
    if call.payers:
        return call.payers
    if call.direction == "outbound" and not transferee_was_caller and call.caller_line_id:
        return (call.caller_line_id,)
    return ()


def plan_transfer(
    call: CallFacts,
    *,
    transferee: LineInfo | None,
    transferee_was_caller: bool,
    transferer: LineInfo,
    target: LineInfo | None,
) -> TransferPlan | Refuse:
    """The call that replaces ``call`` once ``transferer`` has sent ``transferee`` to ``target``
    (None: outside). Routing and the transferer's policy are checked before (as for any call
    it places); this says who pays, what counts, and the deadline."""
    if transferee is not None and target is not None and transferee.id == target.id:
        return Refuse("busy", "a transfer to the transferee's own line", category="no_route")
    kept = kept_payers(call, transferee, transferee_was_caller)
    outside_target = target is None
    paid_by = transferer.id if outside_target else None
    payers = tuple(dict.fromkeys((*kept, *((paid_by,) if paid_by else ()))))
    if outside_target:
        direction = "outbound"
    elif transferee is None:
        direction = "inbound"
    else:
        direction = "on-net"
    # A new paid leg with no paid leg kept starts its own 120 minutes at its answer; otherwise
    # the deadline kept is the paid leg's (or the unpaid call's), and the answer can only
    # bring it earlier (the database takes the earliest).
    deadline = None if outside_target and not kept else call.deadline_at
    return TransferPlan(
        caller_line_id=transferee.id if transferee else None,
        callee_line_id=target.id if target else None,
        payers=payers,
        direction=direction,
        deadline_at=deadline,
        paid_by=paid_by or (kept[0] if kept else None),
        transfers=call.transfers + 1,
    )


def segment_key(linkedid: str, transfers: int) -> str:
    """The key of the n-th transferred part of an Asterisk call (its linked id): the CDR's
    ``linkedid`` and its decision's key in ``call_attempts``. The CDR shipper derives the same
    from the journal (:func:`centrex.core.cdr.transfer_part_key`), so the two meet without a
    lookup."""
    return transfer_part_key(linkedid, transfers)


def asterisk_limit_ms(max_duration_s: int, deadline_at: datetime | None, now: datetime,
                      backstop_s: float) -> int:  # fmt: skip
    """Dial's L() for the transferred call: counted from the target's answer, so for a kept
    deadline the time left now (an upper bound: the daemon's timer cuts at the deadline itself;
    Asterisk's backstop may come later by the target's ringing time)."""
    if deadline_at is None:
        return int((max_duration_s + backstop_s) * 1000)
    left = max(1.0, (deadline_at - now).total_seconds())
    return int((min(left, max_duration_s) + backstop_s) * 1000)


# --- attended transfer (REFER with Replaces) --------------------------------------------------
@dataclass(frozen=True)
class MergePlan:
    """The call that replaces both calls of an attended transfer: the transferer R was in
    ``first`` with the transferee and in ``second`` with the target; Asterisk joined those two
    and hung R's channels up."""

    caller_line_id: uuid.UUID | None  # the transferee's line
    callee_line_id: uuid.UUID | None  # the target's line
    payers: tuple[uuid.UUID, ...]
    direction: str
    deadline_at: datetime | None
    paid_by: uuid.UUID | None
    transfers: int


def _leg(call: CallFacts, was_caller: bool) -> tuple[uuid.UUID | None, tuple[uuid.UUID, ...]]:
    """A party's line in ``call`` (None: outside) and who pays for its leg, as the call had it:
    an outside party called out by a line is that line's paid leg."""
    line_id = call.caller_line_id if was_caller else call.callee_line_id
    if line_id is not None:
        return line_id, ()
    if call.payers:
        return None, call.payers
    if call.direction == "outbound" and not was_caller and call.caller_line_id:
        return None, (call.caller_line_id,)
    return None, ()


def plan_merge(
    first: CallFacts, *, transferee_was_caller: bool, second: CallFacts, target_was_caller: bool
) -> MergePlan:
    """Both parties keep their legs as they were, with their payers (the transferer keeps
    paying an outside leg it placed, and keeps its place for it); nobody new is counted. The
    deadline: the earliest of the paid legs' (each from the first answer of its call); with no
    paid leg, the earliest of the two calls' (a transfer never lengthens an unpaid call)."""
    transferee, kept_first = _leg(first, transferee_was_caller)
    target, kept_second = _leg(second, target_was_caller)
    paid = [c.deadline_at for c, kept in ((first, kept_first), (second, kept_second)) if kept]
    candidates = [d for d in (paid or [first.deadline_at, second.deadline_at]) if d is not None]
    payers = tuple(dict.fromkeys((*kept_first, *kept_second)))
    if target is None:
        direction = "outbound"
    elif transferee is None:
        direction = "inbound"
    else:
        direction = "on-net"
    return MergePlan(
        caller_line_id=transferee,
        callee_line_id=target,
        payers=payers,
        direction=direction,
        deadline_at=min(candidates) if candidates else None,
        paid_by=payers[0] if payers else None,
        transfers=first.transfers + 1,  # the CDR part continues the first call (cdr.py)
    )
