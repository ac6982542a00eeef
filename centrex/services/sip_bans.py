"""SIP bans as the API lifts them (the guard inserts them: centrex.guard)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import record
from centrex.db.models import SipBan


def in_force() -> ColumnElement[bool]:
    return (SipBan.lifted_at.is_(None)) & (SipBan.until > func.now())


async def lift(session: AsyncSession, address: str) -> int:
    """Lift the bans in force on ``address``, each recorded; how many. Committed by the
    caller."""
    lifted = await session.execute(
        update(SipBan)
        .where(SipBan.address == address, in_force())
        .values(lifted_at=func.now(), lifted_by="api")
        .returning(SipBan.id, SipBan.lifted_at, SipBan.lifted_by)
        .execution_options(audited="record() below")
    )
    rows = lifted.all()
    for ban in rows:
        before = {"lifted_at": None, "lifted_by": None}
        after = {"lifted_at": ban.lifted_at, "lifted_by": ban.lifted_by}
        await record(session, SipBan, ban.id, "updated", before=before, after=after)
    return len(rows)
