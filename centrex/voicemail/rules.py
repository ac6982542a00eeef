"""Voicemail's rules, pure: PINs, greetings, when a call goes to the mailbox, what a message
file says, how long messages are kept, when a failed email is tried again. No I/O here."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from centrex.core.asterisk_wav import playable_seconds
from centrex.features.codes import VOICEMAIL

#: Asterisk's voicemail context every line's mailbox lives in (voicemail.conf, the realtime
#: view): a mailbox is named after its line's SIP username, ``<username>@centrex``.
MAILBOX_CONTEXT = "centrex"
#: What a line dials to listen to and manage its mailbox (the one list of feature codes is
#: centrex/features/codes.py).
VOICEMAIL_CODE = VOICEMAIL.dialled
#: How ``Dial()`` ended for the call to go to the callee's mailbox: nobody answered within the
#: ring timeout, the phone said busy, or no phone is registered.
VOICEMAIL_DIAL_STATUSES = ("NOANSWER", "BUSY", "CHANUNAVAIL")
#: The folders a message can be in: new, and listened to (VoiceMailMain moves it).
FOLDERS = ("INBOX", "Old")

PIN_MIN, PIN_MAX = 4, 8
MIN_GREETING_S = 0.5
EMAIL_RETRY_MAX_S = 3600.0

#: What a PIN and an address look like (the API's schema says so too).
PIN_PATTERN = rf"^[0-9]{{{PIN_MIN},{PIN_MAX}}}$"
EMAIL_PATTERN = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
_EMAIL = re.compile(EMAIL_PATTERN)
_MSG_ID = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def mailbox_of(username: str) -> str:
    return f"{username}@{MAILBOX_CONTEXT}"


def goes_to_voicemail(dial_status: str, mailbox_enabled: bool) -> bool:
    """Whether a call to a line that ended its ringing with ``dial_status`` is taken by the
    line's mailbox. A disabled mailbox: the call ends as it did before voicemail existed."""
    return mailbox_enabled and dial_status in VOICEMAIL_DIAL_STATUSES


def busy_goes_to_mailbox(*, caller_has_room: bool, ring_group: bool, mailbox_on: bool) -> bool:
    """A call refused because the called line is at its simultaneous-call limit goes to that
    line's mailbox instead, counted on the caller's line alone, when the mailbox is on. Not
    when the caller itself is full (the call cannot be admitted at all), nor for a ring group
    (a group has no mailbox)."""
    return caller_has_room and not ring_group and mailbox_on


def pin_error(pin: str) -> str | None:
    """Why ``pin`` cannot be a mailbox PIN (None: it can). Digits only (a phone's keypad),
    4 to 8 of them, and not one a stranger tries first."""
    if not pin.isascii() or not pin.isdigit():
        return "must be digits only"
    if not PIN_MIN <= len(pin) <= PIN_MAX:
        return f"must be {PIN_MIN} to {PIN_MAX} digits"
    if len(set(pin)) == 1:
        return "must not be one digit repeated"
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    if steps in ({1}, {9}):
        return "must not be a run of consecutive digits"
    return None


def email_error(address: str) -> str | None:
    """Why ``address`` cannot receive the messages (None: it can). Plain ``local@domain``:
    no display name, no line break or comma that would add a header or a recipient."""
    if len(address) > 254 or not _EMAIL.match(address):
        return "must be a plain address, local@domain"
    return None


def msg_id_error(msg_id: str) -> str | None:
    return None if _MSG_ID.match(msg_id) else "not a message id"


@dataclass(frozen=True)
class Greeting:
    seconds: float


def greeting_error(data: bytes, max_s: int) -> tuple[Greeting | None, str | None]:
    """The greeting a line uploaded, or why it is refused (:mod:`centrex.core.asterisk_wav`)."""
    seconds, error = playable_seconds(data, min_s=MIN_GREETING_S, max_s=max_s)
    if seconds is None:
        return None, error
    return Greeting(seconds), None


@dataclass(frozen=True)
class MessageInfo:
    """What app_voicemail writes in a message's ``msgNNNN.txt``."""

    msg_id: str
    caller_id: str
    received_at: datetime
    duration_s: int


def parse_message(text: str) -> MessageInfo | None:
    """A message's metadata from its ``.txt``; None if it is not complete (still being
    written, or not app_voicemail's)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith((";", "[")):
            fields[key.strip()] = value.strip()
    try:
        msg_id = fields["msg_id"]
        origtime = int(fields["origtime"])
        duration = int(fields.get("duration", "0"))
    except (KeyError, ValueError):
        return None
    if msg_id_error(msg_id):
        return None
    return MessageInfo(
        msg_id, fields.get("callerid", ""), datetime.fromtimestamp(origtime, UTC), duration
    )


def expired(received_at: datetime, now: datetime, retention_days: int) -> bool:
    """A message is deleted once it is older than the retention."""
    return now - received_at > timedelta(days=retention_days)


def email_retry_after(attempts: int, first_s: float) -> float:
    """Seconds before the next try of an email that failed ``attempts`` times (>= 1):
    doubling, so a long SMTP outage is not hammered, capped at an hour."""
    return min(first_s * 2 ** max(attempts - 1, 0), EMAIL_RETRY_MAX_S)
