"""Music on hold, pure: what an upload must be, and the class names Asterisk knows."""

from __future__ import annotations

import io
import uuid
import wave
from dataclasses import dataclass

MIN_S = 1.0
#: Where the customers' files are, as Asterisk sees the path (beside Debian's own music, in
#: Asterisk's data directory: the same on every node). One directory per customer.
MOH_ROOT = "/usr/share/asterisk/centrex-moh"
FILE_NAME = "music.wav"


def class_name(customer_id: uuid.UUID) -> str:
    """The realtime class of a customer (the view's ``name``)."""
    return f"customer-{customer_id}"


@dataclass(frozen=True)
class Music:
    seconds: float
    size_bytes: int


def music_error(data: bytes, *, max_bytes: int, max_s: int) -> tuple[Music | None, str | None]:
    """The uploaded music, or why it is refused. Asterisk plays ``.wav`` as 8 kHz 16-bit mono
    PCM (format_wav) without converting it: anything else would be noise on hold."""
    if len(data) > max_bytes:
        return None, f"too large ({len(data)} bytes; at most {max_bytes})"
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None, "must be a WAV file (RIFF/WAVE)"
    try:
        with wave.open(io.BytesIO(data)) as w:
            channels, width, rate, frames = (
                w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes(),
            )  # fmt: skip
            audio = w.readframes(frames)
    except (wave.Error, EOFError) as exc:
        return None, f"not a readable PCM WAV file ({exc})"
    if (channels, width, rate) != (1, 2, 8000):
        return None, (
            f"must be 8000 Hz, 16-bit, mono PCM (got {rate} Hz, {width * 8}-bit, "
            f"{channels} channel(s))"
        )
    if len(audio) != frames * 2:
        return None, "the WAV header announces more audio than the file has"
    seconds = frames / rate
    if seconds < MIN_S:
        return None, f"too short ({seconds:.1f} s; at least {MIN_S} s)"
    if seconds > max_s:
        return None, f"too long ({seconds:.1f} s; at most {max_s} s)"
    return Music(seconds, len(data)), None
