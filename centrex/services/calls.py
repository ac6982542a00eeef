"""Calls in progress, as the operator acts on them."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from centrex.asterisk.ari import AriClient
from centrex.audit.recorder import record, values_of
from centrex.db.models import ActiveCall


async def hang_up(session: AsyncSession, ari: AriClient, call: ActiveCall) -> None:
    """Hang up ``call`` through ARI; the daemon sees the hangup and releases the call.

    Nothing changes in the database here, so the audit record is explicit: written first,
    committed once Asterisk took the hangup (a hangup Asterisk refused leaves no record).
    """
    await record(session, ActiveCall, call.id, "hung_up", before=values_of(call))
    await ari.hangup(call.channel_id, "normal")
    await session.commit()
