"""Alembic environment: async engine (asyncpg), URL from ``config.attributes['url']``.

Driven by ``centrex.db.migrate`` (there is no alembic.ini): ``upgrade_to_head(url)``,
``make_revision(url, message)``, or ``python -m centrex.db.migrate --help``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

# Each domain's tables join Base.metadata when its models are imported.
import centrex.access.models
import centrex.audit.models
import centrex.billing.bank_models
import centrex.billing.models
import centrex.contracts.models
import centrex.extensions.models
import centrex.features.models
import centrex.moh.models
import centrex.portability.models
import centrex.voicemail.models  # noqa: F401
from centrex.db.models import Base

config = context.config
target_metadata = Base.metadata

# Any constant: every process migrating the same database queues on it.
MIGRATION_LOCK_KEY = 0x63656E7472  # "centr"


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use centrex.db.migrate.upgrade_to_head(url)")
    return url


#: Tables of Kamailio's own schema (migration 0034_edge_location): the SIP edge reads and writes
#: them, the application never does, so they have no model and autogenerate leaves them alone.
KAMAILIO_TABLES = frozenset({"kamailio_location", "version"})


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in KAMAILIO_TABLES


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller-provided (sync facade of an async) connection
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
