"""Lines and customers in bulk: import (CSV or JSON, all or nothing) and CSV export."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import Select, String, any_, insert, select
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import SessionDep, SettingsDep
from centrex.api.schemas import CustomerIn, LineIn
from centrex.core.bulk_rows import (
    CheckedRows,
    FileRefused,
    RowError,
    check_rows,
    is_csv,
    read_records,
)
from centrex.core.spreadsheet import safe_cell
from centrex.db.models import Customer, Line
from centrex.db.session import array_of
from centrex.services.line_import import (
    ImportedLine,
    insert_lines,
    record_import,
    unknown_customers,
)

router = APIRouter(tags=["bulk"])

LINE_COLUMNS = ("customer_id", "label", "max_calls", "max_call_duration_s", "media_encryption")
CUSTOMER_COLUMNS = ("name", "external_ref", "residence_country", "email")
NDJSON = "application/x-ndjson"
#: Their bodies may be larger than other requests' (CENTREX_API_MAX_IMPORT_BYTES).
IMPORT_PATHS = ("/v1/lines/import", "/v1/customers/import")

_IMPORT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


async def _checked(
    request: Request, model: type, columns: Sequence[str]
) -> CheckedRows | JSONResponse:
    """The rows, or the answer refusing the file as a whole."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    try:
        records = read_records(body, content_type, columns)
    except FileRefused as exc:
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": ["body"], "msg": str(exc), "type": "invalid_file"}]})  # fmt: skip
    return check_rows(records, model, text_cells=is_csv(content_type))


def _refused(checked: CheckedRows) -> JSONResponse | None:
    if checked.error_count:
        return JSONResponse(status_code=422, content={
            "detail": "nothing imported: fix these rows and send the whole file again",
            "error_count": checked.error_count,
            "errors": [e.as_dict() for e in checked.errors],
        })  # fmt: skip
    return None


@router.post("/v1/lines/import", openapi_extra=_IMPORT_DOC, status_code=201)
async def import_lines(request: Request, session: SessionDep, settings: SettingsDep) -> Any:
    """Up to 100,000 lines (CSV with a header row, or a JSON array of the POST /v1/lines
    bodies), all or nothing: a refusal names every bad row and field, and nothing is written.
    The answer holds each line's SIP password, once. With `Accept: application/x-ndjson` it
    is streamed: a line of progress per 5,000 rows written, then the result."""
    checked = await _checked(request, LineIn, LINE_COLUMNS)
    if isinstance(checked, JSONResponse):
        return checked
    if not checked.error_count:
        await unknown_customers(session, checked)
    if refusal := _refused(checked):
        return refusal
    rows = insert_lines(session, checked.rows, settings.sip_realm)
    if NDJSON not in request.headers.get("accept", ""):
        async for step in rows:
            if isinstance(step, list):
                return JSONResponse(status_code=201, content=_result(step))
    return StreamingResponse(_progress(rows, len(checked.rows)), status_code=201,
                             media_type=NDJSON)  # fmt: skip


def _result(lines: list[ImportedLine]) -> dict[str, Any]:
    return {"created": len(lines), "lines": [
        {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in asdict(line).items()}
        for line in lines]}  # fmt: skip


async def _progress(
    rows: AsyncIterator[int | list[ImportedLine]], total: int
) -> AsyncIterator[bytes]:
    yield json.dumps({"accepted": total}).encode() + b"\n"
    try:
        async for step in rows:
            out = _result(step) if isinstance(step, list) else {"written": step, "of": total}
            yield json.dumps(out).encode() + b"\n"
    except Exception as exc:  # the status is sent: the stream's last line tells the failure
        yield json.dumps({"error": f"nothing imported: {type(exc).__name__}"}).encode() + b"\n"
        raise


@router.post("/v1/customers/import", openapi_extra=_IMPORT_DOC, status_code=201)
async def import_customers(request: Request, session: SessionDep) -> Any:
    """Up to 100,000 customers (CSV or a JSON array of POST /v1/customers bodies), all or
    nothing; an external_ref already taken, or twice in the file, refuses its row."""
    checked = await _checked(request, CustomerIn, CUSTOMER_COLUMNS)
    if isinstance(checked, JSONResponse):
        return checked
    if not checked.error_count:
        await _taken_refs(session, checked)
    if refusal := _refused(checked):
        return refusal
    ids = [uuid.uuid4() for _ in checked.rows]
    values = [{"id": i, **row.model_dump()} for i, row in zip(ids, checked.rows, strict=True)]
    try:
        for start in range(0, len(values), 5_000):
            await session.execute(
                insert(Customer).execution_options(audited="one record of the import, below"),
                values[start : start + 5_000],
            )
        await record_import(session, Customer, len(values))
        await session.commit()
    except IntegrityError:  # an external_ref taken meanwhile: nothing written
        await session.rollback()
        return JSONResponse(status_code=409, content={"detail": [{"loc": ["body", "external_ref"],
            "msg": "an external_ref was taken while importing; nothing imported",
            "type": "conflict"}]})  # fmt: skip
    return JSONResponse(status_code=201, content={"created": len(ids), "customers": [
        {"row": n, "id": str(i), "external_ref": r.external_ref}
        for n, (i, r) in enumerate(zip(ids, checked.rows, strict=True), start=1)]})  # fmt: skip


async def _taken_refs(session: SessionDep, checked: CheckedRows[CustomerIn]) -> None:
    refs = [row.external_ref for row in checked.rows if row.external_ref]
    taken = set(await session.scalars(select(Customer.external_ref).where(
        Customer.external_ref == any_(array_of(refs, String))))) if refs else set()  # fmt: skip
    seen: set[str] = set()
    for number, row in enumerate(checked.rows, start=1):
        ref = row.external_ref
        if ref and (ref in taken or ref in seen):
            checked.refuse(RowError(number, "external_ref", f"{ref!r} is already a customer's"))
        if ref:
            seen.add(ref)


@router.get("/v1/lines.csv", response_class=StreamingResponse)
async def export_lines(session: SessionDep, customer_id: uuid.UUID | None = None) -> Any:
    """Every live line (never a secret), streamed from a server-side cursor."""
    columns = ("id", "customer_id", "label", "sip_username", "sip_realm", "max_calls",
               "max_call_duration_s", "main_number", "media_encryption", "sync_state",
               "created_at")  # fmt: skip
    query = select(*(getattr(Line, c) for c in columns)).where(Line.deleted_at.is_(None))
    if customer_id is not None:
        query = query.where(Line.customer_id == customer_id)
    return _csv(session, query.order_by(Line.created_at, Line.id), columns, "lines")


@router.get("/v1/customers.csv", response_class=StreamingResponse)
async def export_customers(session: SessionDep) -> Any:
    columns = ("id", "name", "external_ref", "residence_country", "email",
               "documents_verified_at", "fraud_action", "created_at")  # fmt: skip
    query = select(*(getattr(Customer, c) for c in columns))
    return _csv(session, query.order_by(Customer.created_at, Customer.id), columns, "customers")


def _csv(session: SessionDep, query: Select, columns: Sequence[str], what: str) -> Any:
    async def rows() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        result = await session.stream(query.execution_options(yield_per=2_000))
        async for partition in result.partitions():
            for row in partition:
                writer.writerow(["" if v is None else safe_cell(str(getattr(v, "value", v)))
                                 for v in row])  # fmt: skip
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{what}-{stamp}.csv"'})  # fmt: skip
