"""CDRs from CEL events: assembling calls, dispositions, SIP codes; the journal's segments."""

import os
import time
import uuid
from pathlib import Path

import pytest

from centrex.cdr.journal import LIVE, Journal, Position
from centrex.core.cdr import (
    CDR_COLUMNS,
    CDR_TEXT_WIDTH,
    Attempt,
    CallAssembler,
    Disposition,
    EndedCall,
    LineRef,
    build_cdr,
    destination_country,
    disposition,
    feed_all,
    sip_code,
)

pytestmark = pytest.mark.unit


def cel(event: str, at: float, uid: str, linked: str, chan: str, extra: str = "", exten="bob"):
    extra = extra.replace('"', '""')
    return (
        f'"{event}","{at:.6f}","{uid}","{linked}","{chan}","{exten}","centrex-lines","",'
        f'"{extra}",""\n'
    )


def answered_call(linked: str = "n-1.1", hold: float = 2.4) -> list[str]:
    return [
        cel("CHAN_START", 100.0, linked, linked, "PJSIP/alice-00000001"),
        cel("CHAN_START", 100.2, "n-1.2", linked, "PJSIP/bob-00000002", exten="s"),
        cel("ANSWER", 101.0, "n-1.2", linked, "PJSIP/bob-00000002"),
        cel("ANSWER", 101.0, linked, linked, "PJSIP/alice-00000001"),
        cel("HANGUP", 101.0 + hold, "n-1.2", linked, "PJSIP/bob-00000002",
            '{"hangupcause":16,"hangupsource":"","dialstatus":""}'),
        cel("HANGUP", 101.0 + hold, linked, linked, "PJSIP/alice-00000001",
            '{"hangupcause":16,"hangupsource":"PJSIP/bob","dialstatus":"ANSWER"}'),
        cel("LINKEDID_END", 101.0 + hold, linked, linked, "PJSIP/alice-00000001"),
    ]  # fmt: skip


def test_an_answered_call_is_assembled_from_its_events():
    assembler = CallAssembler()
    lines = answered_call()
    ended = feed_all(assembler, list(enumerate(lines[:-1])))
    assert ended == [] and assembler.low_water(99) == 0  # still open: restart reads from it
    (call,) = feed_all(assembler, [(6, lines[-1])])
    assert assembler.open_calls == {} and assembler.low_water(99) == 99
    assert (call.channel, call.dialled, call.answered_by) == (
        "PJSIP/alice-00000001", "bob", "PJSIP/bob-00000002",
    )  # fmt: skip
    assert (call.duration_s, call.billed_s, call.cause) == (pytest.approx(3.4), 2, 16)
    assert sip_code(call) == 200
    assert disposition(call, outcome="admitted", max_duration_s=7200) == Disposition.answered
    assert disposition(call, outcome="admitted", max_duration_s=3) == Disposition.cut


def ended(cause: int | None, dial_status: str = "", answered: bool = False) -> EndedCall:
    return EndedCall("x", started_at=1.0, answered_at=2.0 if answered else None, ended_at=5.0,
                     cause=cause, dial_status=dial_status)  # fmt: skip


@pytest.mark.parametrize(
    ("call", "outcome", "code", "expected"),
    [
        (ended(17, "BUSY"), "admitted", 486, Disposition.busy),
        (ended(17), "refused_limit", 486, Disposition.refused_limit),
        (ended(19, "NOANSWER"), "admitted", 480, Disposition.no_answer),
        (ended(16, "CANCEL"), "admitted", 487, Disposition.no_answer),  # the caller gave up
        (ended(20, "CHANUNAVAIL"), "admitted", 480, Disposition.failed),  # not registered
        (ended(1), None, 404, Disposition.failed),
        (ended(34), None, 503, Disposition.failed),  # the daemon was down
        (ended(21), "refused_policy", 403, Disposition.refused_policy),
    ],
)
def test_dispositions_and_sip_codes(call, outcome, code, expected):
    assert sip_code(call) == code
    assert disposition(call, outcome=outcome, max_duration_s=None) == expected


def test_a_bad_journal_line_is_skipped_not_fatal():
    assembler = CallAssembler()
    lines = ["garbage\n", '"too","few"\n', *answered_call()]
    assert len(feed_all(assembler, list(enumerate(lines)))) == 1


def test_a_ring_group_cdr_names_the_member_that_answered():
    (call,) = feed_all(CallAssembler(), list(enumerate(answered_call())))
    customer, group = uuid.uuid4(), uuid.uuid4()
    alice = LineRef(uuid.uuid4(), customer, "+33145000001")
    bob = LineRef(uuid.uuid4(), customer, None)
    attempt = Attempt(uuid.uuid4(), "admitted", "on-net", "+33145000001", "+33145000009",
                      alice.id, None, group, 7200)  # fmt: skip
    row = build_cdr(call, node="n", attempt=attempt, lines={"alice": alice, "bob": bob},
                    group_customers={group: customer})  # fmt: skip
    record = dict(zip(("id", "node", "linkedid", "call_id", "customer_id", "caller_line_id",
                       "callee_line_id", "ring_group_id"), row[:8], strict=True))  # fmt: skip
    assert record["callee_line_id"] == bob.id and record["ring_group_id"] == group
    assert record["customer_id"] == customer


def test_nonsense_dialled_fits_the_cdr_columns():
    """A device dialling 100 digits (or a NUL byte) must not produce a row PostgreSQL refuses:
    the writer would retry that batch forever, and no CDR would be written after it."""
    dialled = "9" * 100 + "\x00"
    lines = [line.replace('"bob"', f'"{dialled}"', 1) for line in answered_call()]
    (call,) = feed_all(CallAssembler(), list(enumerate(lines)))
    assert call.dialled == dialled
    row = dict(zip(CDR_COLUMNS, build_cdr(call, node="n", attempt=None, lines={},
                                          group_customers={}), strict=True))  # fmt: skip
    for column in ("dialled_number", "caller", "callee"):
        assert len(row[column]) <= CDR_TEXT_WIDTH and "\x00" not in row[column], column
    assert row["dialled_number"] == "9" * CDR_TEXT_WIDTH


@pytest.mark.parametrize(
    ("callee", "destination"),
    [("116117", "emergency"), ("197", "emergency"), ("+442071234567", "44"), ("bob", None)],
)
def test_an_emergency_call_s_cdr_says_so(callee, destination):
    """Emergency calls are free and kept off invoices (CPCE D. 98-8): the CDR marks them."""
    lines = [line.replace('"bob"', f'"{callee}"', 1) for line in answered_call()]
    (call,) = feed_all(CallAssembler(), list(enumerate(lines)))
    row = dict(zip(CDR_COLUMNS, build_cdr(call, node="n", attempt=None, lines={},
                                          group_customers={}), strict=True))  # fmt: skip
    assert row["destination"] == destination


def test_destination_country():
    assert destination_country("+442071234567") == "GB"
    assert destination_country("+33145000001") == "FR"
    assert destination_country("112") is None


def test_the_journal_reads_across_rotated_segments_and_resumes(tmp_path):
    journal = Journal(tmp_path / "cel.csv")
    journal.path.write_text("a\nb\npartial")
    lines, at = journal.read(Position(LIVE, 0))
    assert [text for _, text in lines] == ["a\n", "b\n"] and at == Position(LIVE, 4)
    segment = journal.rotate()
    os.utime(journal.segment_path(segment))
    with open(journal.segment_path(segment), "a") as f:  # a write in flight at the rename
        f.write(" line\n")
    journal.path.write_text("c\n")  # the next record starts a new live file
    at = Position(segment, 4)
    lines, at = journal.read(at)
    assert [text for _, text in lines] == ["partial line\n"]
    # A crash between the rename and the next checkpoint: the stored "live, 4" means the
    # oldest rotated segment.
    assert journal.resume_from("cel.csv", 4) == Position(segment, 4)
    # Past the rotation grace, reading moves on to the live file.
    journal_old = Journal(journal.path)
    time.sleep(0.01)
    import centrex.cdr.journal as module

    grace, module.ROTATION_GRACE_S = module.ROTATION_GRACE_S, 0.0
    try:
        lines, at = journal_old.read(at)
    finally:
        module.ROTATION_GRACE_S = grace
    assert [text for _, text in lines] == ["c\n"] and at == Position(LIVE, 2)
    journal.drop_segments_before(LIVE)
    assert journal.rotated_segments() == []


def test_a_journal_shorter_than_its_checkpoint_is_read_from_its_start(tmp_path: Path) -> None:
    """A node reinstalled (or another cluster reusing its name) keeps its old checkpoint in
    PostgreSQL while its journal starts again: its calls must not be skipped."""
    journal = Journal(tmp_path / "cel.csv")
    journal.path.write_text("a\nb\n")
    assert journal.resume_from("cel.csv", 4) == Position(LIVE, 4)  # the same file: resume there
    assert journal.resume_from("cel.csv", 4000) == Position(LIVE, 0)
    lines, _ = journal.read(journal.resume_from("cel.csv", 4000))
    assert [text for _, text in lines] == ["a\n", "b\n"]
