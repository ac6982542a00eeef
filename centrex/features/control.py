"""The call-control daemon's part of line features (issue 15): a mixin of
:class:`centrex.control.daemon.CallControl`, kept here so the daemon itself only calls in.

Feature codes dialled by a line, the channel settings a call's features need (privacy, the
Diversion header, the forwards that wait for the line's answer), and the forward decided when
the line rung was busy, did not answer or is not registered (the dialplan sends the call back
to Stasis with ``forward,<DIALSTATUS>,<path>``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from centrex import metrics
from centrex.asterisk.errors import AsteriskError
from centrex.core.routing import Refuse
from centrex.features.call_path import LOOP, Pickup, Plan
from centrex.features.rules import BadCode, CallFeatures, DialledCode

if TYPE_CHECKING:
    from centrex.control.daemon import CallControl

log = logging.getLogger("centrex.control.daemon")

FORWARD_ARG = "forward"  # Stasis argument of a line rung that forwards on its outcome
FEATURES_CONTEXT = "centrex-features"  # feature codes' endings, pickup, forwarding loops
DIAL_CONTEXT = "centrex-dial"  # as the daemon's (its status-<DIALSTATUS> endings)
VOICEMAIL_VAR = "CENTREX_VOICEMAIL"  # as the daemon's: the mailbox centrex-voicemail opens
VOICEMAIL_CONTEXT = "centrex-voicemail"


class FeatureControl:
    async def _apply_features(
        self: CallControl, channel_id: str, features: CallFeatures | None
    ) -> None:
        """Privacy, the Diversion header of a forwarded call, and the forwards that wait for
        the line's answer; nothing (no round trip) for a call with none of them."""
        if features is None:
            return
        if features.hidden:
            # Asterisk sends the callee "Anonymous"; a trunk (trust_id_outbound) still gets
            # the number in P-Asserted-Identity, with Privacy: id.
            await self.ari.set_variable(channel_id, "CALLERID(pres)", "prohib")
        if features.diverted_from:
            # Copied by Dial() to the channel it calls; res_pjsip_diversion writes it out. "i":
            # no 181 Call Is Being Forwarded to the caller (phones need not know).
            await self.ari.set_variable(
                channel_id, "REDIRECTING(from-num,i)", features.diverted_from
            )
            await self.ari.set_variable(
                channel_id, "REDIRECTING(reason,i)", features.divert_reason or "unknown"
            )
            await self.ari.set_variable(channel_id, "REDIRECTING(count,i)", str(len(features.path)))
        if features.watch or features.path:
            await self.ari.set_variable(
                channel_id, "CENTREX_FORWARD", "yes" if features.watch else ""
            )
            await self.ari.set_variable(channel_id, "CENTREX_FWD_PATH", ":".join(features.path))

    async def _to_features(self: CallControl, channel_id: str, extension: str) -> None:
        try:
            await self.ari.continue_in_dialplan(channel_id, FEATURES_CONTEXT, extension)
        except AsteriskError:
            await self._hangup_quietly(channel_id, "congestion")

    async def _feature_code(
        self: CallControl, channel_id: str, endpoint: str, code: DialledCode | BadCode
    ) -> None:
        """A feature code dialled by a line: done (a confirmation tone, then hang-up), or
        refused with a SIP code that says why."""
        if isinstance(code, BadCode):
            log.info(
                "call %s: %s dialled a malformed feature code (%s)", channel_id, endpoint, code.why
            )
            await self._hangup_quietly(channel_id, "number_incomplete")  # 484
            return
        try:
            line = (await self._within_deadline(self.registry.directory({endpoint}))).get(endpoint)
            outcome = None
            if line is not None:
                outcome = await self._within_deadline(self.registry.features.run_code(line, code))
        except Exception:
            log.exception("call %s: feature code %s not done; refusing", channel_id, code.kind)
            await self._hangup_quietly(channel_id, "congestion")
            return
        if line is None:
            await self._hangup_quietly(channel_id, "rejected")
        elif isinstance(outcome, Pickup):
            ringing = outcome.ringing_endpoints
            log.info("call %s: %s picks up %s", channel_id, endpoint, ",".join(ringing))
            # PickupChan takes the first of these channel-name prefixes that rings (a ring
            # group's members: any of them; Dial then cancels the others).
            await self.ari.set_variable(
                channel_id, "CENTREX_PICKUP", "&".join(f"PJSIP/{e}-" for e in ringing)
            )
            await self._to_features(channel_id, "pickup")
        elif outcome is not None:
            log.info(
                "call %s: feature code %s of %s refused: %s",
                channel_id,
                code.kind,
                endpoint,
                outcome.why,
            )
            metrics.CALLS_REFUSED.labels(outcome.category).inc()
            await self._hangup_quietly(channel_id, outcome.reason)
        else:
            log.info("call %s: feature code %s done for %s", channel_id, code.kind, endpoint)
            await self._to_features(channel_id, "done")

    async def handle_forward(
        self: CallControl, channel: dict[str, Any], status: str, path_text: str
    ) -> None:
        """The line rung was busy, did not answer or is not registered, and forwards for it."""
        channel_id = channel["id"]
        dialled = channel.get("dialplan", {}).get("exten", "")
        path = tuple(p for p in path_text.split(":") if p)
        features = self.registry.features
        try:
            plan = await self._within_deadline(features.after_dial(channel_id, status, path))
            route = None if plan is None or isinstance(plan, Refuse) else plan.route
            if isinstance(plan, Plan) and plan.mailbox is not None:
                # To a mailbox: the call stays counted as it is (the line rung, the caller).
                await features.record(channel_id, plan, datetime.now(UTC))
            elif plan is not None and route is not None and route.group is None:
                line = route.target_line
                forwarder = plan.features.path[-1] if plan.features.path else None
                if line is not None and str(line.id) != forwarder:
                    if not await self._within_deadline(features.move_callee(channel_id, line)):
                        plan = Refuse("busy", "the line forwarded to is at its limit")
                if not isinstance(plan, Refuse):
                    if plan.count_number is not None:
                        await self.registry._count_number(*plan.count_number, datetime.now(UTC))
                    await features.record(channel_id, plan, datetime.now(UTC))
                    limits = await self._within_deadline(self.registry.limits_of(channel_id))
        except Exception:
            log.exception("call %s: forward after %s not decided; ending", channel_id, status)
            await self._hangup_quietly(channel_id, "congestion")
            return
        if isinstance(plan, Refuse):
            log.info("call %s: forward after %s refused: %s", channel_id, status, plan.why)
            if plan.category == LOOP:
                await self._to_features(channel_id, "loop")
            else:
                await self._hangup_quietly(channel_id, plan.reason)
            return
        if plan is None or route is None or route.group is not None:
            # No forward for this (or to a ring group, which is not rung this late): the call
            # ends with the line's own status.
            with contextlib.suppress(AsteriskError):
                await self.ari.continue_in_dialplan(channel_id, DIAL_CONTEXT, f"status-{status}")
            return
        if plan.mailbox is not None:
            log.info("call %s: line rung %s, forwarded to the mailbox of %s", channel_id, status,
                     plan.mailbox.username)  # fmt: skip
            try:
                await self.ari.set_variable(channel_id, VOICEMAIL_VAR, plan.mailbox.username)
                await self.ari.continue_in_dialplan(channel_id, VOICEMAIL_CONTEXT, "s")
            except AsteriskError as exc:
                log.info("call %s: gone during the forward (%s); released", channel_id, exc)
                await self.end_call(channel_id)
            return
        log.info("call %s: line rung %s, forwarded to %s", channel_id, status, route.dial)
        call = replace(
            limits, dial=route.dial, hunt=False, caller_id=route.caller_id,
            ring_timeout_s=plan.features.ring_timeout_s, features=plan.features,
        )  # fmt: skip
        try:
            if route.caller_id:
                await self.ari.set_variable(channel_id, "CALLERID(all)", f"<{route.caller_id}>")
            await self._apply_features(channel_id, plan.features)
            if not plan.features.watch:
                await self.ari.set_variable(channel_id, "CENTREX_FORWARD", "")
            await self._dial(channel_id, dialled, route.dial, call)
        except AsteriskError as exc:
            log.info("call %s: gone during the forward (%s); released", channel_id, exc)
            await self.end_call(channel_id)
