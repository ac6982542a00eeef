"""Voicemail in the customer's personal data (art. 13, centrex/contracts/gdpr.py).

Export: each mailbox's settings (the PIN withheld) and each message's metadata with its download
link (live lines; a deleted line's messages are listed until their retention ends, without a
link: the API no longer serves that line). Erasure: every message of the customer's lines is
deleted, audio and metadata file alike, and the uploaded greetings (a voice is personal data);
the mailbox rows lose their email and PIN; the email deliveries keep only a message id, a line
and a time (no caller, no address): pseudonymous, kept as the record that an email was sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import record
from centrex.db.models import Line
from centrex.voicemail.models import VoicemailBox, VoicemailDelivery
from centrex.voicemail.spool import Spool


async def export(session: AsyncSession, spool: Spool, lines: list[Line]) -> dict[str, Any]:
    boxes = {
        b.line_id: b
        for b in await session.scalars(
            select(VoicemailBox).where(VoicemailBox.line_id.in_([ln.id for ln in lines]))
        )
    }
    mailboxes, messages = [], []
    for line in lines:
        box = boxes.get(line.id)
        if box is not None:
            mailboxes.append({
                "line_id": line.id, "enabled": box.enabled, "email": box.email,
                "pin_set": bool(box.pin), "greeting_seconds": box.greeting_seconds,
            })  # fmt: skip
        for m in await asyncio.to_thread(spool.messages, line.sip_username):
            link = None if line.deleted_at else f"/v1/lines/{line.id}/voicemails/{m.info.msg_id}"
            messages.append({
                "line_id": line.id, "id": m.info.msg_id, "folder": m.folder,
                "caller_id": m.info.caller_id, "received_at": m.info.received_at,
                "duration_s": m.info.duration_s, "size_bytes": m.size, "download": link,
            })  # fmt: skip
    return {"mailboxes": mailboxes, "messages": messages}


def _erase_files(spool: Spool, usernames: list[str]) -> int:
    erased = 0
    for name in usernames:
        for message in spool.messages(name):
            spool.delete(message)
            erased += 1
        spool.remove_greeting(name)
    return erased


async def erase(session: AsyncSession, spool: Spool, lines: list[Line]) -> int:
    """Delete the lines' messages and greetings; the number of messages deleted. Audited (one
    entry per line with messages); committed by the caller with the rest of the erasure."""
    ids = [ln.id for ln in lines]
    # Through the ORM, so the audit trail has each change (no bulk UPDATE).
    for box in await session.scalars(select(VoicemailBox).where(VoicemailBox.line_id.in_(ids))):
        box.email = box.pin = box.greeting_seconds = None
    failed = select(VoicemailDelivery).where(
        VoicemailDelivery.line_id.in_(ids), VoicemailDelivery.last_error.is_not(None)
    )
    for delivery in await session.scalars(failed):
        delivery.last_error = None  # an SMTP error may quote the address
    total = 0
    for line in lines:
        n = await asyncio.to_thread(_erase_files, spool, [line.sip_username])
        if n:
            await record(session, VoicemailBox, str(line.id), "erased",
                         before={"messages": n})  # fmt: skip
        total += n
    return total
