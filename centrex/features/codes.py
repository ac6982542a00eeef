"""Every feature code a line may dial: the one table (docs/features.md lists the same).

A code is handled by the call-control daemon when it is dialled (nothing in Asterisk's dialplan
knows them, so a code added here needs no reload of Asterisk). Codes start with ``*`` or ``#``,
which no number, extension or SIP username does, except the French privacy prefix ``3651``,
which is the public network's own (a 4-digit 3xxx short number is never an extension:
centrex/extensions/rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureCode:
    name: str
    dialled: str  # how it is dialled; <target> / <number> stand for what follows
    meaning: str
    owner: str  # the package that handles it ("reserved": taken, not handled yet)


FORWARD_SET = FeatureCode(
    "forward_set", "*21*<target>#",
    "forward every call to <target>: an extension, a number (national or E.164), or 'voicemail'",
    "centrex.features",
)  # fmt: skip
FORWARD_CANCEL = FeatureCode(
    "forward_cancel", "#21#", "cancel the unconditional forward", "centrex.features"
)
DND_ON = FeatureCode("dnd_on", "*78", "do-not-disturb on: calls get busy (or the busy forward)",
                     "centrex.features")  # fmt: skip
DND_OFF = FeatureCode("dnd_off", "*79", "do-not-disturb off", "centrex.features")
PICKUP = FeatureCode(
    "pickup", "*8", "answer a line of the same customer that is ringing", "centrex.features"
)
PRIVACY_PREFIX = FeatureCode(
    "privacy", "3651<number>",
    "this call only: the number is hidden from the callee (the carrier still gets it, Privacy: id)",
    "centrex.features",
)  # fmt: skip
VOICEMAIL = FeatureCode(
    "voicemail", "*98", "listen to and manage the line's mailbox (its PIN)", "centrex.voicemail"
)

#: All of them, in the order docs/features.md lists them. New codes go here (and in the docs);
#: *0-*7, *9x other than *98 and #xx are free.
CODES: tuple[FeatureCode, ...] = (
    FORWARD_SET, FORWARD_CANCEL, DND_ON, DND_OFF, PICKUP, PRIVACY_PREFIX, VOICEMAIL,
)  # fmt: skip

PRIVACY_DIGITS = "3651"
VOICEMAIL_TARGET = "voicemail"  # the forward target meaning "the line's mailbox"
