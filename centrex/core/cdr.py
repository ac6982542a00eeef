"""Call detail records from Asterisk's channel events: pure, no I/O.

Asterisk writes one CSV line per CEL event (``asterisk-config/cel_custom.conf.j2``) to a journal
file that outlives the daemon. :class:`CallAssembler` folds those events, call by call (one
Asterisk *linked id* = one call attempt from the customer's side), into :class:`EndedCall`
once Asterisk says the call is over (``LINKEDID_END``); :func:`disposition` and
:func:`sip_code` say how it ended. The shipper (``centrex/cdr/``) adds what the daemon decided
(``call_attempts``) and writes the records.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from centrex.core.numbering import EMERGENCY_NUMBERS, classify_dialled
from centrex.core.policy import country_code_of, destination_of, regions_of
from centrex.core.routing import endpoint_of_channel

# Column order of a journal record (cel_custom.conf.j2).
CEL_COLUMNS = (
    "event", "time", "uniqueid", "linkedid", "channel", "exten", "context", "caller", "extra",
    "userfield",
)  # fmt: skip
#: First column of a record in the current format, where the values a caller controls are
#: base64 (of "." and the value). A record without it was written by the mapping before, its
#: values as they came: still read as such after an upgrade.
CEL_FORMAT = "v2"
CEL_ENCODED = frozenset({"channel", "exten", "caller", "extra", "userfield"})


class Disposition:
    answered = "answered"
    busy = "busy"
    no_answer = "no_answer"
    failed = "failed"
    refused_limit = "refused_limit"  # the line's simultaneous-call limit (art. 8)
    refused_policy = "refused_policy"  # destination or fraud policy (art. 6, 16, 19)
    cut = "cut"  # hung up at the maximum duration (art. 8)
    voicemail = "voicemail"  # the called line's mailbox took the call (docs/voicemail.md)

    all = (answered, busy, no_answer, failed, refused_limit, refused_policy, cut, voicemail)


#: What the dialplan writes in the caller's CHANNEL(userfield) when a mailbox takes the call
#: (asterisk-config/extensions.conf.j2, centrex-voicemail).
VOICEMAIL_USERFIELD = "voicemail"


@dataclass(frozen=True)
class CelEvent:
    event: str
    at: float  # epoch seconds
    uniqueid: str
    linkedid: str
    channel: str
    exten: str
    context: str
    caller: str
    extra: dict[str, object]
    userfield: str

    @classmethod
    def from_row(cls, row: list[str]) -> CelEvent:
        """One journal record; ValueError for a line that is not one (Asterisk cut short by a
        crash, a record from an unknown format)."""
        if len(row) == len(CEL_COLUMNS) + 1 and row[0] == CEL_FORMAT:
            values = dict(zip(CEL_COLUMNS, row[1:], strict=True))
            for name in CEL_ENCODED:
                values[name] = _decoded(values[name])
        elif len(row) == len(CEL_COLUMNS) and row[0] != CEL_FORMAT:
            values = dict(zip(CEL_COLUMNS, row, strict=True))
        else:
            raise ValueError(f"not a CEL record: {len(row)} columns")
        if not (values["event"] and values["uniqueid"] and values["linkedid"]):
            raise ValueError("not a CEL record: no event or channel")
        extra: dict[str, object] = {}
        if values["extra"].startswith("{"):
            try:
                extra = json.loads(values["extra"])
            except ValueError:
                extra = {}
        return cls(
            event=values["event"],
            at=float(values["time"]),
            uniqueid=values["uniqueid"],
            linkedid=values["linkedid"],
            channel=values["channel"],
            exten=values["exten"],
            context=values["context"],
            caller=values["caller"],
            extra=extra,
            userfield=values["userfield"],
        )


def _decoded(value: str) -> str:
    """A value as cel_custom.conf.j2 encodes it: base64 of "." and the value. Bytes that are not
    UTF-8 (a device may send any) become U+FFFD: the value is a record's text, not evidence of
    the bytes."""
    raw = base64.b64decode(value, validate=True)  # binascii.Error is a ValueError
    if not raw.startswith(b"."):
        raise ValueError("not a CEL record: a value without its prefix")
    return raw[1:].decode("utf-8", "replace")


def parse_line(line: str) -> CelEvent:
    try:
        row = next(csv.reader([line]))
    except csv.Error as exc:  # not a ValueError: it would escape every caller's skip path
        raise ValueError(f"not a CEL record: {exc}") from None
    return CelEvent.from_row(row)


@dataclass
class EndedCall:
    """Everything Asterisk said about one call attempt, in the caller's channel's terms."""

    linkedid: str
    channel: str = ""  # the caller's channel (its uniqueid is the linked id)
    dialled: str = ""  # the extension it dialled
    caller_number: str = ""
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    cause: int | None = None  # Q.850 hangup cause of the caller's channel
    dial_status: str = ""
    answered_by: str = ""  # channel name of the other party that answered, if any
    first_position: Any = 0  # journal position of its first event (anything ordered)
    userfield: str = ""
    last_at: float | None = None  # its latest event
    # Its Asterisk stopped before journalling its end: ended at the last thing known.
    end_not_journalled: bool = False
    # --- transfers (docs/transfers.md): after a blind transfer the call goes on as a part of
    # its own, a CDR of its own: ``linkedid`` is then "<linked id>/t<n>", its caller the
    # transferee's channel, its answer the target's.
    caller_uniqueid: str = ""  # the channel whose hangup ends it ("": the linked id)
    transfers: int = 0
    shipped: bool = False  # ended by an attended transfer: its later events are not its own

    @property
    def start(self) -> datetime:
        return _dt(self.started_at if self.started_at is not None else self.ended_at or 0.0)

    @property
    def answer(self) -> datetime | None:
        return _dt(self.answered_at) if self.answered_at is not None else None

    @property
    def end(self) -> datetime:
        return _dt(self.ended_at if self.ended_at is not None else self.started_at or 0.0)

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.ended_at or 0.0) - (self.started_at or self.ended_at or 0.0))

    @property
    def billed_s(self) -> int:
        """Answered seconds, to the nearest second (half up). Rating increments (per second,
        per minute started) are the biller's business; this is the measured duration."""
        if self.answered_at is None or self.ended_at is None:
            return 0
        return math.floor(max(0.0, self.ended_at - self.answered_at) + 0.5)


def transfer_part_key(linkedid: str, transfers: int) -> str:
    """The CDR key of the n-th transferred part of a call: the daemon records its decision
    under the same key (centrex/features/transfers/rules.py, ``segment_key``)."""
    return f"{linkedid}/t{transfers}"


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


@dataclass
class CallAssembler:
    """Folds journal events into ended calls. Holds only calls still in progress."""

    open_calls: dict[str, EndedCall] = field(default_factory=dict)
    skipped: int = 0  # journal lines that were not a record (see feed_all)
    # --- attended transfers (docs/transfers.md): the linked id of every channel seen in an
    # open call, and the joined parts by their two channels' uniqueids.
    linked_of: dict[str, str] = field(default_factory=dict)
    uniqueids_of: dict[str, set[str]] = field(default_factory=dict)  # the reverse
    joined: dict[str, EndedCall] = field(default_factory=dict)

    def feed(self, event: CelEvent, position: Any) -> list[EndedCall]:
        """One event at journal ``position``; returns the calls it ended."""
        part = self.joined.get(event.uniqueid)
        if part is not None and event.event == "HANGUP":
            # A joined part ends with the first of its two channels (the bridge ends the other).
            for uid in [u for u, p in self.joined.items() if p is part]:
                del self.joined[uid]
            part.ended_at = event.at
            cause = str(event.extra.get("hangupcause", ""))
            part.cause = int(cause) if cause.isdigit() else None
            return [part, *self._feed(event, position)]
        if event.event == "ATTENDEDTRANSFER":
            return self._join(event, position)
        return self._feed(event, position)

    def _join(self, event: CelEvent, position: Any) -> list[EndedCall]:
        """Asterisk joined the transferer's two calls' other parties: both calls end here; the
        joined part, answered as it starts, ends with the first of its channels' hangups."""
        first = self.open_calls.get(event.linkedid)
        second = self.open_calls.get(self.linked_of.get(str(event.extra.get("channel2_uniqueid"))))
        if first is None or second is None or first is second:
            return []
        transferee = str(event.extra.get("transferee_channel_uniqueid") or "")
        target = str(event.extra.get("transfer_target_channel_uniqueid") or "")
        part = EndedCall(
            transfer_part_key(event.linkedid, first.transfers + 1),
            channel=str(event.extra.get("transferee_channel_name") or ""),
            answered_by=str(event.extra.get("transfer_target_channel_name") or ""),
            started_at=event.at, answered_at=event.at, last_at=event.at,
            first_position=min(first.first_position, second.first_position),
            caller_uniqueid=transferee, transfers=first.transfers + 1,
        )  # fmt: skip
        self.joined[transferee] = self.joined[target] = part
        ended = []
        for call in (first, second):
            if call.ended_at is None:
                call.ended_at = event.at
            if not call.shipped:
                call.shipped = True
                ended.append(call)
        return ended

    def _feed(self, event: CelEvent, position: Any) -> list[EndedCall]:
        call = self.open_calls.get(event.linkedid)
        if call is None:
            call = EndedCall(event.linkedid, first_position=position)
            self.open_calls[event.linkedid] = call
        if self.linked_of.get(event.uniqueid) != event.linkedid:
            self.linked_of[event.uniqueid] = event.linkedid
            self.uniqueids_of.setdefault(event.linkedid, set()).add(event.uniqueid)
        caller_side = event.uniqueid == (call.caller_uniqueid or event.linkedid)
        call.last_at = event.at if call.last_at is None else max(call.last_at, event.at)
        if event.event == "BLINDTRANSFER":
            # The part before the transfer ends here; the transferee's goes on under a key of
            # its own, from the call's first position (a restart reads the whole call again).
            part = EndedCall(
                transfer_part_key(event.linkedid, call.transfers + 1),
                channel=str(event.extra.get("transferee_channel_name") or ""),
                dialled=str(event.extra.get("extension") or ""),
                started_at=event.at, last_at=event.at, first_position=call.first_position,
                caller_uniqueid=str(event.extra.get("transferee_channel_uniqueid") or ""),
                transfers=call.transfers + 1,
            )  # fmt: skip
            self.open_calls[event.linkedid] = part
            if call.ended_at is None:
                call.ended_at = event.at
            return [call]
        if call.shipped:  # ended by an attended transfer; LINKEDID_END below forgets it
            pass
        elif event.event == "CHAN_START" and caller_side:
            call.channel = event.channel
            call.dialled = event.exten
            call.caller_number = event.caller
            call.started_at = event.at
        elif event.event == "ANSWER":
            if caller_side:
                call.answered_at = event.at
            elif not call.answered_by:
                call.answered_by = event.channel
                if call.transfers and call.answered_at is None:  # the target took it
                    call.answered_at = event.at
        elif event.event == "HANGUP" and caller_side:
            call.ended_at = event.at
            cause = str(event.extra.get("hangupcause", ""))
            call.cause = int(cause) if cause.isdigit() else None
            call.dial_status = str(event.extra.get("dialstatus") or "")
            call.userfield = event.userfield
        if event.event == "LINKEDID_END":
            if call.ended_at is None:
                call.ended_at = event.at
            ended = self.open_calls.pop(event.linkedid)
            for uid in self.uniqueids_of.pop(event.linkedid, ()):
                if self.linked_of.get(uid) == event.linkedid:
                    del self.linked_of[uid]
            return [] if ended.shipped else [ended]
        return []

    def close_lost(self, asterisk_started_at: float) -> list[EndedCall]:
        """Calls of an Asterisk that has since restarted (every event before its start): their
        LINKEDID_END will never come. Each ends at its last event; none is left open forever,
        holding the checkpoint back."""
        lost_keys = [
            key for key, c in self.open_calls.items()
            if c.last_at is not None and c.last_at < asterisk_started_at
        ]  # fmt: skip
        lost = [c for c in (self.open_calls.pop(key) for key in lost_keys) if not c.shipped]
        for key in lost_keys:
            for uid in self.uniqueids_of.pop(key, ()):
                if self.linked_of.get(uid) == key:
                    del self.linked_of[uid]
        for call in lost:
            if call.ended_at is None:
                call.ended_at = call.last_at
            call.end_not_journalled = True
        return lost

    def low_water(self, default: Any) -> Any:
        """The journal position a restart must read from to see every call still in progress."""
        return min((c.first_position for c in self.open_calls.values()), default=default)


def feed_all(assembler: CallAssembler, lines: Iterable[tuple[Any, str]]) -> list[EndedCall]:
    """Feed journal lines; a line that is not a CEL record is skipped and counted in
    ``assembler.skipped``, never fatal: one bad line must not stop every CDR."""
    ended = []
    for position, line in lines:
        try:
            event = parse_line(line)
        except (ValueError, StopIteration):
            assembler.skipped += 1
            continue
        ended += assembler.feed(event, position)
    return ended


# Q.850 cause -> the SIP code chan_pjsip answers with (RFC 3398 mapping, as Asterisk applies it).
_CAUSE_TO_SIP = {
    1: 404, 2: 404, 3: 404, 17: 486, 18: 408, 19: 480, 20: 480, 21: 403, 22: 410, 26: 404,
    27: 502, 28: 484, 29: 501, 31: 480, 34: 503, 38: 503, 41: 503, 42: 503, 44: 503, 47: 503,
    55: 403, 57: 403, 58: 503, 65: 488, 69: 501, 79: 501, 87: 403, 88: 488, 102: 504, 111: 500,
    127: 500,
}  # fmt: skip
NORMAL_CLEARING = 16
NO_ANSWER = 19
CUT_TOLERANCE_S = 1.0  # a call answered this close to its maximum was cut at it


def sip_code(call: EndedCall) -> int:
    if call.answered_at is not None:
        return 200
    if call.cause in (None, NORMAL_CLEARING) or call.dial_status == "CANCEL":
        return 487  # the caller gave up before anyone answered
    return _CAUSE_TO_SIP.get(call.cause, 500)


def disposition(
    call: EndedCall, *, outcome: str | None, max_duration_s: int | None,
    deadline_at: datetime | None = None,
) -> str:  # fmt: skip
    """How the attempt ended. ``outcome`` is what the daemon recorded when it decided
    ("admitted", "refused_limit", "refused_policy"; None if it never saw the call).
    ``deadline_at``: the deadline a transferred call kept from the call it continues."""
    if call.userfield == VOICEMAIL_USERFIELD:
        # First: a call to a line at its limit is recorded refused_limit, then taken by the
        # line's mailbox (docs/voicemail.md).
        return Disposition.voicemail
    if outcome in (Disposition.refused_limit, Disposition.refused_policy):
        return outcome
    if call.answered_at is not None:
        ended = call.ended_at or call.answered_at
        held = ended - call.answered_at
        if max_duration_s is not None and held >= max_duration_s - CUT_TOLERANCE_S:
            return Disposition.cut
        if deadline_at is not None and ended >= deadline_at.timestamp() - CUT_TOLERANCE_S:
            return Disposition.cut
        return Disposition.answered
    code = sip_code(call)
    if code == 486:
        return Disposition.busy
    if call.cause == NO_ANSWER or code in (487, 408):
        return Disposition.no_answer
    return Disposition.failed


@dataclass(frozen=True)
class Attempt:
    """What the daemon decided (``call_attempts``)."""

    call_id: uuid.UUID
    outcome: str
    direction: str
    caller: str
    callee: str
    caller_line_id: uuid.UUID | None
    callee_line_id: uuid.UUID | None
    ring_group_id: uuid.UUID | None
    max_duration_s: int
    reason: str | None = None
    transfer_of: uuid.UUID | None = None  # docs/transfers.md
    paid_by_line_id: uuid.UUID | None = None
    deadline_at: datetime | None = None  # kept by a transferred call


@dataclass(frozen=True)
class LineRef:
    id: uuid.UUID
    customer_id: uuid.UUID
    main_number: str | None


# The columns of ``cdrs`` a record fills, in this order (COPY).
CDR_COLUMNS = (
    "id", "node", "linkedid", "call_id", "customer_id", "caller_line_id", "callee_line_id",
    "ring_group_id", "dialled_number", "direction", "caller", "callee", "destination_country",
    "start_at", "answer_at", "end_at", "duration_ms", "billed_s", "disposition", "q850_cause",
    "sip_code", "destination", "reason", "transfer_of", "paid_by_line_id",
)  # fmt: skip

TRUNK_PREFIX = "trunk-"


def destination_country(callee: str) -> str | None:
    """ISO country of an E.164 callee (``+44…`` -> GB); None for anything else. Only codes
    several countries share (+1, +7, +44, …) need the full parse."""
    code = country_code_of(callee)
    if code is None:
        return None
    regions = regions_of(int(code))
    if len(regions) == 1:
        return regions[0]
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(callee))
    except phonenumbers.NumberParseException:
        return None
    return region if region and region != "ZZ" else regions[0]


END_NOT_JOURNALLED = "Asterisk stopped before journalling this call's end: ended at its last event"
EMERGENCY_DESTINATION = "emergency"


def cdr_destination(callee: str) -> str | None:
    """The CDR's ``destination``: the operator's destination code (``"44"``, ``"33-free"``),
    or ``"emergency"`` for an emergency number, which the law says is free and kept off
    invoices (CPCE art. D. 98-8): billing can leave these out by this column alone."""
    if callee in EMERGENCY_NUMBERS:
        return EMERGENCY_DESTINATION
    return destination_of(callee)


#: Width of the CDR's text columns that hold what a device or a carrier sent (models.Cdr).
CDR_TEXT_WIDTH = 64


def _as_sent(value: str | None) -> str | None:
    """What a device or carrier sent, as a CDR column can hold it: cut to the column's width and
    without NUL characters (PostgreSQL refuses them). One nonsense INVITE must not stop the CDR
    writer, whose batch would fail on it again at every retry."""
    if value is None:
        return None
    return value.replace("\x00", "")[:CDR_TEXT_WIDTH]


def build_cdr(
    call: EndedCall,
    *,
    node: str,
    attempt: Attempt | None,
    lines: dict[str, LineRef],
    group_customers: dict[uuid.UUID, uuid.UUID],
) -> tuple[object, ...]:
    """The CDR row (``CDR_COLUMNS``) of an ended call. ``lines``: lines by SIP username, for the
    caller's and the answering channel's endpoints."""
    caller_ep = endpoint_of_channel(call.channel)
    answered_ep = endpoint_of_channel(call.answered_by)
    caller_line = lines.get(caller_ep or "")
    answered_line = lines.get(answered_ep or "")
    if attempt is not None:
        direction, caller, callee = attempt.direction, attempt.caller, attempt.callee
        caller_line_id = attempt.caller_line_id
        # A ring group's call: the member that answered took it.
        callee_line_id = answered_line.id if answered_line else attempt.callee_line_id
        group_id = attempt.ring_group_id
        max_s: int | None = attempt.max_duration_s
    else:  # never decided by the daemon (refused by routing, or the daemon was down)
        from_trunk = bool(caller_ep and caller_ep.startswith(TRUNK_PREFIX))
        direction = "inbound" if from_trunk else "outbound"
        caller = (
            call.caller_number
            if from_trunk or caller_line is None
            else (caller_line.main_number or caller_ep or "")
        )
        dialled = classify_dialled(call.dialled)
        callee = dialled.e164 or call.dialled
        caller_line_id = caller_line.id if caller_line else None
        callee_line_id = answered_line.id if answered_line else None
        group_id, max_s = None, None
    customer = next(
        (
            ln.customer_id
            for ln in (caller_line, answered_line)
            if ln is not None and ln.id in (caller_line_id, callee_line_id)
        ),
        group_customers.get(group_id) if group_id else None,
    )
    return (
        uuid.uuid4(), node, call.linkedid, attempt.call_id if attempt else None, customer,
        caller_line_id, callee_line_id, group_id, _as_sent(call.dialled or None), direction,
        _as_sent(caller or ""), _as_sent(callee or ""), destination_country(callee or ""),
        call.start, call.answer, call.end,
        round(call.duration_s * 1000), call.billed_s,
        disposition(
            call, outcome=attempt.outcome if attempt else None, max_duration_s=max_s,
            deadline_at=attempt.deadline_at if attempt else None,
        ),
        call.cause, sip_code(call), cdr_destination(callee or ""),
        (attempt.reason if attempt else None)
        or (END_NOT_JOURNALLED if call.end_not_journalled else None),
        attempt.transfer_of if attempt else None, attempt.paid_by_line_id if attempt else None,
    )  # fmt: skip
