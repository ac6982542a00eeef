"""Emails of new messages, and the end of old ones: two loops of the API process.

Asterisk cannot send the emails (no sendmail in its root, and none wanted): the API looks in
the spool every ``voicemail_scan_interval_s`` for messages it has not seen, records each one in
``voicemail_deliveries``, and sends each due one with the WAV attached, its row locked meanwhile
(``FOR UPDATE SKIP LOCKED``: two API processes never both send it). A refused or unreachable
SMTP server is retried, waiting longer each time
(:func:`~centrex.voicemail.rules.email_retry_after`), and counted in
``centrex_voicemail_emails_total{outcome="failed"}``.

Sent through the platform's one SMTP client (centrex/services/notify.py), in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from centrex import metrics
from centrex.config import Settings
from centrex.db.session import SessionMaker
from centrex.services.notify import deliver
from centrex.voicemail.models import VoicemailDelivery
from centrex.voicemail.rules import email_retry_after, expired
from centrex.voicemail.service import emails_of
from centrex.voicemail.spool import Spool, StoredMessage

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _printable(text: str, limit: int = 80) -> str:
    """A caller-controlled value as it may appear in a header: no line break, no control."""
    return "".join(c for c in text if c.isprintable())[:limit] or "unknown"


def compose(settings: Settings, to: str, message: StoredMessage, audio: bytes) -> EmailMessage:
    info = message.info
    caller = _printable(info.caller_id)
    email = EmailMessage()
    email["From"] = settings.smtp_from
    email["To"] = to
    email["Subject"] = f"New voicemail from {caller} ({info.duration_s} s)"
    email.set_content(
        f"A message was left on your line {message.mailbox}.\n\n"
        f"From: {caller}\nReceived: {info.received_at.isoformat()}\n"
        f"Length: {info.duration_s} s\n\nThe recording is attached (WAV).\n"
    )
    email.add_attachment(
        audio, maintype="audio", subtype="wav", filename=f"voicemail-{info.msg_id}.wav"
    )
    return email


class Mailer:
    def __init__(
        self, settings: Settings, sessionmaker: SessionMaker, spool: Spool,
        clock: Clock = utc_now,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.spool = spool
        self.clock = clock

    def _all_messages(self) -> dict[str, StoredMessage]:
        spool = self.spool
        return {m.info.msg_id: m for box in spool.mailboxes() for m in spool.messages(box)}

    async def deliver_once(self) -> None:
        now = self.clock()
        messages = await asyncio.to_thread(self._all_messages)
        async with self.sessionmaker() as session:
            if messages:
                known = set(
                    await session.scalars(
                        select(VoicemailDelivery.msg_id).where(
                            VoicemailDelivery.msg_id.in_(list(messages))
                        )
                    )
                )
                new = [m for i, m in messages.items() if i not in known]
                lines = await emails_of(session, sorted({m.mailbox for m in new}))
                for m in new:
                    if m.mailbox in lines:
                        await session.execute(
                            insert(VoicemailDelivery)
                            .values(
                                msg_id=m.info.msg_id,
                                line_id=lines[m.mailbox][0],
                                attempts=0,
                                next_attempt_at=now,
                            )
                            .on_conflict_do_nothing()
                        )
                await session.commit()
            # One due email at a time, locked while it is sent (SKIP LOCKED: another API process
            # takes the next one): never sent twice. Each leaves the due set (sent, or retried
            # later), so the loop ends.
            for _ in range(50):
                delivery = await session.scalar(
                    select(VoicemailDelivery)
                    .where(VoicemailDelivery.sent_at.is_(None))
                    .where(VoicemailDelivery.next_attempt_at <= now)
                    .order_by(VoicemailDelivery.next_attempt_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                if delivery is None:
                    break
                await self._deliver(session, delivery, messages.get(delivery.msg_id), now)

    async def _deliver(
        self,
        session: AsyncSession,
        delivery: VoicemailDelivery,
        message: StoredMessage | None,
        now: datetime,
    ) -> None:
        done: dict[str, object] = {"sent_at": now}
        email_to = None
        if message is not None:
            lines = await emails_of(session, [message.mailbox])
            email_to = lines.get(message.mailbox, (None, None))[1]
        if message is None:
            done["last_error"] = "deleted before it could be sent"
        elif email_to is None:
            done["last_error"] = "no email address"
            metrics.VOICEMAIL_EMAILS.labels("no_address").inc()
        else:
            try:
                audio = await asyncio.to_thread(message.audio.read_bytes)
                email = compose(self.settings, email_to, message, audio)
                await asyncio.to_thread(deliver, self.settings, email)
            except (OSError, smtplib.SMTPException) as exc:
                attempts = delivery.attempts + 1
                wait = email_retry_after(attempts, self.settings.voicemail_email_retry_s)
                log.warning("voicemail %s: email not sent (%r); retry in %.0f s",
                            delivery.msg_id, exc, wait)  # fmt: skip
                metrics.VOICEMAIL_EMAILS.labels("failed").inc()
                done = {
                    "attempts": attempts,
                    "next_attempt_at": now + timedelta(seconds=wait),
                    "last_error": repr(exc)[:500],
                }
            else:
                metrics.VOICEMAIL_EMAILS.labels("sent").inc()
                log.info("voicemail %s: emailed", delivery.msg_id)
        await session.execute(
            update(VoicemailDelivery)
            .where(VoicemailDelivery.msg_id == delivery.msg_id)
            .values(**done)
        )
        await session.commit()

    async def expire_once(self) -> int:
        """Delete the messages past ``voicemail_retention_days``; how many."""
        now, days = self.clock(), self.settings.voicemail_retention_days

        def purge() -> int:
            messages = self._all_messages().values()
            old = [m for m in messages if expired(m.info.received_at, now, days)]
            for message in old:
                self.spool.delete(message)
            return len(old)

        count = await asyncio.to_thread(purge)
        if count:
            metrics.VOICEMAIL_MESSAGES_EXPIRED.inc(count)
            log.info("voicemail retention: %d messages older than %d days deleted", count, days)
        return count

    async def deliver_forever(self) -> None:
        while True:
            try:
                await self.deliver_once()
            except Exception:
                log.exception("voicemail delivery pass failed; retrying")
            await asyncio.sleep(self.settings.voicemail_scan_interval_s)

    async def expire_forever(self) -> None:
        while True:
            try:
                await self.expire_once()
            except Exception:
                log.exception("voicemail retention pass failed; retrying")
            await asyncio.sleep(self.settings.voicemail_retention_interval_s)
