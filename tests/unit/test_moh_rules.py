"""Per-customer music on hold, pure rules: what an upload must be, and the class name."""

from __future__ import annotations

import io
import uuid
import wave

import pytest

from centrex.moh.rules import class_name, music_error

pytestmark = pytest.mark.unit


def wav(seconds: float, *, rate: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01" * int(rate * seconds) * channels * width)
    return out.getvalue()


def test_a_plain_wav_is_taken_with_its_length():
    music, why = music_error(wav(2.5), max_bytes=10**6, max_s=600)
    assert why is None and music is not None
    assert music.seconds == 2.5 and music.size_bytes == len(wav(2.5))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"not a wav at all", "RIFF/WAVE"),
        (wav(2, rate=16000), "8000 Hz"),
        (wav(2, channels=2), "mono"),
        (wav(2, width=1), "16-bit"),
        (wav(0.5), "too short"),
        (wav(11), "too long"),
        (wav(2)[:-1000], "more audio than the file has"),
        (b"RIFF\xff\xff\xff\xffWAVEfmt ", "not a readable"),
    ],
)
def test_what_asterisk_could_not_play_is_refused(data, says):
    music, why = music_error(data, max_bytes=10**6, max_s=10)
    assert music is None and says in (why or ""), why


def test_size_is_checked_before_anything_is_parsed():
    music, why = music_error(wav(2), max_bytes=1000, max_s=600)
    assert music is None and "too large" in (why or "")


def test_class_name():
    customer = uuid.UUID(int=5)
    assert class_name(customer) == f"customer-{customer}"
