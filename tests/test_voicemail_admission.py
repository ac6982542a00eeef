"""Admission to a mailbox on real PostgreSQL (no Asterisk): a line at its limit sends a new call
to its mailbox, counted on the caller alone, also when the call is decided again; *98 is a call
of the line. Lines written straight into a database of this module's own."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from test_admission_db import make_lines

from centrex.control.call_registry import AdmittedCall, CallRegistry
from centrex.core.routing import Refuse
from centrex.db.session import make_engine
from centrex.sandbox.postgres import migrated_test_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def database_url(tmp_path_factory: pytest.TempPathFactory):
    async with migrated_test_database(tmp_path_factory.mktemp("pg-vm-admission")) as url:
        yield url


async def legs_of(url: str, line_id) -> int:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM active_call_legs WHERE line_id = $1", line_id
        )
    finally:
        await conn.close()


async def set_mailbox(url: str, line_id, enabled: bool) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(
            "INSERT INTO voicemail_boxes (line_id, enabled) VALUES ($1, $2)"
            " ON CONFLICT (line_id) DO UPDATE SET enabled = $2", line_id, enabled,
        )  # fmt: skip
    finally:
        await conn.close()


async def test_a_full_line_s_calls_go_to_its_mailbox_counted_on_the_caller_alone(database_url):
    first, caller, callee = await make_lines(database_url, 3, max_calls=1)
    engine = make_engine(database_url)
    registry = CallRegistry(engine, "node-vm", 7200)

    async def call(channel: str, src, dst: str):
        return await registry.admit(
            channel_id=channel, endpoint=src.sip_username, dialled=dst, caller_number="",
            now=datetime.now(UTC),
        )  # fmt: skip

    try:
        ringing = await call("vm-1", first, callee.sip_username)  # the callee's one call
        assert isinstance(ringing, AdmittedCall) and ringing.mailbox == callee.sip_username
        # Its mailbox is on (the platform default of a fresh database): a second caller goes
        # there, and the callee keeps its one call.
        diverted = await call("vm-2", caller, callee.sip_username)
        assert isinstance(diverted, AdmittedCall), diverted
        assert (diverted.mailbox_only, diverted.mailbox, diverted.dial) == (
            True, callee.sip_username, ""
        )  # fmt: skip
        assert await legs_of(database_url, callee.id) == 1
        assert await legs_of(database_url, caller.id) == 1
        # Decided again (a daemon reconnecting): still the mailbox, never a ring.
        again = await call("vm-2", caller, callee.sip_username)
        assert isinstance(again, AdmittedCall) and again.mailbox_only and again.resumed
        assert again.call_id == diverted.call_id
        await registry.release("vm-2")
        # Off: 486 as before; the caller at its limit: 486 too, mailbox or not.
        await set_mailbox(database_url, callee.id, False)
        refused = await call("vm-3", caller, callee.sip_username)
        assert isinstance(refused, Refuse) and refused.reason == "busy"
        await set_mailbox(database_url, callee.id, True)
        refused = await call("vm-4", first, callee.sip_username)  # first is in its call
        assert isinstance(refused, Refuse) and "caller" in refused.why
        # *98: a call of the line itself, counted; with its one call up, the next is refused.
        own = await call("vm-5", caller, "*98")
        assert isinstance(own, AdmittedCall) and own.own_mailbox
        assert own.mailbox == caller.sip_username
        assert await legs_of(database_url, caller.id) == 1
        assert isinstance(await call("vm-6", caller, "*98"), Refuse)
    finally:
        await registry.aclose()
        await engine.dispose()
