"""Portability emails (the porting date and slot; a line's RIO): smtplib in a worker thread, so
the event loop never blocks on the mail server. Same settings as centrex.services.notify; kept
apart until the voicemail sender and this one are unified."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from centrex.config import Settings


def _send(settings: Settings, recipient: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=15) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        smtp.send_message(message)


async def send(settings: Settings, recipient: str, subject: str, body: str) -> None:
    await asyncio.to_thread(_send, settings, recipient, subject, body)
