"""Portability emails (the porting date and slot; a line's RIO), through the platform's one
SMTP client (centrex/services/notify.py)."""

from __future__ import annotations

from centrex.config import Settings
from centrex.services.notify import send_email


async def send(settings: Settings, recipient: str, subject: str, body: str) -> None:
    await send_email(settings, [recipient], subject, body)
