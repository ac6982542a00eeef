"""Issue 13: the audit recorder in the test process, on the real PostgreSQL: a change and its
record commit or roll back together; a write the ORM does not see is refused unless accounted
for; only the recorder writes the log; nothing is recorded outside an API request."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update

from centrex.access.principal import Principal
from centrex.audit.models import AuditEntry
from centrex.audit.recorder import AuditedSession, AuditError, audit_context
from centrex.db.models import Customer
from centrex.db.session import SessionMaker, make_engine, make_sessionmaker

pytestmark = pytest.mark.integration

ROBOT = Principal(token_id=uuid.uuid4(), name="billing robot", scope="operator")


@pytest.fixture
async def sessionmaker(database_url: str) -> AsyncIterator[SessionMaker]:
    engine = make_engine(database_url)
    yield make_sessionmaker(engine, sync_session_class=AuditedSession)
    await engine.dispose()


async def records_of(sessionmaker: SessionMaker, object_id: object) -> list[AuditEntry]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEntry).where(AuditEntry.object_id == str(object_id))
        )
        return list(rows.all())


async def test_a_change_and_its_record_commit_or_roll_back_together(sessionmaker):
    with audit_context(ROBOT, "TEST rolled back"):
        async with sessionmaker() as session:
            gone = Customer(name="never was")
            session.add(gone)
            await session.flush()
            # Written by the flush, in its transaction ...
            assert (
                await session.scalar(
                    select(AuditEntry.operation).where(AuditEntry.object_id == str(gone.id))
                )
                == "TEST rolled back"
            )
            await session.rollback()
    # ... so the rollback took it away with the change.
    assert await records_of(sessionmaker, gone.id) == []

    with audit_context(ROBOT, "TEST committed"):
        async with sessionmaker() as session:
            kept = Customer(name="kept")
            session.add(kept)
            await session.commit()
    (row,) = await records_of(sessionmaker, kept.id)
    assert (row.token_id, row.token_name, row.operation) == (ROBOT.token_id, ROBOT.name,
                                                             "TEST committed")  # fmt: skip
    assert (row.object_type, row.change, row.after["name"]) == ("customer", "created", "kept")


async def test_outside_an_api_request_nothing_is_recorded(sessionmaker):
    # The reconciler, the CDR purge, the daemon: no audit context.
    async with sessionmaker() as session:
        customer = Customer(name="background")
        session.add(customer)
        await session.commit()
        customer.name = "still background"
        await session.commit()
    assert await records_of(sessionmaker, customer.id) == []


async def test_a_write_the_orm_does_not_see_must_be_accounted_for(sessionmaker):
    async with sessionmaker() as session:
        customer = Customer(name="bulk")
        session.add(customer)
        await session.commit()
        rename = update(Customer).where(Customer.id == customer.id).values(name="renamed")
        with audit_context(ROBOT, "TEST bulk"):
            with pytest.raises(AuditError, match="bypasses the audit trail"):
                await session.execute(rename)
            await session.rollback()
            # Marked as accounted for (its record written explicitly): allowed.
            await session.execute(rename.execution_options(audited="test: nothing to record"))
            await session.commit()
        # Outside a request: not the API's change.
        await session.execute(rename.values(name="renamed again"))
        await session.commit()


async def test_only_the_recorder_writes_the_log(sessionmaker):
    forged = AuditEntry(token_name="forger", operation="x", object_type="customer",
                        object_id="x", change="created")  # fmt: skip
    async with sessionmaker() as session:
        session.add(forged)
        with pytest.raises(AuditError, match=r"written by centrex\.audit\.recorder only"):
            await session.commit()
