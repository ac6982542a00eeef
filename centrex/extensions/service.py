"""Giving lines and ring groups their extension, changing and freeing it. Every function adds
to the caller's transaction; the caller commits (an extension never outlives a failed create).
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.extensions.models import Extension
from centrex.extensions.rules import extension_error, next_free
from centrex.services.errors import Conflict, ServiceError


async def _taken(session: AsyncSession, customer_id: uuid.UUID) -> set[str]:
    rows = await session.scalars(
        select(Extension.extension).where(Extension.customer_id == customer_id)
    )
    return set(rows)


async def checked_free(session: AsyncSession, customer_id: uuid.UUID, extension: str) -> str:
    """``extension`` if it may be one and is free in the customer, else a 4xx naming it."""
    if why := extension_error(extension):
        raise ServiceError("extension", f"{extension!r}: {why}")
    # That one only: reading every extension of the customer made each line cost more than
    # the one before (bench/provisioning.py).
    taken = await session.scalar(
        select(Extension.extension).where(
            Extension.customer_id == customer_id, Extension.extension == extension
        )
    )
    if taken is not None:
        raise Conflict("extension", f"extension {extension} is already taken in this customer")
    return extension


async def choose(session: AsyncSession, customer_id: uuid.UUID, chosen: str | None) -> str:
    """The chosen extension (checked), or the lowest free one.

    Picking takes a transaction-scoped lock on the customer's extensions first: lines created
    at once in one customer would otherwise all pick the same "lowest free" one, and all but
    one fail on the unique index again and again. A chosen one needs no lock: the unique index
    refuses a second taker with a 409."""
    if chosen is not None:
        return await checked_free(session, customer_id, chosen)
    await session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(f"extensions:{customer_id}", 0)))
    )
    return next_free(await _taken(session, customer_id))


async def give(
    session: AsyncSession,
    customer_id: uuid.UUID,
    extension: str,
    *,
    line_id: uuid.UUID | None = None,
    ring_group_id: uuid.UUID | None = None,
) -> None:
    """Replace whatever extension the line or group had (None: it has none from now)."""
    target = Extension.line_id == line_id if line_id else Extension.ring_group_id == ring_group_id
    for old in await session.scalars(select(Extension).where(target)):
        await session.delete(old)  # through the ORM: the audit trail sees it
    await session.flush()  # gone before its successor, which may reuse its primary key
    if extension is not None:
        session.add(
            Extension(
                customer_id=customer_id,
                extension=extension,
                line_id=line_id,
                ring_group_id=ring_group_id,
            )
        )


async def free(session: AsyncSession, *, line_id: uuid.UUID) -> None:
    for old in await session.scalars(select(Extension).where(Extension.line_id == line_id)):
        await session.delete(old)
