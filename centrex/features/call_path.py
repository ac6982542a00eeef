"""Line features on the call path (the daemon's side): forwards and do-not-disturb of the line
called, privacy of the caller, forwards after a line was rung, and feature codes.

Runs on the call registry's asyncpg pool, inside the daemon's decision deadline. An outside
forward is a call of the forwarding line: it keeps that line's leg (counted against its limit,
checked against its restrictions and the destination list, its distinct numbers counted) and
leaves through the trunk with a Diversion header naming the line's number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.core.policy import CallPolicyFacts, check_call, destination_of
from centrex.core.routing import Admit, LineInfo, Refuse, route_to_number
from centrex.features.codes import VOICEMAIL_TARGET
from centrex.features.rules import (
    CallFeatures,
    CodeKind,
    Condition,
    DialledCode,
    ForwardTarget,
    LineFeatures,
    TargetError,
    TargetFacts,
    TargetKind,
    condition_of_dial_status,
    forward_at_admission,
    in_emergency_callback,
    is_loop,
    parse_target,
    presentable,
    target_refusal,
)
from centrex.features.service import TARGET_FACTS, facts_of_row, target_query_args

if TYPE_CHECKING:
    from centrex.control.call_registry import CallRegistry

LOOP = "loop"  # Refuse.category of a forwarding loop: the dialplan ends it with 482
FEATURES_OF = (
    "SELECT line_id, forward_unconditional, forward_busy, forward_no_answer,"
    " forward_no_answer_s, forward_unregistered, dnd, privacy, last_emergency_at"
    " FROM line_features WHERE line_id = ANY($1::uuid[])"
)
LINES_BY_ID = (
    "SELECT id, customer_id, sip_username, max_calls, max_call_duration_s, main_number,"
    " centrex_policy_level(id, customer_id) FROM lines WHERE id = ANY($1::uuid[])"
)
TRUNK_AND_DESTINATION = (
    "SELECT (SELECT name FROM trunks ORDER BY created_at LIMIT 1),"
    " d.code IS NOT NULL, d.suspended_at IS NOT NULL"
    " FROM (SELECT 1) AS one LEFT JOIN destinations d ON d.code = $1"
)
CALL_OF_CHANNEL = (
    "SELECT caller, caller_line_id, callee_line_id, direction, ring_group_id FROM active_calls"
    " WHERE node = $1 AND channel_id = $2"
)
FORWARD_LEG = "SELECT centrex_forward_leg($1, $2, $3, $4)"
PICKUP_LEG = "SELECT centrex_pickup_leg($1, $2, $3, $4)"  # migration 0027_features_rest
# The refusal the admission statement recorded for a line at its limit, forgotten when the call
# is admitted again along the line's busy forward: the CDR must say what finally happened.
FORGET_REFUSAL = (
    "DELETE FROM call_attempts WHERE node = $1 AND channel_id = $2 AND outcome = 'refused_limit'"
)
RECORD_FORWARD = (
    "INSERT INTO call_forwards (node, channel_id, hop, line_id, target, target_line_id,"
    " direction, condition, decided_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT DO NOTHING"
)
SET_FEATURE = """
INSERT INTO line_features (line_id, {column}) VALUES ($1, $2)
ON CONFLICT (line_id) DO UPDATE SET {column} = EXCLUDED.{column}, updated_at = now()
"""
# A ringing call of the customer's lines, to pick up: the oldest unanswered call with a line of
# the customer ringing for it (the line called, or the members of a ring group rung), other than
# the picker's own; its caller's channel and the endpoints ringing. Not a call the picker placed,
# nor one a line forwarded outside: that one rings at the carrier, not on the line.
RINGING_IN_CUSTOMER = """
SELECT c.channel_id, array_agg(l.sip_username ORDER BY l.sip_username) FROM active_calls c
JOIN active_call_legs g ON g.call_id = c.id AND g.role IN ('callee', 'member')
JOIN lines l ON l.id = g.line_id
WHERE c.node = $1 AND c.answered_at IS NULL AND l.customer_id = $2 AND l.id <> $3
  AND c.caller_line_id IS DISTINCT FROM $3
  AND NOT EXISTS (SELECT 1 FROM call_forwards f WHERE f.node = c.node
                  AND f.channel_id = c.channel_id AND f.direction = 'outbound')
GROUP BY c.id, c.channel_id, c.started_at
ORDER BY c.started_at LIMIT 1
"""


@dataclass(frozen=True)
class Plan:
    """Where a call goes once the features of the lines involved are applied."""

    route: Admit
    features: CallFeatures
    # The line whose forward left through the trunk, and the number: its distinct numbers.
    count_number: tuple[LineInfo, str] | None = None
    busy_forward: bool = False  # the line called forwards on busy (at its limit, say)
    # A forward to voicemail: the line whose mailbox takes the call (no line is rung).
    mailbox: LineInfo | None = None


@dataclass(frozen=True)
class Pickup:
    """A ringing call the picker takes: its caller's channel and the lines ringing for it (one
    line, or a ring group's members)."""

    call_channel: str
    ringing_endpoints: tuple[str, ...]


class FeatureCalls:
    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry

    async def features(self, line_ids: list[uuid.UUID]) -> dict[uuid.UUID, LineFeatures]:
        if not line_ids:
            return {}
        rows = await self.registry._fetch(FEATURES_OF, line_ids)
        return {row[0]: LineFeatures(*row[1:]) for row in rows}

    async def lines(self, line_ids: list[uuid.UUID]) -> dict[uuid.UUID, LineInfo]:
        rows = await self.registry._fetch(LINES_BY_ID, [i for i in line_ids if i])
        return {row[0]: LineInfo(*row) for row in rows}

    # --- at admission ---------------------------------------------------------------------
    async def plan(
        self, *, caller: LineInfo | None, route: Admit, caller_number: str, emergency: bool,
        hidden: bool, now: datetime, busy_line: uuid.UUID | None = None,
    ) -> Plan | Refuse:  # fmt: skip
        """The route as the features change it, or why the call is refused. ``busy_line``: the
        line called was found at its limit; its busy forward applies."""
        target = route.target_line
        if emergency and caller is not None:
            # Remembered for the emergency service's call back (in_emergency_callback).
            await self._set(caller, "last_emergency_at", now)
        known = await self.features([ln.id for ln in (caller, target) if ln is not None])
        if caller is not None and caller.id in known:
            hidden = hidden or known[caller.id].privacy
        hidden = hidden and not emergency  # emergency services always get the number
        if target is None or route.group is not None or emergency:
            return Plan(route, CallFeatures(hidden=hidden))
        mine = known.get(target.id, LineFeatures())
        window = self.registry.settings.emergency_callback_window_s
        if caller is None and in_emergency_callback(mine.last_emergency_at, now, window):
            return Plan(route, CallFeatures(hidden=hidden))  # the line itself rings
        if busy_line == target.id:
            step = (Condition.busy, mine.forward_busy) if mine.forward_busy else None
        else:
            step = forward_at_admission(mine)
        if step is not None:
            plan = await self.follow(
                caller=caller, forwarding=target, text=step[1], condition=step[0],
                caller_number=caller_number, direction=route.direction, path=(), hidden=hidden,
            )  # fmt: skip
            if plan is not None:
                return plan
        if busy_line == target.id:
            return Refuse("busy", f"called line at its limit of {target.max_calls} calls",
                          category="line_limit")  # fmt: skip
        if mine.dnd:
            return Refuse("busy", "the called line is in do-not-disturb", category="dnd")
        return Plan(route, self._ringing(mine, hidden, ()), busy_forward=bool(mine.forward_busy))

    @staticmethod
    def _ringing(features: LineFeatures, hidden: bool, path: tuple[str, ...],
                 **diverted: str | None) -> CallFeatures:  # fmt: skip
        return CallFeatures(
            hidden=hidden,
            watch=features.forwards_when_dialled,
            ring_timeout_s=features.forward_no_answer_s if features.forward_no_answer else None,
            path=path,
            diverted_from=diverted.get("diverted_from"),
            divert_reason=diverted.get("divert_reason"),
        )

    async def follow(
        self, *, caller: LineInfo | None, forwarding: LineInfo, text: str, condition: Condition,
        caller_number: str, direction: str, path: tuple[str, ...], hidden: bool,
    ) -> Plan | Refuse | None:  # fmt: skip
        """Where ``forwarding``'s forward to ``text`` leads; None: nowhere usable (its
        extension deleted since, a mailbox that is off): as if it had none."""
        try:
            target = parse_target(text)
        except TargetError:
            return None
        path = (*path, str(forwarding.id))
        if target.kind is TargetKind.voicemail:
            return await self._mailbox(forwarding, target, condition, direction, path, hidden)
        if target.kind is TargetKind.extension:
            found = await self.registry.resolve_extension(forwarding.customer_id, target.value)
            if found is None:
                return None
        else:
            found = await self.registry.resolve_number(target.value)
        diverted = {"diverted_from": forwarding.main_number, "divert_reason": condition.value}
        if found is None:
            return await self._outside(
                caller, forwarding, target.value, diverted, caller_number, direction, path, hidden
            )
        route = route_to_number(caller, found, direction)
        if isinstance(route, Refuse):
            return route
        nxt = route.target_line
        if nxt is None:  # a ring group: rung as one, no further forwards
            return Plan(route, CallFeatures(hidden=hidden, path=path, **diverted))
        if is_loop(path, str(nxt.id)):
            return Refuse("congestion", f"forwarding loop through {len(path)} lines",
                          category=LOOP)  # fmt: skip
        theirs = (await self.features([nxt.id])).get(nxt.id, LineFeatures())
        if step := forward_at_admission(theirs):
            further = await self.follow(
                caller=caller, forwarding=nxt, text=step[1], condition=step[0],
                caller_number=caller_number, direction=direction, path=path, hidden=hidden,
            )  # fmt: skip
            if further is not None:
                return further
        if theirs.dnd:
            return Refuse("busy", "the line forwarded to is in do-not-disturb",
                          category="dnd")  # fmt: skip
        return Plan(route, self._ringing(theirs, hidden, path, **diverted),
                    busy_forward=bool(theirs.forward_busy))  # fmt: skip

    async def _mailbox(
        self, forwarding: LineInfo, target: ForwardTarget, condition: Condition, direction: str,
        path: tuple[str, ...], hidden: bool,
    ) -> Plan | None:  # fmt: skip
        """A forward to a mailbox: the line's own, or the customer's line's whose extension the
        target names. None (as if there were no forward): that extension is gone or is no longer
        a line's, or the mailbox is off (the caller would only hear the line's status)."""
        box: LineInfo | None = forwarding
        if target.mailbox_extension is not None:
            found = await self.registry.resolve_extension(
                forwarding.customer_id, target.mailbox_extension
            )
            box = found.line if found is not None and found.group is None else None
        if box is None or not await self.registry._mailbox_on(box.username):
            return None
        route = Admit(dial="", target_line=forwarding, direction=direction)
        features = CallFeatures(
            hidden=hidden, path=path, diverted_from=forwarding.main_number,
            divert_reason=condition.value,
        )  # fmt: skip
        return Plan(route, features, mailbox=box)

    async def _outside(
        self, caller: LineInfo | None, forwarding: LineInfo, e164: str,
        diverted: dict[str, str | None], caller_number: str, direction: str,
        path: tuple[str, ...], hidden: bool,
    ) -> Plan | Refuse:  # fmt: skip
        """A forward through the trunk: a call of the forwarding line, checked as one."""
        destination = destination_of(e164)
        rows = await self.registry._fetch(TRUNK_AND_DESTINATION, destination)
        trunk, listed, suspended = rows[0]
        if forwarding.main_number is None:
            return Refuse("rejected", "the forwarding line has no number to call out with",
                          category="policy")  # fmt: skip
        refusal = check_call(
            CallPolicyFacts(
                level=forwarding.policy_level, emergency=False, outbound=True,
                destination=destination, destination_listed=listed,
                destination_suspended=suspended,
            )
        )  # fmt: skip
        if refusal is not None:
            return replace(refusal, why=f"forward of {forwarding.username}: {refusal.why}")
        if trunk is None:
            return Refuse("congestion", "no trunk to the public network", category="no_trunk")
        # The carrier sees who is really calling (with the Diversion header naming the
        # forwarding line); a caller with no number of its own shows the forwarding line's.
        if caller is not None:
            shown = caller.main_number or forwarding.main_number
        else:
            shown = presentable(caller_number) or forwarding.main_number
        route = Admit(
            dial=f"PJSIP/{e164}@{TRUNK_PREFIX}{trunk}", target_line=forwarding,
            direction=direction, caller_id=shown,
        )  # fmt: skip
        features = CallFeatures(hidden=hidden, path=path, **diverted)
        return Plan(route, features, count_number=(forwarding, e164))

    # --- after the line was rung ----------------------------------------------------------
    async def after_dial(
        self, channel_id: str, status: str, path: tuple[str, ...]
    ) -> Plan | Refuse | None:
        """The line rung was busy, did not answer or is not registered: its forward for that,
        or None (the call ends with the line's status)."""
        condition = condition_of_dial_status(status)
        rows = await self.registry._fetch(CALL_OF_CHANNEL, self.registry.node, channel_id)
        if condition is None or not rows:
            return None
        caller_number, caller_id, callee_id, direction, group = rows[0]
        if callee_id is None or group is not None:
            return None
        lines = await self.lines([i for i in (caller_id, callee_id) if i])
        forwarding = lines.get(callee_id)
        if forwarding is None:
            return None
        text = (await self.features([callee_id])).get(callee_id, LineFeatures()).target(condition)
        if not text:
            return None
        return await self.follow(
            caller=lines.get(caller_id) if caller_id else None, forwarding=forwarding, text=text,
            condition=condition, caller_number=caller_number, direction=direction, path=path,
            hidden=False,  # already set on the channel, if it was
        )  # fmt: skip

    async def record(self, channel_id: str, plan: Plan, at: datetime) -> None:
        """Keep the forward for its CDR (centrex/features/cdr_legs.py); nothing if the call
        was not forwarded."""
        features = plan.features
        if not features.path:
            return
        line, group = plan.route.target_line, plan.route.group
        if plan.mailbox is not None:  # left as a message: the mailbox's line, nobody rung
            target, target_line, direction = VOICEMAIL_TARGET, plan.mailbox.id, "on-net"
        elif plan.count_number is not None:
            target, target_line, direction = plan.count_number[1], None, "outbound"
        elif line is not None:
            target, target_line, direction = line.main_number or line.username, line.id, "on-net"
        else:
            target, target_line, direction = str(group.id if group else ""), None, "on-net"
        await self.registry._fetch(
            RECORD_FORWARD, self.registry.node, channel_id, len(features.path),
            uuid.UUID(features.path[-1]), target, target_line, direction,
            features.divert_reason or Condition.unconditional.value, at,
        )  # fmt: skip

    async def forget_refusal(self, channel_id: str) -> None:
        await self.registry._fetch(FORGET_REFUSAL, self.registry.node, channel_id)

    async def move_callee(self, channel_id: str, line: LineInfo) -> bool:
        """The call now rings ``line`` instead: its leg replaces the forwarding line's, if it
        has room (False: at its limit)."""
        rows = await self.registry._fetch(
            FORWARD_LEG, self.registry.node, channel_id, line.id, line.main_number or line.username
        )
        return bool(rows[0][0])

    # --- feature codes --------------------------------------------------------------------
    async def run_code(self, caller: LineInfo, code: DialledCode) -> Refuse | Pickup | None:
        """Do what the code asks; None: done; a Refuse says why not; a Pickup names the call
        to take (the picker's leg already replaces the line it rang)."""
        if code.kind is CodeKind.forward_set:
            assert code.argument is not None
            try:
                target = parse_target(code.argument)
            except TargetError as exc:
                return Refuse("number_incomplete", str(exc), category="features")  # 484
            args = target_query_args(caller.id, target)
            rows = await self.registry._fetch(TARGET_FACTS, *args)
            facts = facts_of_row(rows[0])
            facts = TargetFacts(**{**facts.__dict__, "destination": args[3]})
            if why := target_refusal(target, facts):
                return Refuse("rejected", f"forward to {target.value}: {why}", category="features")
            await self._set(caller, "forward_unconditional", target.value)
        elif code.kind is CodeKind.forward_cancel:
            await self._set(caller, "forward_unconditional", None)
        elif code.kind in (CodeKind.dnd_on, CodeKind.dnd_off):
            await self._set(caller, "dnd", code.kind is CodeKind.dnd_on)
        elif code.kind is CodeKind.pickup:
            rows = await self.registry._fetch(
                RINGING_IN_CUSTOMER, self.registry.node, caller.customer_id, caller.id
            )
            if not rows:
                return Refuse("unallocated", "no line of the customer is ringing",
                              category="features")  # fmt: skip
            channel, endpoints = rows[0]
            moved = await self.registry._fetch(
                PICKUP_LEG, self.registry.node, channel, caller.id,
                caller.main_number or caller.username,
            )  # fmt: skip
            if not moved[0][0]:
                return Refuse("busy", "the picking line is at its limit", category="line_limit")
            return Pickup(channel, tuple(endpoints))
        return None

    async def _set(self, line: LineInfo, column: str, value: object) -> None:
        # The column is one of this module's literals, never input.
        await self.registry._fetch(SET_FEATURE.format(column=column), line.id, value)
