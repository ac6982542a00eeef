"""Renewing a line's SIP credentials (contract art. 16, 17: lost or stolen credentials are
renewed at once), keeping the line itself: username, numbers, ring groups, history.

The database first, in one transaction: the new hash, the audit record, and a note that the
old devices are still to be removed. Then Asterisk: the auth (from then on the old password is
refused), then the registrations. If Asterisk cannot be told now, the renewal stands (the
database is the truth) and the answer says so: the reconciler expires the cached hash and removes
the old registrations as soon as Asterisk answers. Refusing instead would leave the stolen
password working after Asterisk is back, until an operator retries.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.access.principal import Principal
from centrex.asterisk.errors import AsteriskError, AsteriskUnavailable
from centrex.core.credentials import renewed_credentials
from centrex.db.models import CredentialRenewal, Line, SyncState
from centrex.services.errors import Conflict
from centrex.services.provisioning import AsteriskProjector

log = logging.getLogger(__name__)

PENDING = (
    "credentials renewed in the database, but Asterisk could not be told ({error}): until it "
    "is, Asterisk still accepts the OLD password and the old device stays registered. The "
    "reconciler expires the cached credentials and removes the old registration as soon as "
    "Asterisk answers; this line's sync_state turns to synced then."
)


@dataclass
class RenewedLine:
    line: Line
    password: str  # shown once, never stored
    renewal: CredentialRenewal


async def renew_credentials(
    session: AsyncSession,
    projector: AsteriskProjector,
    line: Line,
    *,
    actor: str,
    reason: str,
    by: Principal,
) -> RenewedLine:
    creds = renewed_credentials(line.sip_username, line.sip_realm)
    line.sip_ha1 = creds.ha1
    line.registrations_purge_pending = True
    line.sync_state = SyncState.pending
    line.sync_error = PENDING.format(error="not tried yet")
    renewal = CredentialRenewal(
        line_id=line.id, actor=actor, reason=reason, principal=by.name,
        principal_token_id=by.token_id,
    )  # fmt: skip
    session.add(renewal)
    await session.commit()
    log.warning("line %s: SIP credentials renewed by %s: %s", line.sip_username, actor, reason)

    try:
        # Asterisk reads the new hash from the database once its cached auth is dropped: from
        # then on the old password is refused (every REGISTER and INVITE is checked against the
        # auth). Then the devices registered with the old one go.
        await projector.forget_line(line.sip_username, drop_registrations=True)
    except AsteriskError as exc:
        kind = "unreachable" if isinstance(exc, AsteriskUnavailable) else "refused"
        line.sync_error = PENDING.format(error=f"Asterisk {kind}: {exc}")
        log.error("line %s: renewed credentials not in Asterisk yet: %s", line.sip_username, exc)
        await session.commit()
    else:
        if not await mark_registrations_purged(session, line.id, creds.ha1):
            _superseded()
        await session.refresh(line)
    return RenewedLine(line=line, password=creds.password, renewal=renewal)


def _superseded() -> None:
    """Another renewal of the line committed after ours: Asterisk reads the line's current hash
    (the other one's); show nobody our password."""
    raise Conflict(
        "line_id",
        "another renewal of this line's credentials was made at the same time; its password "
        "is the line's, this one was never valid",
        location="path",
    )


async def mark_registrations_purged(session: AsyncSession, line_id: uuid.UUID, ha1: str) -> bool:
    """Asterisk holds the hash ``ha1`` and the line's old devices are gone. Only if ``ha1`` is
    still the line's hash (False otherwise): a renewal committed meanwhile has its own old
    devices to remove."""
    result = await session.execute(
        update(Line)
        .where(Line.id == line_id, Line.sip_ha1 == ha1)
        .values(registrations_purge_pending=False, sync_state=SyncState.synced, sync_error=None)
        # The sync state with Asterisk only: bookkeeping, not recorded (centrex.audit.recorder).
        .execution_options(audited="bookkeeping only")
    )
    await session.commit()
    return bool(result.rowcount)


async def renewals_of(session: AsyncSession, line_id: uuid.UUID) -> list[CredentialRenewal]:
    rows = await session.scalars(
        select(CredentialRenewal)
        .where(CredentialRenewal.line_id == line_id)
        .order_by(CredentialRenewal.created_at, CredentialRenewal.id)
    )
    return list(rows.all())
