"""Music on hold, pure: what an upload must be, and the class names Asterisk knows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from centrex.core.asterisk_wav import playable_seconds

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
    """The uploaded music, or why it is refused (:mod:`centrex.core.asterisk_wav`)."""
    if len(data) > max_bytes:
        return None, f"too large ({len(data)} bytes; at most {max_bytes})"
    seconds, error = playable_seconds(data, min_s=MIN_S, max_s=max_s)
    if seconds is None:
        return None, error
    return Music(seconds, len(data)), None
