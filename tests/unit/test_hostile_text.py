"""Issue 11: what a caller controls cannot forge a journal record, a log line, or a formula."""

import base64
import logging

import pytest

from centrex.core.cdr import CallAssembler, feed_all, parse_line
from centrex.core.spreadsheet import safe_cell
from centrex.logsafe import SafeFormatter, escape

pytestmark = pytest.mark.unit


def b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(b"." + raw).decode()


def v2(event: str, uid: str, exten: str | bytes = "bob", caller: str = "alice") -> str:
    """A record as cel_custom.conf.j2 writes it."""
    return (
        f'"v2","{event}","100.5","{uid}","{uid}",{b64("PJSIP/alice-1")},{b64(exten)},'
        f'"centrex-lines",{b64(caller)},{b64("")},{b64("")}\n'
    )


def test_a_record_in_the_current_format_gives_back_what_the_caller_sent():
    hostile = b'1\r\n"HANGUP","1","x","x",,,,,,\r\n,;()${EXTEN}\xff'
    event = parse_line(v2("CHAN_START", "n-1.1", hostile, caller="=1+2\r\n"))
    assert (event.event, event.uniqueid, event.channel) == ("CHAN_START", "n-1.1", "PJSIP/alice-1")
    assert event.exten == hostile.decode("utf-8", "replace") and event.caller == "=1+2\r\n"
    assert event.extra == {} and event.userfield == ""


def test_a_record_of_the_format_before_is_still_read():
    old = '"HANGUP","100.5","n-1.1","n-1.1","PJSIP/alice-1","bob","c","alice","{""a"":1}",""\n'
    event = parse_line(old)
    assert (event.event, event.exten, event.extra) == ("HANGUP", "bob", {"a": 1})


@pytest.mark.parametrize(
    "line",
    [
        '"v2","HANGUP","1","u","u","PJSIP/a-1",{e},"c",{e},{e},{e}\n',  # a value not encoded
        '"v2","HANGUP","1","u","u",{x},{e},"c",{e},{e},{e}\n',  # encoded without the "."
        '"v2","HANGUP","1","u","u",{e},{e},"c",{e},{e}\n',  # a column short
        '"HANGUP","1","u","u","c","e","c","n","","",""\n',  # one more column
        '"HANGUP","1","u","u","c","e","c","n","",""\n,"x"\n',  # a line break inside
        '"HANGUP","1","","","c","e","c","n","",""\n',  # no channel
        '","centrex-lines","alice","",""\n',  # the rest of a record cut by a line break
        '"CHAN_START","100.5","u","u","PJSIP/alice-1","1\r\n',
    ],
)
def test_a_line_that_is_no_record_is_skipped_and_counted(line):
    line = line.format(e=b64("x"), x=base64.b64encode(b"x").decode())
    assembler = CallAssembler()
    good = v2("LINKEDID_END", "n-1.1")
    assert len(feed_all(assembler, [(0, line), (1, good)])) == 1
    assert assembler.skipped == 1


def test_log_messages_stay_on_one_line():
    hostile = "1\r\n2026-01-01 00:00:00,000 INFO forged\x1b[2K\u2028\x85\udcff\tend"
    assert escape(hostile) == (
        "1\\r\\n2026-01-01 00:00:00,000 INFO forged\\x1b[2K\\u2028\\x85\\udcff\\tend"
    )
    assert escape("é, ü, 中, +33 1 23") == "é, ü, 中, +33 1 23"
    formatter = SafeFormatter(logging.Formatter("%(levelname)s %(message)s"))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "dialled %s", (hostile,), None)
    assert len(formatter.format(record).splitlines()) == 1
    assert record.getMessage().count("\n") == 1  # the record itself is left as it was


def test_a_traceback_keeps_its_lines():
    formatter = SafeFormatter(logging.Formatter("%(message)s"))
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "a\nb", (), sys.exc_info())
    text = formatter.format(record)
    assert text.startswith("a\\nb\nTraceback") and text.endswith("ValueError: boom")


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("+33123456789", "+33123456789"),
        ("0123456789", "0123456789"),
        ("+", "'+"),
        ("bob", "bob"),
        ("", ""),
    ],
)
def test_a_csv_cell_is_never_a_formula(cell, safe):
    assert safe_cell(cell) == safe
