"""Line features, pure rules (issue 15): targets, which forward applies, loops, codes, 3651."""

from __future__ import annotations

import pytest

from centrex.features.codes import CODES
from centrex.features.rules import (
    MAX_HOPS,
    BadCode,
    CodeKind,
    Condition,
    DialledCode,
    ForwardTarget,
    LineFeatures,
    TargetError,
    TargetFacts,
    TargetKind,
    condition_of_dial_status,
    forward_at_admission,
    is_loop,
    parse_code,
    parse_target,
    strip_privacy,
    target_refusal,
)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("201", TargetKind.extension, "201"),
        ("0145678901", TargetKind.number, "+33145678901"),
        ("+44 20 7123 4567", TargetKind.number, "+442071234567"),
        ("voicemail", TargetKind.voicemail, "voicemail"),
    ],
)
def test_targets(text, kind, value):
    assert parse_target(text) == ForwardTarget(kind, value)


def test_another_line_s_mailbox_is_named_by_its_extension():
    assert parse_target("voicemail:201") == ForwardTarget(
        TargetKind.voicemail, "voicemail:201", mailbox_extension="201"
    )
    for bad in ("voicemail:", "voicemail:1", "voicemail:abc", "voicemail:1234567", "mail:201"):
        with pytest.raises(TargetError):
            parse_target(bad)


def test_mailbox_targets():
    own = parse_target("voicemail")
    assert target_refusal(own, TargetFacts()) is None
    other = parse_target("voicemail:201")
    assert "no extension 201" in (target_refusal(other, TargetFacts()) or "")
    group = TargetFacts(extension_exists=True, extension_is_line=False)
    assert "ring group" in (target_refusal(other, group) or "")
    line = TargetFacts(extension_exists=True, extension_is_line=True)
    assert target_refusal(other, line) is None
    # Its own extension's mailbox is its own mailbox: not "a line cannot forward to itself".
    itself = TargetFacts(extension_exists=True, extension_is_line=True, names_line_itself=True)
    assert target_refusal(other, itself) is None


@pytest.mark.parametrize("text", ["112", "15", "abc", "", "12", "*21", "0145'; DROP", "+"])
def test_bad_targets_are_refused(text):
    with pytest.raises(TargetError):
        parse_target(text)


def test_unconditional_comes_first_and_dnd_is_busy():
    assert forward_at_admission(LineFeatures()) is None
    both = LineFeatures(forward_unconditional="201", forward_busy="202", dnd=True)
    assert forward_at_admission(both) == (Condition.unconditional, "201")
    assert forward_at_admission(LineFeatures(dnd=True, forward_busy="202")) == (
        Condition.busy,
        "202",
    )
    assert forward_at_admission(LineFeatures(dnd=True)) is None  # the caller gets busy
    assert LineFeatures(forward_no_answer="201").forwards_when_dialled
    assert not LineFeatures(forward_unconditional="201").forwards_when_dialled


def test_dial_statuses():
    assert condition_of_dial_status("BUSY") is Condition.busy
    assert condition_of_dial_status("NOANSWER") is Condition.no_answer
    assert condition_of_dial_status("CHANUNAVAIL") is Condition.unregistered
    assert condition_of_dial_status("ANSWER") is None
    assert condition_of_dial_status("CANCEL") is None


def test_loops():
    assert is_loop(("a", "b"), "a")
    assert not is_loop(("a", "b"), "c")
    assert is_loop(tuple("abcdefgh"[:MAX_HOPS]), "z")


@pytest.mark.parametrize(
    ("dialled", "expected"),
    [
        ("*21*0145678901#", DialledCode(CodeKind.forward_set, "0145678901")),
        ("*21*201#", DialledCode(CodeKind.forward_set, "201")),
        ("*21*voicemail#", DialledCode(CodeKind.forward_set, "voicemail")),
        ("#21#", DialledCode(CodeKind.forward_cancel)),
        ("*78", DialledCode(CodeKind.dnd_on)),
        ("*79", DialledCode(CodeKind.dnd_off)),
        ("*8", DialledCode(CodeKind.pickup)),
        ("0145678901", None),
        ("201", None),
        ("alice", None),
    ],
)
def test_codes(dialled, expected):
    assert parse_code(dialled) == expected


@pytest.mark.parametrize("dialled", ["*21*#", "*21*0145678901", "*99", "#", "*21*a'b#", "**"])
def test_malformed_codes(dialled):
    assert isinstance(parse_code(dialled), BadCode)


def test_privacy_prefix():
    assert strip_privacy("36510145678901") == (True, "0145678901")
    assert strip_privacy("3651+442071234567") == (True, "+442071234567")
    assert strip_privacy("3651") == (False, "3651")
    assert strip_privacy("0145678901") == (False, "0145678901")
    assert strip_privacy("3651alice") == (False, "3651alice")


def test_every_code_is_listed_once():
    assert len({c.dialled for c in CODES}) == len(CODES)
    assert any(c.dialled == "*98" for c in CODES)  # the mailbox's
    assert parse_code("*98") is None  # left to centrex.voicemail, not refused here


OUT = ForwardTarget(TargetKind.number, "+33145678901")


def test_outside_targets_pass_the_line_s_policy():
    listed = TargetFacts(destination="33", destination_listed=True)
    assert target_refusal(OUT, listed) is None
    assert "not on the operator's list" in (
        target_refusal(OUT, TargetFacts(destination="33")) or ""
    )
    suspended = TargetFacts(destination="33", destination_listed=True, destination_suspended=True)
    assert "suspended" in (target_refusal(OUT, suspended) or "")
    restricted = TargetFacts(
        destination="44", destination_listed=True, policy_level="national_only"
    )
    assert target_refusal(OUT, restricted)
    assert target_refusal(OUT, TargetFacts(destination="33", destination_listed=True,
                                           has_number=False))  # fmt: skip
    assert target_refusal(OUT, TargetFacts(on_platform=True)) is None  # stays on-net


def test_extension_targets():
    ext = ForwardTarget(TargetKind.extension, "201")
    assert target_refusal(ext, TargetFacts(extension_exists=True)) is None
    assert target_refusal(ext, TargetFacts())
    assert "itself" in (target_refusal(ext, TargetFacts(names_line_itself=True,
                                                        extension_exists=True)) or "")  # fmt: skip


def test_the_docs_list_every_code():
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "features.md").read_text()
    for code in CODES:
        assert f"`{code.dialled}`" in page, code


def test_emergency_call_back_window():
    from datetime import UTC, datetime, timedelta

    from centrex.features.rules import in_emergency_callback

    called = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert in_emergency_callback(called, called + timedelta(minutes=59), 3600)
    assert not in_emergency_callback(called, called + timedelta(minutes=61), 3600)
    assert not in_emergency_callback(None, called, 3600)
    assert not in_emergency_callback(called, called - timedelta(seconds=1), 3600)  # clock skew
    assert not in_emergency_callback(called, called + timedelta(seconds=1), 0)


@pytest.mark.parametrize(
    ("number", "shown"),
    [("+33611223344", "+33611223344"), ("0611223344", None), ("+33<sip:x@y>", None),
     ("+0123", None), ("", None), ("+3361122334\r\nX: y", None)],
)  # fmt: skip
def test_only_e164_caller_numbers_are_sent_on(number, shown):
    from centrex.features.rules import presentable

    assert presentable(number) == shown
