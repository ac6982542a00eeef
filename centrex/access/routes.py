"""Issuing, listing and revoking API tokens (operator scopes only: centrex.access.rules)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Response, status

from centrex.access import service
from centrex.access.models import ApiToken
from centrex.access.schemas import TokenIn, TokenIssued, TokenOut
from centrex.api.deps import PrincipalDep, SessionDep

router = APIRouter(prefix="/v1/tokens", tags=["tokens"])


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenIssued)
async def issue_token(body: TokenIn, session: SessionDep, principal: PrincipalDep) -> TokenIssued:
    issued = await service.issue(
        session, name=body.name, scope=body.scope, customer_id=body.customer_id,
        expires_at=_utc(body.expires_at), issued_by=principal, now=datetime.now(UTC),
    )  # fmt: skip
    return TokenIssued(**TokenOut.model_validate(issued.row).model_dump(), token=issued.token)


@router.get("", response_model=list[TokenOut])
async def list_tokens(session: SessionDep) -> list[ApiToken]:
    return await service.list_tokens(session)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: uuid.UUID, session: SessionDep) -> Response:
    """Refused from the next request on; the row stays, for the audit trail."""
    await service.revoke(session, token_id, datetime.now(UTC))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
