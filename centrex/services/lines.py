"""Lines: one database transaction each, which Asterisk reads itself (sorcery realtime,
docs/provisioning-realtime.md): nothing is pushed. A change or a deletion drops Asterisk's cached
copy once committed."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from centrex.asterisk.errors import AsteriskError
from centrex.asterisk.pjsip_objects import DEFAULT_MEDIA_ENCRYPTION
from centrex.core.credentials import generate_credentials
from centrex.core.numbering import NumberError, parse_french_number
from centrex.db.lookup import get_or_404
from centrex.db.models import Customer, Line, PhoneNumber, SyncState
from centrex.extensions import service as extensions
from centrex.services.errors import Conflict, NotFound, ServiceError, UnknownReference
from centrex.services.provisioning import AsteriskProjector
from centrex.services.ring_groups import forget_line

log = logging.getLogger(__name__)

_USERNAME_ATTEMPTS = 5


@dataclass
class CreatedLine:
    line: Line
    password: str  # shown once, never stored


async def get_live_line(session: AsyncSession, line_id: uuid.UUID) -> Line:
    line = await session.get(Line, line_id)
    if line is None or line.deleted_at is not None:
        raise NotFound("line_id", f"no line with id {line_id}", location="path")
    return line


async def get_line_any(session: AsyncSession, line_id: uuid.UUID) -> Line:
    """A line, deleted or not: its records outlive it."""
    return await get_or_404(session, Line, line_id, "line_id", f"no line with id {line_id}")


async def expire_in_asterisk(
    session: AsyncSession, projector: AsteriskProjector, line: Line
) -> bool:
    """Drop Asterisk's cached copy of the line, committed already; on failure the reconciler
    retries (the line stays pending). Returns whether Asterisk was told now."""
    try:
        await projector.forget_line(line.sip_username)
    except AsteriskError as exc:
        line.sync_state = SyncState.pending
        line.sync_error = (
            f"Asterisk could not be told ({exc}): it may use its cached copy of the line until "
            "the reconciler tells it, as soon as it answers"
        )
        log.warning("line %s changed; Asterisk's cache not expired yet: %s", line.sip_username, exc)
        await session.commit()
        return False
    return True


async def create_line(
    session: AsyncSession,
    projector: AsteriskProjector,
    *,
    customer_id: uuid.UUID,
    label: str,
    realm: str,
    max_calls: int | None = None,
    max_call_duration_s: int | None = None,
    media_encryption: str | None = None,
    extension: str | None = None,
) -> CreatedLine:
    if await session.get(Customer, customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {customer_id}")

    for _ in range(_USERNAME_ATTEMPTS):
        # Checked (a chosen one) or picked (the lowest free) again on each attempt: another
        # line may have taken it meanwhile.
        short = await extensions.choose(session, customer_id, extension)
        creds = generate_credentials(realm)
        line = Line(
            id=uuid.uuid4(),
            customer_id=customer_id,
            label=label,
            sip_username=creds.username,
            sip_ha1=creds.ha1,
            sip_realm=realm,
            max_call_duration_s=max_call_duration_s,
            media_encryption=media_encryption or DEFAULT_MEDIA_ENCRYPTION,
            # Asterisk reads the row itself once committed: nothing to push, nothing cached.
            sync_state=SyncState.synced,
        )
        if max_calls is not None:
            line.max_calls = max_calls
        session.add(line)
        await session.flush()  # the line's row before its extension's, which names it
        await extensions.give(session, customer_id, short, line_id=line.id)
        try:
            await session.commit()
        except IntegrityError:
            # A username collision (1 in 31^9 per pair), the extension taken meanwhile, or the
            # customer vanished meanwhile.
            await session.rollback()
            if await session.get(Customer, customer_id) is None:
                raise UnknownReference(
                    "customer_id", f"no customer with id {customer_id}"
                ) from None
            continue
        break
    else:  # pragma: no cover - astronomically unlikely
        raise RuntimeError("could not generate a unique SIP username")

    # The extension is read from its own table (a column_property): the one just given, set
    # here rather than read again (a transaction and a query less per created line).
    set_committed_value(line, "extension", short)
    return CreatedLine(line=line, password=creds.password)


DEFAULT_MAX_CALLS = 2  # contract art. 8


async def update_line(
    session: AsyncSession, line: Line, changes: dict[str, object], projector: AsteriskProjector
) -> Line:
    """Apply a partial update; limits take effect on the next call the daemon decides, media
    encryption on the next call Asterisk sets up (its endpoint is rewritten now, or by the
    reconciler if Asterisk is away)."""
    if "label" in changes and changes["label"] is None:
        raise ServiceError("label", "a line's label cannot be null")
    if changes.get("main_number") is not None:
        changes["main_number"] = await _main_number(session, line, str(changes["main_number"]))
    if "extension" in changes:
        wanted = changes.pop("extension")
        if wanted is None:
            raise ServiceError("extension", "a line always has an extension; choose another")
        if wanted != line.extension:
            await extensions.give(
                session, line.customer_id,
                await extensions.checked_free(session, line.customer_id, str(wanted)),
                line_id=line.id,
            )  # fmt: skip
    for field, value in changes.items():
        if field == "max_calls" and value is None:
            value = DEFAULT_MAX_CALLS
        if field == "media_encryption" and value is None:
            value = DEFAULT_MEDIA_ENCRYPTION
        setattr(line, field, value)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(
            "main_number", "this number is another line's, or the extension was just taken"
        ) from None
    await session.refresh(line, ["extension"])  # read from its own table
    if "media_encryption" in changes:
        await expire_in_asterisk(session, projector, line)
    return line


async def _main_number(session: AsyncSession, line: Line, text: str) -> str:
    try:
        parsed = parse_french_number(text)
    except NumberError as exc:
        raise ServiceError("main_number", str(exc)) from None
    number = await session.get(PhoneNumber, parsed.e164)
    if number is None or number.customer_id != line.customer_id:
        raise ServiceError(
            "main_number", f"{parsed.national} is not a number assigned to this line's customer"
        )
    if number.line_id is not None or number.ring_group_id is not None:
        raise Conflict(
            "main_number",
            f"{parsed.national} is an alias routed to a line or ring group; detach it first",
        )
    return number.e164


async def delete_line(session: AsyncSession, projector: AsteriskProjector, line: Line) -> bool:
    """Soft-delete (CDRs keep naming it): the views no longer show it; then drop Asterisk's
    cached copy, so its devices are refused from the next request.

    Returns False when Asterisk could not be told now: the reconciler does it later.
    """
    line.deleted_at = datetime.now(UTC)
    # Its number is free for another line of the customer; ring groups and aliases forget it.
    line.main_number = None
    await forget_line(session, line.id)
    await extensions.free(session, line_id=line.id)
    await session.commit()
    return await expire_in_asterisk(session, projector, line)


async def list_lines(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Line]:
    query = select(Line).where(Line.deleted_at.is_(None))
    if customer_id is not None:
        query = query.where(Line.customer_id == customer_id)
    if after is not None:
        created_at, line_id = after
        query = query.where(
            (Line.created_at > created_at) | ((Line.created_at == created_at) & (Line.id > line_id))
        )
    query = query.order_by(Line.created_at, Line.id).limit(limit)
    return list((await session.scalars(query)).all())
