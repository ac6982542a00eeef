"""Opaque keyset cursors: ``(timestamp, id)`` of the last item of a page, base64-encoded."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from centrex.services.errors import ServiceError


def encode_cursor(at: datetime, item_id: uuid.UUID) -> str:
    raw = f"{at.isoformat()}|{item_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, item_id = raw.split("|")
        return datetime.fromisoformat(at), uuid.UUID(item_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ServiceError(
            "cursor", "not a cursor returned by this API", location="query"
        ) from None
