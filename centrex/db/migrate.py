"""Alembic, configured in code: no alembic.ini; the scripts live in ``<checkout>/migrations``.

``upgrade_to_head(url)`` for the CLI, ``await upgrade_to_head_async(url)`` from async code (runs
alembic in a worker thread with its own event loop, so the caller's loop keeps running).
Concurrent upgrades are serialised by an advisory lock in ``migrations/env.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(
    os.environ.get("CENTREX_MIGRATIONS_DIR", Path(__file__).resolve().parents[2] / "migrations")
)


def alembic_config(url: str) -> Config:
    """An alembic Config for ``url`` (``postgresql+asyncpg://…``)."""
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(
            f"no alembic scripts in {MIGRATIONS_DIR}; install centrex editable from its checkout "
            "(pip install -e .) or set CENTREX_MIGRATIONS_DIR"
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    # The URL travels in attributes, not in the ini options: '%' in a password would otherwise
    # trip configparser interpolation.
    cfg.attributes["url"] = url
    return cfg


def upgrade_to_head(url: str) -> None:
    """Bring the database at ``url`` to the newest revision (idempotent). Not inside a loop."""
    command.upgrade(alembic_config(url), "head")


async def upgrade_to_head_async(url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, url)


def current_revision(url: str) -> str | None:
    """The revision the database is at (None: not migrated)."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    async def _read() -> str | None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: MigrationContext.configure(c).get_current_revision()
                )
        finally:
            await engine.dispose()

    return asyncio.run(_read())


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def check_models_match(url: str) -> None:
    """Raise ``alembic.util.CommandError`` if the models differ from the migrated schema."""
    command.check(alembic_config(url))


def make_revision(url: str, message: str, *, autogenerate: bool = True) -> None:
    """Write a new script in migrations/versions, diffing the models against ``url``'s schema
    (which must be at head). Review it before committing: autogenerate misses some changes."""
    command.revision(alembic_config(url), message=message, autogenerate=autogenerate)


def main(argv: list[str] | None = None) -> None:
    """``python -m centrex.db.migrate [upgrade | current | revision MESSAGE]`` against the
    configured database (``DATABASE_URL`` or the private cluster, started if needed)."""
    import argparse

    from centrex.sandbox.postgres import PostgresCluster

    p = argparse.ArgumentParser(prog="python -m centrex.db.migrate")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("upgrade", help="upgrade to head")
    sub.add_parser("current", help="print the current revision")
    rev = sub.add_parser("revision", help="autogenerate a new migration")
    rev.add_argument("message")
    args = p.parse_args(argv)

    cluster = PostgresCluster()
    cluster.start()
    if args.cmd == "upgrade":
        upgrade_to_head(cluster.url)
    elif args.cmd == "current":
        print(current_revision(cluster.url))
    else:
        make_revision(cluster.url, args.message)


if __name__ == "__main__":
    main()
