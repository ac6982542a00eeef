"""The private PostgreSQL cluster, the migrations and the session layer, against a real server."""

from __future__ import annotations

import asyncio
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from centrex.config import Settings
from centrex.db import migrate
from centrex.db.models import Customer, Line, SyncState
from centrex.db.session import make_engine, make_sessionmaker, transaction
from centrex.sandbox.postgres import PostgresCluster, free_port, migrated_test_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PostgresCluster]:
    var_dir = tmp_path_factory.mktemp("pgvar")
    c = PostgresCluster(
        Settings(_env_file=None, var_dir=var_dir, database_url=None, pg_port=free_port())
    )
    await asyncio.to_thread(c.start)
    try:
        yield c
    finally:
        await asyncio.to_thread(c.destroy)
        assert not c.is_running()


async def test_cluster_lifecycle(cluster: PostgresCluster) -> None:
    assert cluster.is_running()
    await asyncio.to_thread(cluster.start)  # idempotent
    assert cluster.url.startswith("postgresql+asyncpg://centrex_app:")
    assert f"@127.0.0.1:{cluster.port}/centrex" in cluster.url
    assert stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600

    await asyncio.to_thread(cluster.stop)
    await asyncio.to_thread(cluster.stop)  # idempotent
    assert not cluster.is_running()
    await asyncio.to_thread(cluster.start)
    assert cluster.is_running()


async def test_the_application_is_no_superuser(cluster: PostgresCluster) -> None:
    """It owns its database and what its migrations create, nothing more."""
    conn = await asyncpg.connect(cluster.url.replace("postgresql+asyncpg", "postgresql"))
    try:
        row = await conn.fetchrow(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication FROM pg_roles"
            " WHERE rolname = current_user"
        )
        assert tuple(row) == (False, False, False, False)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE DATABASE not_allowed")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("ALTER SYSTEM SET work_mem = '1GB'")
    finally:
        await conn.close()


async def test_password_required(cluster: PostgresCluster) -> None:
    wrong = cluster.url.replace(cluster.password(), "wrong-password")
    engine = make_engine(wrong)
    try:
        with pytest.raises(Exception, match="password authentication failed"):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()


async def test_migrate_and_use(cluster: PostgresCluster) -> None:
    name = f"t_{uuid.uuid4().hex[:8]}"
    url = await cluster.create_database(name)
    assert url == cluster.url_for(name)
    assert await cluster.create_database(name) == url  # idempotent

    await migrate.upgrade_to_head_async(url)
    await migrate.upgrade_to_head_async(url)  # idempotent
    assert await asyncio.to_thread(migrate.current_revision, url) == migrate.head_revision()
    # The models and the migrations describe the same schema.
    await asyncio.to_thread(migrate.check_models_match, url)

    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    try:
        async with transaction(sessions) as s:
            customer = Customer(name="ACME")
            s.add(customer)
            await s.flush()
            s.add(
                Line(
                    customer_id=customer.id,
                    label="reception",
                    sip_username="acme-100",
                    sip_ha1="0" * 32,
                    sip_realm="centrex",
                )
            )
        async with sessions() as s:
            line = (
                await s.execute(select(Line).where(Line.sip_username == "acme-100"))
            ).scalar_one()
            assert line.sync_state is SyncState.pending
            assert line.max_calls == 2
            assert line.created_at is not None
            # expire_on_commit=False: attributes stay readable after commit.
            await s.commit()
            assert line.label == "reception"

        with pytest.raises(IntegrityError):
            async with transaction(sessions) as s:
                s.add(
                    Line(
                        customer_id=customer.id,
                        label="duplicate",
                        sip_username="acme-100",
                        sip_ha1="1" * 32,
                        sip_realm="centrex",
                    )
                )
        async with sessions() as s:
            count = await s.scalar(text("SELECT count(*) FROM lines"))
            assert count == 1
            indexes = await s.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_lines_customer_live'")
            )
            assert "WHERE (deleted_at IS NULL)" in indexes
    finally:
        await engine.dispose()
        await cluster.drop_database(name)


async def test_migrated_test_database_helper(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CENTREX_DATABASE_URL", raising=False)
    var_dir: Path = tmp_path_factory.mktemp("pghelper")
    async with migrated_test_database(var_dir) as url:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("SELECT count(*) FROM customers")) == 0
        finally:
            await engine.dispose()
    assert not (var_dir / "pg" / "password").exists()
