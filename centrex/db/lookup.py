"""Fetch a row by its primary key or answer 404 naming the path parameter: the one way every
service says "no such thing"."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from centrex.services.errors import NotFound

T = TypeVar("T")


async def get_or_404(
    session: AsyncSession, model: type[T], key: Any, field: str, message: str, **options: Any
) -> T:
    """``session.get(model, key, **options)``, or NotFound(field, message) in the path."""
    row = await session.get(model, key, **options)
    if row is None:
        raise NotFound(field, message, location="path")
    return row
