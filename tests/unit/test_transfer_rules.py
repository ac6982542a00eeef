"""Who pays for which leg after a transfer, what counts, which deadline is kept
(docs/transfers.md); and the CDR parts a transfer splits a call into."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from centrex.core.cdr import CallAssembler, feed_all
from centrex.core.routing import LineInfo, Refuse
from centrex.features.transfers.rules import (
    CallFacts,
    TransferPlan,
    asterisk_limit_ms,
    plan_merge,
    plan_transfer,
    segment_key,
)

pytestmark = pytest.mark.unit

CUSTOMER = uuid.uuid4()
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
DEADLINE = T0 + timedelta(minutes=120)


def line(name: str) -> LineInfo:
    return LineInfo(uuid.uuid4(), CUSTOMER, name, 2)


A, B, C = line("a"), line("b"), line("c")


def facts(direction: str, caller: LineInfo | None, callee: LineInfo | None, **kw) -> CallFacts:
    return CallFacts(
        uuid.uuid4(), direction, caller.id if caller else None, callee.id if callee else None,
        DEADLINE, **kw,
    )  # fmt: skip


def plan(call: CallFacts, **kw) -> TransferPlan:
    result = plan_transfer(call, **kw)
    assert isinstance(result, TransferPlan), result
    return result


def test_on_net_blind_transfer_keeps_the_call_s_deadline_and_nobody_pays():
    """A calls B, B sends A to C: A and C count it; B is free; a transfer never lengthens a
    call nobody pays for."""
    p = plan(facts("on-net", A, B), transferee=A, transferee_was_caller=True, transferer=B,
             target=C)  # fmt: skip
    assert (p.caller_line_id, p.callee_line_id, p.payers) == (A.id, C.id, ())
    assert (p.direction, p.deadline_at, p.paid_by, p.transfers) == ("on-net", DEADLINE, None, 1)


def test_a_transfer_outside_is_paid_by_the_transferer_with_120_minutes_from_its_answer():
    """A calls B, B sends A to an outside number: B pays that outbound leg and keeps a place
    for it; its deadline starts at the answer (None until then)."""
    p = plan(facts("on-net", A, B), transferee=A, transferee_was_caller=True, transferer=B,
             target=None)  # fmt: skip
    assert (p.caller_line_id, p.callee_line_id, p.payers, p.paid_by) == (A.id, None, (B.id,), B.id)
    assert (p.direction, p.deadline_at) == ("outbound", None)


def test_an_outside_party_called_out_keeps_its_payer_and_its_deadline():
    """A calls an outside number X (A pays), A sends X to C: A still pays X's leg (counted),
    whose 120 minutes run from X's first answer."""
    p = plan(facts("outbound", A, None), transferee=None, transferee_was_caller=False,
             transferer=A, target=C)  # fmt: skip
    assert (p.caller_line_id, p.callee_line_id, p.payers, p.paid_by) == (None, C.id, (A.id,), A.id)
    assert (p.direction, p.deadline_at) == ("inbound", DEADLINE)


def test_an_outside_caller_sent_on_is_paid_by_nobody_and_keeps_its_deadline():
    """X calls in to B, B sends X to C: nobody on the platform pays; C counts it."""
    p = plan(facts("inbound", None, B), transferee=None, transferee_was_caller=True,
             transferer=B, target=C)  # fmt: skip
    assert (p.payers, p.paid_by, p.direction, p.deadline_at) == ((), None, "inbound", DEADLINE)


def test_two_paid_legs_keep_both_payers_and_the_earlier_deadline():
    """A called X out (A pays); X was sent to B; B sends X to outside Y: A still pays X's leg,
    B pays Y's; the call keeps the deadline of X's leg (the answer can only bring it earlier)."""
    call = facts("inbound", None, B, payers=(A.id,), transfers=1)
    p = plan(call, transferee=None, transferee_was_caller=False, transferer=B, target=None)
    assert (p.payers, p.paid_by, p.deadline_at, p.transfers) == ((A.id, B.id), B.id, DEADLINE, 2)


def test_a_transfer_to_the_transferee_itself_is_refused():
    refused = plan_transfer(facts("on-net", A, B), transferee=A, transferee_was_caller=True,
                            transferer=B, target=A)  # fmt: skip
    assert isinstance(refused, Refuse)


def test_asterisk_s_limit_for_a_kept_deadline_is_the_time_left():
    now = DEADLINE - timedelta(seconds=30)
    assert asterisk_limit_ms(7200, DEADLINE, now, 0.5) == 30_500
    assert asterisk_limit_ms(7200, None, now, 0.5) == 7_200_500
    assert asterisk_limit_ms(7200, DEADLINE, DEADLINE + timedelta(seconds=5), 0.5) == 1_500


def cel(event: str, at: float, uid: str, linked: str, chan: str, extra: dict | None = None) -> str:
    text = json.dumps(extra).replace('"', '""') if extra else ""
    return f'"{event}","{at:.6f}","{uid}","{linked}","{chan}","c","centrex-dial","","{text}",""\n'


def test_a_blind_transfer_splits_the_cdr_into_parts_the_daemon_names_alike():
    """A (n.1) calls B (n.2), B transfers A to C (n.3): the A-B part ends at the transfer, the
    A-C part is answered when C answers and ends when A hangs up; B's hangup ends neither."""
    xfer = {"extension": "c", "transferee_channel_name": "PJSIP/a-1",
            "transferee_channel_uniqueid": "n.1"}  # fmt: skip
    lines = [
        cel("CHAN_START", 100, "n.1", "n.1", "PJSIP/a-1"),
        cel("CHAN_START", 100.1, "n.2", "n.1", "PJSIP/b-2"),
        cel("ANSWER", 101, "n.2", "n.1", "PJSIP/b-2"),
        cel("ANSWER", 101, "n.1", "n.1", "PJSIP/a-1"),
        cel("BLINDTRANSFER", 105, "n.2", "n.1", "PJSIP/b-2", xfer),
        cel("HANGUP", 105.2, "n.2", "n.1", "PJSIP/b-2", {"hangupcause": 16}),
        cel("CHAN_START", 105.3, "n.3", "n.1", "PJSIP/c-3"),
        cel("ANSWER", 107, "n.3", "n.1", "PJSIP/c-3"),
        cel("HANGUP", 110, "n.3", "n.1", "PJSIP/c-3", {"hangupcause": 16}),
        cel("HANGUP", 110.1, "n.1", "n.1", "PJSIP/a-1", {"hangupcause": 16}),
        cel("LINKEDID_END", 110.2, "n.1", "n.1", "PJSIP/a-1"),
    ]
    first, second = feed_all(CallAssembler(), enumerate(lines))
    assert (first.linkedid, first.answered_by, first.answered_at, first.ended_at) == (
        "n.1",
        "PJSIP/b-2",
        101,
        105,
    )
    assert second.linkedid == segment_key("n.1", 1) == "n.1/t1"
    assert (second.channel, second.dialled, second.started_at) == ("PJSIP/a-1", "c", 105)
    assert (second.answered_by, second.answered_at, second.ended_at) == ("PJSIP/c-3", 107, 110.1)
    assert second.billed_s == 3


def test_an_attended_transfer_on_net_keeps_the_earlier_deadline_and_frees_the_transferer():
    """A calls B; B calls C; B joins A and C: A and C count it, nobody pays, and the call
    keeps the earlier of the two deadlines."""
    first = facts("on-net", A, B)
    second = CallFacts(uuid.uuid4(), "on-net", B.id, C.id, DEADLINE + timedelta(minutes=5))
    p = plan_merge(first, transferee_was_caller=True, second=second, target_was_caller=False)
    assert (p.caller_line_id, p.callee_line_id, p.payers, p.direction) == (
        A.id, C.id, (), "on-net")  # fmt: skip
    assert (p.deadline_at, p.transfers) == (DEADLINE, 1)


def test_an_attended_transfer_to_an_outside_party_b_called_keeps_b_paying_that_leg():
    """A calls B; B calls outside X (B pays); B joins A and X: B keeps paying X's leg, whose
    120 minutes run from X's first answer, though the first call's deadline is earlier."""
    first = facts("on-net", A, B)
    later = DEADLINE + timedelta(minutes=30)
    second = CallFacts(uuid.uuid4(), "outbound", B.id, None, later)
    p = plan_merge(first, transferee_was_caller=True, second=second, target_was_caller=False)
    assert (p.callee_line_id, p.payers, p.paid_by, p.direction) == (None, (B.id,), B.id,
                                                                     "outbound")  # fmt: skip
    assert p.deadline_at == later


def test_an_attended_transfer_ends_both_calls_and_opens_the_joined_part():
    """A (a.1) calls B (a.2); B (b.1) calls C (b.2); B joins A and C: both calls end at the
    transfer, once each; the joined part runs from it to the first hangup of A or C."""
    joined = {"channel2_uniqueid": "b.1", "transferee_channel_uniqueid": "a.1",
              "transferee_channel_name": "PJSIP/a-1", "transfer_target_channel_uniqueid": "b.2",
              "transfer_target_channel_name": "PJSIP/c-4"}  # fmt: skip
    lines = [
        cel("CHAN_START", 100, "b.1", "b.1", "PJSIP/b-3"),
        cel("CHAN_START", 100.1, "b.2", "b.1", "PJSIP/c-4"),
        cel("ANSWER", 101, "b.2", "b.1", "PJSIP/c-4"),
        cel("CHAN_START", 102, "a.1", "a.1", "PJSIP/a-1"),
        cel("CHAN_START", 102.1, "a.2", "a.1", "PJSIP/b-2"),
        cel("ANSWER", 103, "a.2", "a.1", "PJSIP/b-2"),
        cel("ATTENDEDTRANSFER", 105, "a.2", "a.1", "PJSIP/b-2", joined),
        cel("HANGUP", 105.1, "a.2", "a.1", "PJSIP/b-2"),
        cel("HANGUP", 105.1, "b.1", "b.1", "PJSIP/b-3"),
        cel("HANGUP", 109, "b.2", "b.1", "PJSIP/c-4"),
        cel("HANGUP", 109.1, "a.1", "b.1", "PJSIP/a-1"),  # its linked id taken from the older
        cel("LINKEDID_END", 109.2, "a.1", "a.1", "PJSIP/a-1"),
        cel("LINKEDID_END", 109.2, "b.1", "b.1", "PJSIP/b-3"),
    ]
    ended = feed_all(CallAssembler(), enumerate(lines))
    assert [(c.linkedid, c.ended_at) for c in ended] == [("a.1", 105), ("b.1", 105),
                                                        ("a.1/t1", 109)]  # fmt: skip
    part = ended[2]
    assert (part.channel, part.answered_by, part.answered_at, part.billed_s) == (
        "PJSIP/a-1",
        "PJSIP/c-4",
        105,
        4,
    )
