"""Notices to customers by email (a destination suspended, art. 6): a real SMTP client."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

from centrex.config import Settings

log = logging.getLogger(__name__)


def _send(settings: Settings, recipients: list[str], subject: str, body: str) -> None:
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=15) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        for recipient in recipients:  # one message each: customers never see each other
            message = EmailMessage()
            message["From"] = settings.smtp_from
            message["To"] = recipient
            message["Subject"] = subject
            message.set_content(body)
            smtp.send_message(message)


async def send_email(settings: Settings, recipients: list[str], subject: str, body: str) -> None:
    if recipients:
        await asyncio.to_thread(_send, settings, recipients, subject, body)
