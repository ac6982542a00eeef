"""POST /v1/billing/bank-files: the bank's return file of a direct debit run (pain.002 or
camt.054, docs/billing.md), imported: rejects, settlements and returns booked against the
invoices collected. Operator only (not in CUSTOMER_ROUTES); audited like every API write."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict

from centrex.api.deps import SessionDep
from centrex.billing.bank_import import import_file

router = APIRouter(tags=["billing"])

_XML_BODY = {
    "requestBody": {
        "required": True,
        # Any content type is read as the file; documented as octet-stream, which every client
        # (and schemathesis) knows how to send.
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "An ISO 20022 pain.002.001.11 or camt.054.001.08 file as the bank sent "
        "it (validated against its XSD; no DOCTYPE).",
    }
}


class BankEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    invoice_id: uuid.UUID
    outcome: str
    end_to_end_id: str
    mandate_reference: str | None
    amount_cents: int
    booked_on: date
    reason: str | None
    payment_id: uuid.UUID | None


class BankFileOut(BaseModel):
    id: uuid.UUID
    kind: str
    message_id: str
    imported_at: datetime
    entries: list[BankEntryOut]


@router.post("/v1/billing/bank-files", status_code=status.HTTP_201_CREATED,
             response_model=BankFileOut, openapi_extra=_XML_BODY)  # fmt: skip
async def import_bank_file(request: Request, session: SessionDep) -> BankFileOut:
    """Rejects (pain.002 RJCT), settlements and returns (camt.054) of our direct debits, booked
    as payments and rejects; the whole file or nothing. A file imported before: 409."""
    data = await request.body()  # bounded by CENTREX_API_MAX_BODY_BYTES before it is read
    imported = await import_file(session, data)
    await session.commit()
    file = imported.file
    entries = [BankEntryOut.model_validate(e) for e in imported.entries]
    return BankFileOut(id=file.id, kind=file.kind, message_id=file.message_id,
                       imported_at=file.imported_at, entries=entries)  # fmt: skip
