"""Whether a call may proceed given the calls already in progress: the two-call limit (art. 8).

Pure. The daemon gathers, inside one database transaction that locks the lines involved, how
many calls each line has in progress, and asks :func:`admit_call`; so N simultaneous attempts on
one line admit exactly ``limit`` of them, whichever daemon or node they arrive on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from centrex.core.routing import LineInfo, Refuse

# Asterisk's own backstop fires this long after the daemon's cutoff: normally the daemon cuts and
# records why; with the daemon dead, Asterisk still cuts, a moment later.
ASTERISK_BACKSTOP_S = 0.5


@dataclass(frozen=True)
class CallLimits:
    max_duration_s: int  # answered seconds before the call is cut
    asterisk_limit_ms: int  # the Dial L() limit, a backstop just after the daemon's own timer


def admit_call(
    caller: LineInfo | None, callee: LineInfo | None, in_progress: Mapping[uuid.UUID, int]
) -> Refuse | None:
    """None if the lines involved (one or two) have room for one more call, else why not."""
    if caller is not None and in_progress.get(caller.id, 0) >= caller.max_calls:
        return Refuse(
            "busy", f"caller line at its limit of {caller.max_calls} calls", category="line_limit"
        )  # 486
    if callee is not None and in_progress.get(callee.id, 0) >= callee.max_calls:
        return Refuse(
            "busy", f"called line at its limit of {callee.max_calls} calls", category="line_limit"
        )  # 486
    return None


def call_limits(default_max_s: int, *lines: LineInfo | None) -> CallLimits:
    """The strictest of the lines' maximum durations (each its override, else the platform's)."""
    effective = [ln.max_duration_s or default_max_s for ln in lines if ln is not None]
    max_s = min(effective) if effective else default_max_s
    return CallLimits(max_s, int((max_s + ASTERISK_BACKSTOP_S) * 1000))
