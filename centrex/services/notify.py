"""The one SMTP client of the platform: notices (a destination suspended, art. 6; portability;
non-payment), invoices and voicemail emails all leave through :func:`deliver`.

smtplib in a worker thread (:func:`send_email`, or ``asyncio.to_thread(deliver, …)``): a message
every few seconds at most needs no async client, and the thread keeps the event loop free.
STARTTLS and login are settled here once, from the settings."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage

from centrex.config import Settings


def deliver(settings: Settings, *messages: EmailMessage) -> None:
    """Sends each message over one SMTP connection; raises OSError/SMTPException on failure."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=15) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
        for message in messages:
            smtp.send_message(message)


def plain_message(settings: Settings, recipient: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(body)
    return message


async def send_email(settings: Settings, recipients: list[str], subject: str, body: str) -> None:
    """One message per recipient (customers never see each other's address)."""
    if recipients:
        messages = [plain_message(settings, to, subject, body) for to in recipients]
        await asyncio.to_thread(deliver, settings, *messages)
