"""Line features, pure: what a forward target may be, which forward applies, loops, privacy,
and what a dialled feature code asks for. No I/O: the daemon and the API supply the facts."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from centrex.core.numbering import DialledKind, classify_dialled
from centrex.extensions.rules import is_extension
from centrex.features.codes import CODES, PRIVACY_DIGITS, VOICEMAIL_TARGET

# A forward followed through this many lines is given up as a loop even without a line seen
# twice (A -> B -> C -> D -> E -> F): no business needs more, and every hop is a lookup.
MAX_HOPS = 5
NO_ANSWER_S_DEFAULT = 20


class Condition(enum.StrEnum):
    """When a forward applies; the values are the Diversion header's reasons (RFC 5806)."""

    unconditional = "unconditional"
    busy = "user-busy"
    no_answer = "no-answer"
    unregistered = "unavailable"


class TargetKind(enum.StrEnum):
    extension = "extension"  # a line or ring group of the same customer
    number = "number"  # E.164: one of the platform's (on-net) or outside (through the trunk)
    voicemail = "voicemail"  # a mailbox: the line's own, or another line's of the customer


@dataclass(frozen=True)
class ForwardTarget:
    kind: TargetKind
    value: str  # the extension, the E.164 number, "voicemail" or "voicemail:<extension>"
    # voicemail: the extension of the line whose mailbox takes the call; None: the line's own.
    mailbox_extension: str | None = None


class TargetError(ValueError):
    """A forward target that cannot be one; the message says why."""


def parse_target(text: str) -> ForwardTarget:
    """``"201"``, ``"0145678901"``, ``"+442071234567"``, ``"voicemail"`` (the line's own
    mailbox) or ``"voicemail:201"`` (the mailbox of the customer's line 201) -> a target."""
    cleaned = re.sub(r"[\s.\-()]", "", text)  # "01 45 67 89 01" as people write numbers
    if cleaned.lower() == VOICEMAIL_TARGET:
        return ForwardTarget(TargetKind.voicemail, VOICEMAIL_TARGET)
    kind, colon, extension = cleaned.partition(":")
    if colon and kind.lower() == VOICEMAIL_TARGET:
        if not is_extension(extension):
            raise TargetError("'voicemail:' is followed by an extension of the customer's line")
        return ForwardTarget(TargetKind.voicemail, f"{VOICEMAIL_TARGET}:{extension}", extension)
    if is_extension(cleaned):
        return ForwardTarget(TargetKind.extension, cleaned)
    dialled = classify_dialled(cleaned)
    if dialled.kind is DialledKind.emergency:
        raise TargetError("an emergency number cannot be a forward target")
    if dialled.kind is not DialledKind.number or dialled.e164 is None:
        raise TargetError("an extension, a phone number or 'voicemail'")
    return ForwardTarget(TargetKind.number, dialled.e164)


@dataclass(frozen=True)
class LineFeatures:
    """One line's settings (defaults: nothing forwarded, disturb allowed, number shown)."""

    forward_unconditional: str | None = None
    forward_busy: str | None = None
    forward_no_answer: str | None = None
    forward_no_answer_s: int = NO_ANSWER_S_DEFAULT
    forward_unregistered: str | None = None
    dnd: bool = False
    privacy: bool = False
    last_emergency_at: datetime | None = None  # the line's last emergency call

    def target(self, condition: Condition) -> str | None:
        return {
            Condition.unconditional: self.forward_unconditional,
            Condition.busy: self.forward_busy,
            Condition.no_answer: self.forward_no_answer,
            Condition.unregistered: self.forward_unregistered,
        }[condition]

    @property
    def forwards_when_dialled(self) -> bool:
        """Whether the outcome of ringing the line (486, no answer, unreachable) matters."""
        return bool(self.forward_busy or self.forward_no_answer or self.forward_unregistered)


def forward_at_admission(features: LineFeatures) -> tuple[Condition, str] | None:
    """Before ringing: the unconditional forward; do-not-disturb is busy (its forward if any)."""
    if features.forward_unconditional:
        return Condition.unconditional, features.forward_unconditional
    if features.dnd:
        return (Condition.busy, features.forward_busy) if features.forward_busy else None
    return None


def in_emergency_callback(last_emergency_at: datetime | None, now: datetime, window_s: int) -> bool:
    """Whether a call from outside may be the emergency service calling back: the line called
    an emergency number less than ``window_s`` ago. Such a call rings the line itself: neither
    do-not-disturb nor a forward may keep it from the person who called for help."""
    if last_emergency_at is None:
        return False
    return timedelta(0) <= now - last_emergency_at <= timedelta(seconds=window_s)


# Dial()'s DIALSTATUS -> the forward it calls for.
_DIAL_STATUS = {
    "BUSY": Condition.busy,
    "NOANSWER": Condition.no_answer,
    "CHANUNAVAIL": Condition.unregistered,
}


def condition_of_dial_status(status: str) -> Condition | None:
    return _DIAL_STATUS.get(status)


_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def presentable(number: str) -> str | None:
    """A caller's number as sent on to the carrier by a forward: E.164 or nothing. What a
    carrier (or a phone) wrote as caller ID never reaches another carrier otherwise."""
    return number if _E164.fullmatch(number) else None


def is_loop(visited: tuple[str, ...], next_line: str) -> bool:
    """Forwarding to ``next_line`` after ``visited`` (the lines forwarded from, in order) goes
    round in a circle, or too far to be anything else."""
    return next_line in visited or len(visited) >= MAX_HOPS


# --- what a line dialled --------------------------------------------------------------------
class CodeKind(enum.StrEnum):
    forward_set = "forward_set"
    forward_cancel = "forward_cancel"
    dnd_on = "dnd_on"
    dnd_off = "dnd_off"
    pickup = "pickup"


@dataclass(frozen=True)
class DialledCode:
    kind: CodeKind
    argument: str | None = None  # the target of *21*<target>#


@dataclass(frozen=True)
class BadCode:
    why: str


_FORWARD_SET = re.compile(r"\*21\*([0-9+]{2,20}|voicemail)#")
_FIXED = {"#21#": CodeKind.forward_cancel, "*78": CodeKind.dnd_on, "*79": CodeKind.dnd_off,
          "*8": CodeKind.pickup}  # fmt: skip
# Codes of the table another package handles (the mailbox's *98): not this module's to refuse.
_ELSEWHERE = frozenset(c.dialled for c in CODES if c.owner != "centrex.features")


def parse_code(dialled: str) -> DialledCode | BadCode | None:
    """A feature code (codes.py), a malformed one (starts like a code, is none), or None: not
    a code at all, an ordinary call."""
    if not dialled.startswith(("*", "#")) or dialled in _ELSEWHERE:
        return None
    if dialled in _FIXED:
        return DialledCode(_FIXED[dialled])
    if match := _FORWARD_SET.fullmatch(dialled):
        return DialledCode(CodeKind.forward_set, match.group(1))
    return BadCode(f"{dialled[:24]!r} is no feature code")


def strip_privacy(dialled: str) -> tuple[bool, str]:
    """``3651`` + a number: (True, the number). The prefix alone, or before something that is
    not a number (an extension, a name), is not the privacy prefix."""
    rest = dialled[len(PRIVACY_DIGITS) :]
    if dialled.startswith(PRIVACY_DIGITS) and len(rest) >= 2 and rest.lstrip("+").isdigit():
        return True, rest
    return False, dialled


# --- whether a target may be set ------------------------------------------------------------
@dataclass(frozen=True)
class TargetFacts:
    """What the database says about a target, for :func:`target_refusal`."""

    names_line_itself: bool = False
    extension_exists: bool = False
    extension_is_line: bool = False  # a line's extension (not a ring group's): it has a mailbox
    on_platform: bool = False  # a number assigned on this platform (the call stays on-net)
    destination: str | None = None
    destination_listed: bool = False
    destination_suspended: bool = False
    policy_level: str = "none"  # the forwarding line's
    has_number: bool = True  # the forwarding line has a number to call out with


def target_refusal(target: ForwardTarget, facts: TargetFacts) -> str | None:
    """Why the line may not forward to ``target``, or None. An outside forward is a call of the
    forwarding line: it passes the line's own restrictions and the destination list."""
    from centrex.core.policy import CallPolicyFacts, check_call

    if target.kind is TargetKind.voicemail:
        # The line's own mailbox, or a line's of the customer (the line itself included).
        if target.mailbox_extension is None:
            return None
        if not facts.extension_exists:
            return f"no extension {target.mailbox_extension} in this customer"
        return None if facts.extension_is_line else "a ring group has no mailbox"
    if facts.names_line_itself:
        return "a line cannot forward to itself"
    if target.kind is TargetKind.extension and not facts.extension_exists:
        return f"no extension {target.value} in this customer"
    if target.kind is not TargetKind.number or facts.on_platform:
        return None
    if not facts.has_number:
        return "the line has no number to call out with, so it cannot forward outside"
    refusal = check_call(
        CallPolicyFacts(
            level=facts.policy_level, emergency=False, outbound=True,
            destination=facts.destination, destination_listed=facts.destination_listed,
            destination_suspended=facts.destination_suspended,
        )
    )  # fmt: skip
    return refusal.why if refusal else None


# --- what a call carries from its features ---------------------------------------------------
@dataclass(frozen=True)
class CallFeatures:
    """What the daemon sets on a call's channel besides where it goes."""

    hidden: bool = False  # the caller's number withheld from the callee (3651, or the line's)
    diverted_from: str | None = None  # the forwarding line's number: the Diversion header
    divert_reason: str | None = None  # a Condition value
    watch: bool = False  # the line rung forwards on busy / no answer / unregistered
    ring_timeout_s: int | None = None  # its no-answer delay
    path: tuple[str, ...] = ()  # the lines forwarded from so far (ids), for loop detection
