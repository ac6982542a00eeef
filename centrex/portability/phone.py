"""3179 from a line: the RIO of the line's main number, said character by character with
Asterisk's own prompts (the ``centrex-rio`` context, SayAlpha) and emailed to the customer.

Called by the call-control daemon before admission: the platform answers the call itself,
nothing is dialled, so it is not routed nor counted against the line's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from sqlalchemy import select

from centrex.asterisk.ari import AriClient
from centrex.asterisk.errors import AsteriskError
from centrex.config import Settings
from centrex.db.models import Customer, Line, PhoneNumber
from centrex.db.session import SessionMaker
from centrex.portability import mailer
from centrex.portability.service import own_rio
from centrex.services.errors import NotFound

log = logging.getLogger(__name__)

RIO_SERVICE = "3179"  # Arcep's number, the same at every operator
RIO_CONTEXT = "centrex-rio"
RIO_VAR = "CENTREX_RIO"


async def line_rio(
    sessionmaker: SessionMaker, settings: Settings, sip_username: str, now: datetime
) -> tuple[str, str, str | None] | None:
    """(RIO, national number, customer email) of the line's main number; None without one."""
    async with sessionmaker() as session:
        line = await session.scalar(
            select(Line).where(Line.sip_username == sip_username, Line.deleted_at.is_(None))
        )
        if line is None or line.main_number is None:
            return None
        number = await session.get(PhoneNumber, line.main_number)
        if number is None:
            return None
        try:
            rio = own_rio(number, settings, now).rio
        except NotFound:
            return None
        customer = await session.get(Customer, line.customer_id)
        return rio, number.national, customer.email if customer else None


async def serve_rio(
    ari: AriClient,
    sessionmaker: SessionMaker,
    settings: Settings,
    channel_id: str,
    sip_username: str,
) -> None:
    """Say the RIO, or hang up: 404 for a line without a number, 503 when the database does
    not answer in time (the caller may retry; nothing is left ringing)."""
    try:
        async with asyncio.timeout(settings.call_path_db_timeout_s):
            found = await line_rio(sessionmaker, settings, sip_username, datetime.now(UTC))
    except Exception:
        log.exception("call %s: 3179 from %s not served; refused", channel_id, sip_username)
        with contextlib.suppress(AsteriskError):
            await ari.hangup(channel_id, "congestion")
        return
    if found is None:
        log.info("call %s: 3179 from %s, a line without a number: 404", channel_id, sip_username)
        with contextlib.suppress(AsteriskError):
            await ari.hangup(channel_id, "unallocated")
        return
    rio, national, email = found
    try:
        await ari.set_variable(channel_id, RIO_VAR, rio)
        await ari.continue_in_dialplan(channel_id, RIO_CONTEXT, RIO_SERVICE)
    except AsteriskError as exc:
        log.info("call %s: 3179 caller gone (%s)", channel_id, exc)
        return
    log.info("call %s: 3179 from %s: RIO of %s said", channel_id, sip_username, national)
    if email:
        # In the background: the mail server's pace is not the call's.
        task = asyncio.create_task(_email(settings, channel_id, email, national, rio))
        _emails.add(task)
        task.add_done_callback(_emails.discard)


_emails: set[asyncio.Task[None]] = set()  # kept referenced until sent


async def _email(settings: Settings, channel_id: str, to: str, national: str, rio: str) -> None:
    try:
        await mailer.send(settings, to, f"RIO of {national}", f"The RIO of your number "
                          f"{national} is {rio}.\n")  # fmt: skip
    except OSError as exc:
        log.warning("call %s: RIO email not sent: %s", channel_id, exc)
