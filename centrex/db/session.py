"""Engines and sessions. Nothing is created at import time: the app owns its engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ARRAY, BindParameter, bindparam
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionMaker = async_sessionmaker[AsyncSession]


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``postgresql+asyncpg://…``; kwargs go to ``create_async_engine``."""
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://…`` as asyncpg itself takes it (for its own pools and
    connections, outside SQLAlchemy)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_sessionmaker(engine: AsyncEngine, **kwargs: Any) -> SessionMaker:
    """kwargs go to ``async_sessionmaker`` (the API's: ``sync_session_class``, audited)."""
    return async_sessionmaker(engine, expire_on_commit=False, **kwargs)


@asynccontextmanager
async def transaction(sessionmaker: SessionMaker) -> AsyncIterator[AsyncSession]:
    """A session inside one transaction: commits on success, rolls back on error."""
    async with sessionmaker() as session, session.begin():
        yield session


def array_of(values: list, item_type: type) -> BindParameter:
    """One array parameter (``= ANY(:p)``) for a list of any length: an IN list of 100,000
    values would be 100,000 parameters, past what PostgreSQL's protocol carries (32,767)."""
    return bindparam(None, values, type_=ARRAY(item_type))
