"""The API side of the audit trail: who and what of each request, and ``GET /v1/audit``.

No route writes the log: it is written by :mod:`centrex.audit.recorder` alone, with the change
it records.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import and_, or_, select

from centrex.access.principal import Principal
from centrex.api.cursor import decode_cursor, encode_cursor
from centrex.api.deps import SessionDep, principal_of
from centrex.api.fields import NO_NUL, DateTime
from centrex.audit.models import AuditEntry
from centrex.audit.recorder import audit_context
from centrex.audit.schemas import AuditEntryOut, AuditPage
from centrex.services.errors import ServiceError


def request_principal(request: Request) -> Principal:
    """Who is calling: the principal token authentication (centrex.access.middleware) put on
    the request; none is a 401, never a default."""
    return principal_of(request)


async def audit_request(request: Request) -> AsyncIterator[None]:
    """A dependency of every secured router (``create_app``): the request's changes are
    recorded as its route's method and path template, by its principal."""
    route = request.scope.get("route")
    operation = f"{request.method} {getattr(route, 'path', request.url.path)}"
    with audit_context(request_principal(request), operation):
        yield


#: PostgreSQL's text cannot hold U+0000: such a filter is refused (422), not a 500.

# Operator scopes only: centrex/access/rules.py (OPERATOR_ONLY_PREFIXES).
router = APIRouter(tags=["audit"])


def _utc(value: datetime | None) -> datetime | None:
    # A time without a zone is taken as UTC, like the CDRs'.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@router.get("/v1/audit", response_model=AuditPage)
async def list_audit(
    session: SessionDep,
    object_type: str | None = Query(
        None, max_length=64, pattern=NO_NUL, description='"line", "customer", ...'
    ),
    object_id: str | None = Query(None, max_length=200, pattern=NO_NUL),
    token_id: uuid.UUID | None = None,
    operation: str | None = Query(
        None,
        max_length=200,
        pattern=NO_NUL,
        description='Exactly as recorded: "PATCH /v1/lines/{line_id}".',
    ),
    since: DateTime | None = Query(None, description="Changes at or after (ISO 8601)."),
    until: DateTime | None = Query(None, description="Changes before (ISO 8601)."),
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AuditPage:
    """The changes made through the API, oldest first."""
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise ServiceError("until", "until must come after since", location="query")
    query = select(AuditEntry)
    for column, value in (
        (AuditEntry.object_type, object_type),
        (AuditEntry.object_id, object_id),
        (AuditEntry.token_id, token_id),
        (AuditEntry.operation, operation),
    ):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    if cursor:
        at, entry_id = decode_cursor(cursor)
        query = query.where(
            or_(AuditEntry.at > at, and_(AuditEntry.at == at, AuditEntry.id > entry_id))
        )
    query = query.order_by(AuditEntry.at, AuditEntry.id).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    page, more = rows[:limit], len(rows) > limit
    return AuditPage(
        items=[AuditEntryOut.model_validate(r) for r in page],
        next_cursor=encode_cursor(page[-1].at, page[-1].id) if more else None,
    )
