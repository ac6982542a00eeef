"""Bulk import of lines: up to 100,000 in one transaction, all or nothing.

The rows are checked first (centrex.core.bulk_rows, the API's own LineIn rules), then their
customers, all at once; only then is anything written, in chunks, inside one transaction, so a
failure at any point leaves the database as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy import String, Uuid, any_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.api.schemas import LineIn
from centrex.asterisk.pjsip_objects import DEFAULT_MEDIA_ENCRYPTION
from centrex.audit.recorder import record
from centrex.core.bulk_rows import CheckedRows, RowError
from centrex.core.credentials import generate_credentials
from centrex.db.models import Customer, Line, SyncState
from centrex.db.session import array_of
from centrex.services.lines import DEFAULT_MAX_CALLS

CHUNK = 5_000  # rows per INSERT: progress is told between chunks


@dataclass(frozen=True)
class ImportedLine:
    row: int
    id: uuid.UUID
    customer_id: uuid.UUID
    label: str
    sip_username: str
    sip_password: str  # shown once, in the import's answer; never stored


async def unknown_customers(session: AsyncSession, checked: CheckedRows[LineIn]) -> None:
    """Refuse, row by row, the rows whose customer does not exist."""
    wanted = {row.customer_id for row in checked.rows}
    found = set(await session.scalars(select(Customer.id).where(
        Customer.id == any_(array_of(list(wanted), Uuid)))))  # fmt: skip
    for number, row in enumerate(checked.rows, start=1):
        if row.customer_id not in found:
            checked.refuse(
                RowError(number, "customer_id", f"no customer with id {row.customer_id}")
            )


async def _fresh_usernames(session: AsyncSession, count: int, realm: str) -> list:
    """``count`` credentials whose usernames no line has, nor another of the batch."""
    chosen: dict[str, object] = {}
    while len(chosen) < count:
        batch = [generate_credentials(realm) for _ in range(count - len(chosen))]
        names = [c.username for c in batch]
        taken = set(await session.scalars(select(Line.sip_username).where(
            Line.sip_username == any_(array_of(names, String)))))  # fmt: skip
        for creds in batch:
            if creds.username not in taken and creds.username not in chosen:
                chosen[creds.username] = creds
    return list(chosen.values())


async def insert_lines(
    session: AsyncSession, rows: Sequence[LineIn], realm: str
) -> AsyncIterator[int | list[ImportedLine]]:
    """Insert every row in one transaction: yields the count inserted after each chunk, then
    the imported lines once committed. Nothing is committed if the caller stops early."""
    credentials = await _fresh_usernames(session, len(rows), realm)
    imported: list[ImportedLine] = []
    for start in range(0, len(rows), CHUNK):
        values = []
        for number, row in enumerate(rows[start : start + CHUNK], start=start + 1):
            creds = credentials[number - 1]
            line_id = uuid.uuid4()
            values.append(
                {
                    "id": line_id, "customer_id": row.customer_id, "label": row.label,
                    "sip_username": creds.username, "sip_ha1": creds.ha1, "sip_realm": realm,
                    "max_calls": row.max_calls if row.max_calls is not None else DEFAULT_MAX_CALLS,
                    "max_call_duration_s": row.max_call_duration_s,
                    "media_encryption": row.media_encryption or DEFAULT_MEDIA_ENCRYPTION,
                    # Asterisk reads them from the database once committed: nothing to push,
                    # nothing it could have cached (docs/provisioning-realtime.md).
                    "sync_state": SyncState.synced,
                }
            )  # fmt: skip
            imported.append(
                ImportedLine(
                    number, line_id, row.customer_id, row.label, creds.username, creds.password
                )
            )
        await session.execute(
            insert(Line).execution_options(audited="one record of the import, below"), values
        )
        yield start + len(values)
    await record_import(session, Line, len(rows), {row.customer_id for row in rows})
    await session.commit()
    yield imported


async def record_import(
    session: AsyncSession, model: type, count: int, customers: set[uuid.UUID] | None = None
) -> None:
    """One audit record for a whole import: its rows share their ``created_at`` (the
    transaction's time), which finds them all."""
    stamp = await session.scalar(select(func.now()))
    after = {"count": count, "created_at": stamp.isoformat()}
    if customers is not None:
        after["customer_ids"] = sorted(str(c) for c in customers)
    await record(session, model, f"import@{stamp.isoformat()}", "imported", after=after)
