"""A line's mailbox through the API: its settings, its messages, its greeting.

Settings are rows (read by Asterisk through the realtime view: no reload); messages and the
greeting are files in Asterisk's spool (:mod:`.spool`), handled in a thread. Every change is
in the audit trail: rows through the ORM, file changes with :func:`record`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import AUDITED_OPTION, record
from centrex.db.models import Line
from centrex.services.errors import NotFound, ServiceError
from centrex.voicemail.models import VoicemailBox, VoicemailPlatform
from centrex.voicemail.rules import greeting_error, msg_id_error, pin_error
from centrex.voicemail.schemas import VoicemailMessage, VoicemailOut
from centrex.voicemail.spool import Spool, StoredMessage


async def set_platform_default(session: AsyncSession, enabled: bool) -> None:
    """The default the realtime view applies to lines that never set their mailbox."""
    statement = insert(VoicemailPlatform).values(id=1, default_enabled=enabled)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["id"], set_={"default_enabled": enabled}),
        execution_options={AUDITED_OPTION: "platform setting written at start, not an API change"},
    )
    await session.commit()


async def _box(session: AsyncSession, line: Line) -> VoicemailBox | None:
    return await session.get(VoicemailBox, line.id)


def _out(box: VoicemailBox | None, default_enabled: bool) -> VoicemailOut:
    return VoicemailOut(
        enabled=default_enabled if box is None else box.enabled,
        pin_set=bool(box and box.pin),
        email=box.email if box else None,
        greeting="uploaded" if box and box.greeting_seconds else "default",
        greeting_seconds=box.greeting_seconds if box else None,
    )


async def get_settings(session: AsyncSession, line: Line, default_enabled: bool) -> VoicemailOut:
    return _out(await _box(session, line), default_enabled)


async def _own_box(session: AsyncSession, line: Line, default_enabled: bool) -> VoicemailBox:
    box = await _box(session, line)
    if box is None:
        box = VoicemailBox(line_id=line.id, enabled=default_enabled)
        session.add(box)
    return box


async def update_settings(
    session: AsyncSession, line: Line, changes: dict[str, Any], default_enabled: bool
) -> VoicemailOut:
    if "enabled" in changes and changes["enabled"] is None:
        raise ServiceError("enabled", "must be true or false")
    if changes.get("pin") is not None and (why := pin_error(changes["pin"])):
        raise ServiceError("pin", why)
    box = await _own_box(session, line, default_enabled)
    for field, value in changes.items():
        setattr(box, field, value)
    await session.commit()
    return _out(box, default_enabled)


def _message_out(message: StoredMessage) -> VoicemailMessage:
    info = message.info
    return VoicemailMessage(
        id=info.msg_id, folder=message.folder, caller_id=info.caller_id,  # type: ignore[arg-type]
        received_at=info.received_at, duration_s=info.duration_s, size_bytes=message.size,
    )  # fmt: skip


async def list_messages(spool: Spool, line: Line) -> list[VoicemailMessage]:
    messages = await asyncio.to_thread(spool.messages, line.sip_username)
    return [_message_out(m) for m in messages]


async def find_message(spool: Spool, line: Line, msg_id: str) -> StoredMessage:
    if why := msg_id_error(msg_id):
        raise ServiceError("msg_id", why, location="path")
    message = await asyncio.to_thread(spool.find, line.sip_username, msg_id)
    if message is None:
        raise NotFound("msg_id", f"no message {msg_id} in this mailbox", location="path")
    return message


async def delete_message(session: AsyncSession, spool: Spool, line: Line, msg_id: str) -> None:
    message = await find_message(spool, line, msg_id)
    before = _message_out(message).model_dump(mode="json")
    await record(session, VoicemailBox, f"{line.id}/{msg_id}", "deleted", before=before)
    await asyncio.to_thread(spool.delete, message)
    await session.commit()


async def upload_greeting(
    session: AsyncSession, spool: Spool, line: Line, data: bytes, *, max_s: int,
    default_enabled: bool,
) -> VoicemailOut:  # fmt: skip
    greeting, why = greeting_error(data, max_s)
    if greeting is None:
        raise ServiceError("greeting", why or "refused")
    box = await _own_box(session, line, default_enabled)
    box.greeting_seconds = greeting.seconds
    await session.flush()
    await asyncio.to_thread(spool.write_greeting, line.sip_username, data)
    await session.commit()
    return _out(box, default_enabled)


async def remove_greeting(
    session: AsyncSession, spool: Spool, line: Line, default_enabled: bool
) -> VoicemailOut:
    box = await _own_box(session, line, default_enabled)
    box.greeting_seconds = None
    await session.flush()
    await asyncio.to_thread(spool.remove_greeting, line.sip_username)
    await session.commit()
    return _out(box, default_enabled)


async def emails_of(session: AsyncSession, usernames: list[str]) -> dict[str, tuple[Any, Any]]:
    """username -> (line id, email or None), live lines only."""
    rows = await session.execute(
        select(Line.sip_username, Line.id, VoicemailBox.email)
        .outerjoin(VoicemailBox, VoicemailBox.line_id == Line.id)
        .where(Line.sip_username.in_(usernames), Line.deleted_at.is_(None))
    )
    return {name: (line_id, email) for name, line_id, email in rows}
