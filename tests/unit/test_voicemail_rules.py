"""Voicemail's pure rules, and the retention pass on real files with an injected clock."""

from __future__ import annotations

import io
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from centrex.config import Settings
from centrex.core.cdr import Disposition, EndedCall, disposition
from centrex.voicemail.mailer import Mailer, compose
from centrex.voicemail.rules import (
    EMAIL_RETRY_MAX_S,
    busy_goes_to_mailbox,
    email_error,
    email_retry_after,
    expired,
    goes_to_voicemail,
    greeting_error,
    mailbox_of,
    parse_message,
    pin_error,
)
from centrex.voicemail.spool import Spool

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def wav(seconds: float, *, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(rate * seconds) * channels * (width // 2 or 1))
    return out.getvalue()


@pytest.mark.parametrize(
    ("pin", "ok"),
    [("2580", True), ("73914682", True), ("1234", False), ("9876", False), ("8901", False),
     ("0000", False), ("123", False), ("123456789", False), ("12a4", False), ("١٢٣٤", False),
     ("", False), ("2580\n", False)],
)  # fmt: skip
def test_pins_are_4_to_8_digits_and_not_the_obvious_ones(pin: str, ok: bool) -> None:
    assert (pin_error(pin) is None) is ok


@pytest.mark.parametrize(
    ("address", "ok"),
    [("alice@example.com", True), ("a.b+c@mail.example.fr", True), ("alice@localhost", False),
     ("Alice <alice@example.com>", False), ("a@example.com\r\nBcc: x@example.com", False),
     ("a@example.com,b@example.com", False), ("a" * 65 + "@example.com", False), ("", False)],
)  # fmt: skip
def test_emails_are_plain_addresses(address: str, ok: bool) -> None:
    assert (email_error(address) is None) is ok


def test_a_call_goes_to_an_enabled_mailbox_on_no_answer_busy_or_unregistered() -> None:
    for status in ("NOANSWER", "BUSY", "CHANUNAVAIL"):
        assert goes_to_voicemail(status, True)
        assert not goes_to_voicemail(status, False)
    for status in ("ANSWER", "CANCEL", "CONGESTION", ""):
        assert not goes_to_voicemail(status, True)
    assert mailbox_of("k2m4p6q8rs") == "k2m4p6q8rs@centrex"


def test_a_line_at_its_limit_sends_calls_to_its_mailbox_only_when_the_caller_has_room() -> None:
    assert busy_goes_to_mailbox(caller_has_room=True, ring_group=False, mailbox_on=True)
    assert not busy_goes_to_mailbox(caller_has_room=False, ring_group=False, mailbox_on=True)
    assert not busy_goes_to_mailbox(caller_has_room=True, ring_group=True, mailbox_on=True)
    assert not busy_goes_to_mailbox(caller_has_room=True, ring_group=False, mailbox_on=False)


def test_a_call_the_mailbox_took_is_a_voicemail_cdr_even_after_a_limit_refusal() -> None:
    call = EndedCall("1.1", started_at=1.0, answered_at=9.0, ended_at=20.0, cause=16,
                     userfield="voicemail")  # fmt: skip
    for outcome in ("admitted", "refused_limit", None):
        assert disposition(call, outcome=outcome, max_duration_s=7200) == Disposition.voicemail
    call.userfield = ""
    assert disposition(call, outcome="admitted", max_duration_s=7200) == Disposition.answered


def test_greetings_are_8khz_16bit_mono_wav_of_a_sensible_length() -> None:
    assert greeting_error(wav(2.0), 60)[0].seconds == pytest.approx(2.0)  # type: ignore[union-attr]
    for data, why in [
        (b"ID3\x03 an mp3", "WAV"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "readable"),
        (wav(1.0, rate=16000), "8000 Hz"),
        (wav(1.0, channels=2), "mono"),
        (wav(0.2), "too short"),
        (wav(61.0), "too long"),
    ]:
        greeting, error = greeting_error(data, 60)
        assert greeting is None and error is not None and why in error, (why, error)


MSG_TXT = """;
; Message Information file
;
[message]
origmailbox=k2m4p6q8rs
context=centrex-voicemail
callerid="a9b8c7d6e5" <a9b8c7d6e5>
origtime={origtime}
duration=7
msg_id=1796278227-00000001
"""


def test_a_message_file_is_read_or_left_alone_until_complete() -> None:
    info = parse_message(MSG_TXT.format(origtime=int(NOW.timestamp())))
    assert info is not None
    assert (info.msg_id, info.duration_s, info.received_at) == ("1796278227-00000001", 7, NOW)
    assert info.caller_id == '"a9b8c7d6e5" <a9b8c7d6e5>'
    assert parse_message("[message]\norigmailbox=x\n") is None  # still being written
    assert parse_message(MSG_TXT.format(origtime="soon")) is None
    assert parse_message(MSG_TXT.format(origtime=1).replace("00000001", "../../x")) is None


def test_retention_and_email_retries() -> None:
    assert not expired(NOW - timedelta(days=30), NOW, 30)
    assert expired(NOW - timedelta(days=30, seconds=1), NOW, 30)
    assert [email_retry_after(n, 30) for n in (1, 2, 3)] == [30, 60, 120]
    assert email_retry_after(50, 30) == EMAIL_RETRY_MAX_S


def _message(box: Path, n: int, at: datetime) -> None:
    inbox = box / "INBOX"
    inbox.mkdir(parents=True, exist_ok=True)
    text = MSG_TXT.format(origtime=int(at.timestamp())).replace("00000001", f"{n:08d}")
    (inbox / f"msg{n:04d}.txt").write_text(text)
    (inbox / f"msg{n:04d}.wav").write_bytes(wav(1.0))


async def test_the_retention_pass_deletes_only_messages_past_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "voicemail" / "centrex")
    box = spool.root / "k2m4p6q8rs"
    _message(box, 0, NOW - timedelta(days=31))
    _message(box, 1, NOW - timedelta(days=29))
    settings = Settings(_env_file=None, voicemail_retention_days=30)
    mailer = Mailer(settings, sessionmaker=None, spool=spool, clock=lambda: NOW)  # type: ignore[arg-type]
    assert await mailer.expire_once() == 1
    assert [m.info.msg_id for m in spool.messages("k2m4p6q8rs")] == ["1796278227-00000001"]
    assert sorted(p.name for p in (box / "INBOX").iterdir()) == ["msg0001.txt", "msg0001.wav"]
    # Thirty days on, the other one goes too.
    mailer.clock = lambda: NOW + timedelta(days=30)
    assert await mailer.expire_once() == 1
    assert spool.messages("k2m4p6q8rs") == []


def test_the_email_names_the_caller_without_letting_it_write_headers(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    _message(tmp_path / "k2m4p6q8rs", 0, NOW)
    (message,) = spool.messages("k2m4p6q8rs")
    hostile = parse_message(
        MSG_TXT.format(origtime=1).replace('"a9b8c7d6e5" <a9b8c7d6e5>', "x\rBcc: evil@example.com")
    )
    message = type(message)(message.mailbox, message.folder, hostile, message.audio)  # type: ignore[arg-type]
    mail = compose(Settings(_env_file=None), "alice@example.com", message, b"RIFF")
    assert mail["Bcc"] is None and "\r" not in mail["Subject"]
    assert [a.get_filename() for a in mail.iter_attachments()] == [
        "voicemail-1796278227-00000001.wav"
    ]
