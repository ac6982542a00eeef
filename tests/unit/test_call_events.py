"""Answer and end of a call, from CEL records; the journal read as it is written."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from centrex.asterisk.file_tail import FileTail
from centrex.core.call_events import CallAnswered, CallEnded, call_event_of
from centrex.core.cdr import parse_line

pytestmark = pytest.mark.unit

CALLER = "1795700000.10"


def cel(event: str, uniqueid: str, channel: str, at: float = 1795700010.25) -> str:
    return f'"{event}","{at}","{uniqueid}","{CALLER}","{channel}","200","centrex-dial","100","",""'


def test_the_dialled_channel_answering_answers_the_call_and_names_who():
    event = call_event_of(parse_line(cel("ANSWER", "1795700000.11", "PJSIP/bob-0000002a")))
    assert event == CallAnswered(CALLER, datetime.fromtimestamp(1795700010.25, UTC), "bob")


def test_the_callers_own_answer_says_nothing_more():
    assert call_event_of(parse_line(cel("ANSWER", CALLER, "PJSIP/alice-00000029"))) is None


def test_hangup_ends_the_channel():
    event = call_event_of(parse_line(cel("HANGUP", CALLER, "PJSIP/alice-00000029")))
    assert event == CallEnded(CALLER, datetime.fromtimestamp(1795700010.25, UTC))
    assert call_event_of(parse_line(cel("CHAN_START", CALLER, "PJSIP/alice-1"))) is None


def test_tail_starts_at_the_end_and_follows_a_rotation(tmp_path):
    journal = tmp_path / "centrex-cel.csv"
    journal.write_text("old line\n")
    tail = FileTail(journal)
    tail.start_at_end()
    assert tail.read_lines() == []
    with journal.open("a") as f:
        f.write("one\ntw")  # a partial line waits for its end
    assert tail.read_lines() == ["one"]
    with journal.open("a") as f:
        f.write("o\n")
    assert tail.read_lines() == ["two"]
    rotated = tmp_path / "centrex-cel.csv.1795700000000"
    os.rename(journal, rotated)
    with rotated.open("a") as f:  # a record begun before the rename lands in the old file
        f.write("late\n")
    journal.write_text("three\n")
    assert sorted(tail.read_lines()) == ["late", "three"]
    with journal.open("a") as f:
        f.write("four\n")
    assert tail.read_lines() == ["four"]
    tail.close()


def test_tail_of_a_journal_not_yet_created(tmp_path):
    journal = tmp_path / "centrex-cel.csv"
    tail = FileTail(journal)
    tail.start_at_end()
    assert tail.read_lines() == []
    journal.write_text("first\n")
    assert tail.read_lines() == ["first"]
