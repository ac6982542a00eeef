"""A customer's music on hold through the API: the row Asterisk's realtime view reads, and the
file in Asterisk's data directory (written in a thread; the API runs on the host of its
Asterisk, as for voicemail's spool)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path, PurePosixPath

from sqlalchemy.ext.asyncio import AsyncSession

from centrex.config import Settings
from centrex.db.models import Customer
from centrex.moh.models import CustomerMusicOnHold
from centrex.moh.rules import FILE_NAME, MOH_ROOT, class_name, music_error
from centrex.services.errors import NotFound, ServiceError


def moh_root(settings: Settings) -> Path:
    from centrex.sandbox.asterisk import AsteriskSandbox

    return AsteriskSandbox(settings).host_path(PurePosixPath(MOH_ROOT))


def _out(customer_id: uuid.UUID, row: CustomerMusicOnHold | None) -> dict:
    if row is None:
        return {"customer_id": customer_id, "music": "default", "seconds": None,
                "size_bytes": None, "uploaded_at": None}  # fmt: skip
    return {"customer_id": customer_id, "music": "uploaded", "class": class_name(customer_id),
            "seconds": row.seconds, "size_bytes": row.size_bytes,
            "uploaded_at": row.uploaded_at}  # fmt: skip


async def _customer(session: AsyncSession, customer_id: uuid.UUID) -> Customer:
    customer = await session.get(Customer, customer_id)
    if customer is None:
        raise NotFound("customer_id", f"no customer with id {customer_id}", location="path")
    return customer


async def get_music(session: AsyncSession, customer_id: uuid.UUID) -> dict:
    await _customer(session, customer_id)
    return _out(customer_id, await session.get(CustomerMusicOnHold, customer_id))


def _write(root: Path, customer_id: uuid.UUID, data: bytes) -> None:
    directory = root / str(customer_id)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        root.chmod(0o755)
        directory.chmod(0o755)
    tmp = directory / f".{FILE_NAME}.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o644)  # Asterisk's user reads it
    os.replace(tmp, directory / FILE_NAME)  # never half a file played


def _remove(root: Path, customer_id: uuid.UUID) -> None:
    directory = root / str(customer_id)
    for path in (directory / FILE_NAME, directory / f".{FILE_NAME}.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


async def upload(
    session: AsyncSession, root: Path, customer_id: uuid.UUID, data: bytes, settings: Settings
) -> dict:
    await _customer(session, customer_id)
    music, why = music_error(data, max_bytes=settings.moh_max_bytes, max_s=settings.moh_max_s)
    if music is None:
        raise ServiceError("music", why or "refused")
    row = await session.get(CustomerMusicOnHold, customer_id)
    if row is None:
        row = CustomerMusicOnHold(customer_id=customer_id)
        session.add(row)
    row.seconds, row.size_bytes = music.seconds, music.size_bytes
    await session.flush()
    # The file first, then the commit: the view names the class only once its file is there.
    await asyncio.to_thread(_write, root, customer_id, data)
    await session.commit()
    await session.refresh(row)
    return _out(customer_id, row)


async def remove(session: AsyncSession, root: Path, customer_id: uuid.UUID) -> dict:
    await _customer(session, customer_id)
    row = await session.get(CustomerMusicOnHold, customer_id)
    if row is not None:
        await session.delete(row)
        await session.commit()  # the class is gone from the view before its file
    await asyncio.to_thread(_remove, root, customer_id)
    return _out(customer_id, None)
