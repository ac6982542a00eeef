"""A blind transfer's admission: the transferee comes back into Stasis (``centrex-transfer``,
asterisk-config/extensions.conf.j2) and its new call is decided like any call the transferer
places (routing, destination policy, fraud count), then admitted in one statement
(``centrex_transfer_call``, migration 0020) that replaces the call being transferred.

Thin adapter: the rules are :mod:`.rules`; the lookups are the call path's own
(:class:`~centrex.control.call_registry.CallRegistry`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from centrex.asterisk.pjsip_objects import TRUNK_PREFIX
from centrex.control.call_registry import TRUNK_AND_DESTINATION, AdmittedCall, CallRegistry
from centrex.core.admission import ASTERISK_BACKSTOP_S, CallLimits, call_limits
from centrex.core.numbering import DialledKind, classify_dialled
from centrex.core.policy import CallPolicyFacts, PolicyLevel, check_call, destination_of
from centrex.core.routing import LineInfo, Refuse, route_call
from centrex.features.transfers.rules import (
    CallFacts,
    asterisk_limit_ms,
    plan_merge,
    plan_transfer,
    segment_key,
)

# The context a transferee is sent to (TRANSFER_CONTEXT, set in centrex-dial).
TRANSFER_CONTEXT = "centrex-transfer"
TRANSFER_ARG = "transfer"  # Stasis argument of a transferee coming back

OLD_CALL = """
    SELECT c.id, c.direction, c.caller_line_id, c.callee_line_id, c.deadline_at,
           coalesce(array_agg(g.line_id) FILTER (WHERE g.role = 'payer'), ARRAY[]::uuid[]),
           c.transfers, c.caller, c.callee, c.max_duration_s
    FROM active_calls c LEFT JOIN active_call_legs g ON g.call_id = c.id
    WHERE c.node = $1 AND c.channel_id = $2
    GROUP BY c.id
"""
CALLS_BY_KEY = """
    SELECT c.id, c.direction, c.caller_line_id, c.callee_line_id, c.deadline_at,
           coalesce(array_agg(g.line_id) FILTER (WHERE g.role = 'payer'), ARRAY[]::uuid[]),
           c.transfers, c.caller, c.callee, c.max_duration_s, c.channel_id, c.answered_at,
           c.started_at
    FROM active_calls c LEFT JOIN active_call_legs g ON g.call_id = c.id
    WHERE c.node = $1 AND c.channel_id = ANY($2::text[])
    GROUP BY c.id
"""
MERGE = (
    "SELECT centrex_merge_transfer($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
    " $15, $16, $17, $18)"
)
TRANSFER = (
    "SELECT centrex_transfer_call($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
    " $15, $16, $17)"
)
RECORD_REFUSAL = (
    "INSERT INTO call_attempts (node, channel_id, call_id, outcome, direction, caller, callee,"
    " caller_line_id, callee_line_id, ring_group_id, max_duration_s, decided_at, reason,"
    " transfer_of, paid_by_line_id)"
    " VALUES ($1, $2, $3, 'refused_policy', $4, $5, $6, $7, $8, NULL, 0, $9, $10, $11, $12)"
    " ON CONFLICT (node, channel_id) DO NOTHING"
)


@dataclass(frozen=True)
class TransferredCall:
    """Admitted: dial ``call`` from the transferee's channel; ``replaces`` is the key channel of
    the call it replaced (the transferee's own, or the transferer's)."""

    call: AdmittedCall
    deadline_at: datetime | None  # kept from the call it continues; None: from the answer
    transfer_of: uuid.UUID


@dataclass(frozen=True)
class JoinedCall:
    """An attended transfer's two calls, now one, keyed by the transferee's channel."""

    call_id: uuid.UUID
    channel_id: str
    max_duration_s: int
    answered_at: datetime | None
    deadline_at: datetime | None
    direction: str
    transfer_of: uuid.UUID
    caller_line_id: uuid.UUID | None = None  # the transferee's line
    callee_line_id: uuid.UUID | None = None  # the target's line


class TransferService:
    def __init__(self, registry: CallRegistry) -> None:
        self.registry = registry

    async def decide(
        self, *, channel_id: str, linkedid: str, transferee: str | None, transferer: str | None,
        dialled: str, now: datetime,
    ) -> TransferredCall | Refuse:  # fmt: skip
        r = self.registry
        rows = await r._fetch(OLD_CALL, r.node, linkedid)
        if not rows:
            # The call's facts (who pays, its deadline) are lost: fail closed.
            return Refuse("congestion", "transfer of a call no longer recorded", category="error")
        (old_id, direction, caller_line, callee_line, deadline, payers, transfers, old_caller,
         old_callee, _max) = rows[0]  # fmt: skip
        old = CallFacts(old_id, direction, caller_line, callee_line, deadline, tuple(payers),
                        transfers)  # fmt: skip
        key = segment_key(linkedid, transfers + 1)
        what = classify_dialled(dialled)
        names = {n for n in (transferer, transferee) if n and not n.startswith(TRUNK_PREFIX)}
        if what.kind is DialledKind.line:
            names.add(dialled)
        by_name = await r.directory(names)
        r_line = by_name.get(transferer or "")
        p_line = by_name.get(transferee or "")
        transferee_was_caller = channel_id == linkedid
        p_text = old_caller if transferee_was_caller else old_callee
        if r_line is None:
            # A carrier's REFER, or one from a channel we cannot name: nobody to route it as.
            return await self._refused(key, old, p_line, None, p_text, dialled, now, Refuse(
                "rejected", "transfer asked by something that is not a line",
                category="not_a_line"))  # fmt: skip
        target = by_name.get(dialled) if what.kind is DialledKind.line else None
        number = extension = None
        if what.kind is DialledKind.number and what.e164:
            number = await r.resolve_number(what.e164)
        if what.kind is DialledKind.extension:
            extension = await r.resolve_extension(r_line.customer_id, what.text)
        emergency = what.kind is DialledKind.emergency
        trunk, destination, listed, suspended = None, None, False, False
        if number is None and what.kind in (DialledKind.number, DialledKind.emergency):
            destination = destination_of(what.e164) if what.e164 and not emergency else None
            name, listed, suspended = (await r._fetch(TRUNK_AND_DESTINATION, destination))[0]
            trunk = f"{TRUNK_PREFIX}{name}" if name else None
        # Routed as a call the transferer places: its customer's extensions, its caller ID out.
        route = route_call(
            caller=r_line, from_trunk=False, dialled=what, target=target,
            trunk_endpoint=trunk, number=number, extension=extension,
        )  # fmt: skip
        if isinstance(route, Refuse):
            return await self._refused(key, old, p_line, None, p_text, dialled, now, route)
        if route.group is not None:
            return await self._refused(key, old, p_line, None, p_text, dialled, now, Refuse(
                "unallocated", "a transfer to a ring group is not supported",
                category="no_route"))  # fmt: skip
        refusal = check_call(
            CallPolicyFacts(
                level=r_line.policy_level, emergency=emergency,
                outbound=route.direction == "outbound", destination=destination,
                destination_listed=listed, destination_suspended=suspended,
            )
        )  # fmt: skip
        t_line = route.target_line
        if refusal is None and t_line is not None and t_line.policy_level == PolicyLevel.suspended:
            refusal = Refuse("rejected", "the target line is suspended", category="policy")
        if refusal is not None:
            return await self._refused(key, old, p_line, t_line, p_text, dialled, now, refusal)
        plan = plan_transfer(
            old, transferee=p_line, transferee_was_caller=transferee_was_caller,
            transferer=r_line, target=t_line,
        )  # fmt: skip
        if isinstance(plan, Refuse):
            return await self._refused(key, old, p_line, t_line, p_text, dialled, now, plan)
        paying = r_line if plan.paid_by == r_line.id else None
        limits = call_limits(r.default_max_s, p_line, t_line, paying)
        call_id = uuid.uuid4()
        callee_text = what.e164 or (t_line.main_number if t_line else None) or dialled
        rows = await r._fetch(
            TRANSFER, old.call_id, call_id, r.node, channel_id, key, plan.direction,
            p_text, callee_text, plan.caller_line_id, plan.callee_line_id, list(plan.payers),
            plan.paid_by, limits.max_duration_s, now, plan.deadline_at, plan.transfers, emergency,
        )  # fmt: skip
        result = json.loads(rows[0][0])
        if result.get("gone"):
            return Refuse("congestion", "transfer of a call no longer recorded", category="error")
        if not result["admitted"]:
            return Refuse("busy", "transfer target at its limit", category="line_limit")
        if route.direction == "outbound" and what.e164:
            await r._count_number(r_line, what.e164, now)  # the transferer's distinct numbers
        limit_ms = asterisk_limit_ms(
            limits.max_duration_s, plan.deadline_at, now, ASTERISK_BACKSTOP_S
        )
        admitted = AdmittedCall(
            call_id, route.dial, CallLimits(limits.max_duration_s, limit_ms), route.caller_id,
            direction=plan.direction, mailbox=t_line.username if t_line else None,
        )  # fmt: skip
        return TransferredCall(admitted, plan.deadline_at, old.call_id)

    async def _refused(
        self, key: str, old: CallFacts, p_line: LineInfo | None, t_line: LineInfo | None,
        p_text: str, dialled: str, now: datetime, refusal: Refuse,
    ) -> Refuse:  # fmt: skip
        """Recorded for the CDR (this part of the call, refused); the call row is left as it
        is: the transferee's channel is hung up and releases it."""
        r = self.registry
        await r._fetch(
            RECORD_REFUSAL, r.node, key, uuid.uuid4(), "on-net", p_text, dialled[:64],
            p_line.id if p_line else None, t_line.id if t_line else None, now, refusal.why,
            old.call_id, None,
        )  # fmt: skip
        return refusal

    async def join(
        self, *, transferer: tuple[str, str], transferer2: str, transferee: str, target: str,
        now: datetime,
    ) -> JoinedCall | None:  # fmt: skip
        """An attended transfer Asterisk has done: the call the transferer was in with the
        transferee (keyed by one of ``transferer``: its channel and linked id, or by the
        transferee's channel) and the one with the target (keyed by ``transferer2`` or the
        target's channel) become one call. None: they are not both recorded here."""
        r = self.registry
        keys = [*transferer, transferee, transferer2, target]
        rows = await r._fetch(CALLS_BY_KEY, r.node, keys)
        firsts = [row for row in rows if row[10] in (*transferer, transferee)]
        seconds = [row for row in rows if row[10] in (transferer2, target)]
        if len(firsts) != 1 or len(seconds) != 1:
            return None
        first, second = firsts[0], seconds[0]

        def facts(row: Any) -> CallFacts:
            return CallFacts(row[0], row[1], row[2], row[3], row[4], tuple(row[5]), row[6])

        transferee_was_caller = first[10] == transferee
        target_was_caller = second[10] == target
        plan = plan_merge(
            facts(first), transferee_was_caller=transferee_was_caller, second=facts(second),
            target_was_caller=target_was_caller,
        )  # fmt: skip
        max_s = min(first[9], second[9])
        answers = [a for a in (first[11], second[11]) if a is not None]
        answered_at = min(answers) if answers else None
        call_id = uuid.uuid4()
        rows = await r._fetch(
            MERGE, first[0], second[0], call_id, r.node, transferee, plan.direction,
            first[7] if transferee_was_caller else first[8],
            second[7] if target_was_caller else second[8],
            plan.caller_line_id, plan.callee_line_id, list(plan.payers), max_s, now,
            answered_at, plan.deadline_at, plan.transfers,
            # The CDR part's key: the transferer's first channel's linked id is its call's.
            segment_key(transferer[1], plan.transfers), plan.paid_by,
        )  # fmt: skip
        if not rows[0][0]:
            return None
        return JoinedCall(call_id, transferee, max_s, answered_at, plan.deadline_at,
                          plan.direction, first[0], plan.caller_line_id,
                          plan.callee_line_id)  # fmt: skip
