"""Universal directory preferences per number (art. 13): the customer may list its professional
details for free, and oppose their use for commercial prospection and reverse look-up (finding
the name from the number). The export file is what the operator hands the directory publishers:
the listed numbers still assigned to the customer that listed them, with what may be done with
each. A number never given a preference is not listed (listing is the customer's choice)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.contracts.models import DirectoryListing
from centrex.contracts.schemas import DirectoryIn
from centrex.core.spreadsheet import safe_cell
from centrex.db.models import Customer, NumberStatus, PhoneNumber
from centrex.services.errors import Conflict

HEADER = ["number", "e164", "name", "prospection_use", "reverse_lookup"]


def _assigned(number: PhoneNumber) -> None:
    if number.status != NumberStatus.assigned or number.customer_id is None:
        raise Conflict(
            "number", f"{number.national} is not assigned to a customer", location="path"
        )


async def get(session: AsyncSession, number: PhoneNumber) -> DirectoryListing:
    """The number's preferences; never set: not listed, no opposition recorded."""
    _assigned(number)
    listing = await session.get(DirectoryListing, number.e164)
    if listing is None or listing.customer_id != number.customer_id:
        return DirectoryListing(
            e164=number.e164,
            customer_id=number.customer_id,
            listed=False,
            listing_name=None,
            opposes_prospection=False,
            opposes_reverse_lookup=False,
            updated_at=None,
        )
    return listing


async def put(
    session: AsyncSession, number: PhoneNumber, body: DirectoryIn, *, now: datetime
) -> DirectoryListing:
    _assigned(number)
    listing = await session.get(DirectoryListing, number.e164, with_for_update=True)
    if listing is None:
        listing = DirectoryListing(e164=number.e164)
        session.add(listing)
    listing.customer_id = number.customer_id  # a number reassigned: the new holder's choice
    listing.listed = body.listed
    listing.listing_name = body.listing_name
    listing.opposes_prospection = body.opposes_prospection
    listing.opposes_reverse_lookup = body.opposes_reverse_lookup
    listing.updated_at = now
    await session.commit()
    return listing


def csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([safe_cell(c) for c in cells])
    return out.getvalue().encode()


async def export_rows(session: AsyncSession) -> AsyncIterator[bytes]:
    """The directory file, CSV (RFC 4180), one listed number a row. Every cell goes through
    ``safe_cell``: a listing name is the customer's text, ``=HYPERLINK(...)`` is shown, not run."""
    yield csv_line(HEADER)
    rows = await session.stream(
        select(
            PhoneNumber.national,
            PhoneNumber.e164,
            DirectoryListing.listing_name,
            Customer.name,
            DirectoryListing.opposes_prospection,
            DirectoryListing.opposes_reverse_lookup,
        )
        .join(DirectoryListing, DirectoryListing.e164 == PhoneNumber.e164)
        .join(Customer, Customer.id == DirectoryListing.customer_id)
        .where(
            DirectoryListing.listed.is_(True),
            PhoneNumber.status == NumberStatus.assigned,
            PhoneNumber.customer_id == DirectoryListing.customer_id,
        )
        .order_by(PhoneNumber.e164)
        .execution_options(yield_per=1000)
    )
    async for national, e164, name, customer_name, no_prospection, no_reverse in rows:
        yield csv_line(
            [
                national,
                e164,
                name or customer_name,
                "refused" if no_prospection else "allowed",
                "refused" if no_reverse else "allowed",
            ]
        )
