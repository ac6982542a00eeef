"""An uploaded sound Asterisk will play as is (greetings, music on hold), pure: Asterisk plays
``.wav`` files as 8 kHz 16-bit mono PCM (format_wav) without converting them, so anything else
would be silence or noise to the person listening."""

from __future__ import annotations

import io
import wave


def playable_seconds(data: bytes, *, min_s: float, max_s: float) -> tuple[float | None, str | None]:
    """The sound's length in seconds, or why it is refused (a message naming what is wrong)."""
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
    if seconds < min_s:
        return None, f"too short ({seconds:.1f} s; at least {min_s} s)"
    if seconds > max_s:
        return None, f"too long ({seconds:.1f} s; at most {max_s} s)"
    return seconds, None
