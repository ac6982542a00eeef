"""Tokens against the database: who a bearer token is, issuing and revoking tokens."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.access.models import ApiToken
from centrex.access.principal import Principal, Scope, bootstrap_principal
from centrex.access.tokens import issue_token, parse_token, secret_matches
from centrex.db.lookup import get_or_404
from centrex.db.models import Customer
from centrex.services.errors import ServiceError, UnknownReference


@dataclass(frozen=True)
class Refusal:
    reason: str  # for the metric: missing, malformed, unknown, revoked, expired


async def authenticate(
    session: AsyncSession, bootstrap_token: str, presented: str | None, now: datetime
) -> Principal | Refusal:
    """The principal of a bearer token, or why it is refused. Read from the database at each
    request: a revocation holds from the next request on."""
    if not presented:
        return Refusal("missing")
    # An empty bootstrap token refuses everyone: a forgotten setting never means "open".
    if bootstrap_token and secrets.compare_digest(presented.encode(), bootstrap_token.encode()):
        return bootstrap_principal()
    parsed = parse_token(presented)
    if parsed is None:
        return Refusal("malformed")
    token_id, secret = parsed
    row = await session.get(ApiToken, token_id)
    if row is None or not secret_matches(secret, row.secret_sha256):
        return Refusal("unknown")
    if row.revoked_at is not None:
        return Refusal("revoked")
    if row.expires_at is not None and row.expires_at <= now:
        return Refusal("expired")
    scope: Scope = row.scope  # type: ignore[assignment]
    return Principal(token_id=row.id, name=row.name, scope=scope, customer_id=row.customer_id)


@dataclass
class IssuedApiToken:
    row: ApiToken
    token: str  # shown once


async def issue(
    session: AsyncSession,
    *,
    name: str,
    scope: Scope,
    customer_id: uuid.UUID | None,
    expires_at: datetime | None,
    issued_by: Principal,
    now: datetime,
) -> IssuedApiToken:
    if scope == "customer":
        if customer_id is None:
            raise ServiceError("customer_id", "a customer token names its customer")
        if await session.get(Customer, customer_id) is None:
            raise UnknownReference("customer_id", f"no customer with id {customer_id}")
    elif customer_id is not None:
        raise ServiceError("customer_id", f"an {scope} token is bound to no customer")
    if expires_at is not None and expires_at <= now:
        raise ServiceError("expires_at", "already past")
    issued = issue_token()
    row = ApiToken(
        id=issued.token_id, name=name, scope=scope, customer_id=customer_id,
        secret_sha256=issued.secret_sha256, created_by=issued_by.name, expires_at=expires_at,
    )  # fmt: skip
    session.add(row)
    await session.commit()
    return IssuedApiToken(row, issued.token)


async def list_tokens(session: AsyncSession) -> list[ApiToken]:
    return list((await session.scalars(select(ApiToken).order_by(ApiToken.created_at))).all())


async def revoke(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> ApiToken:
    row = await get_or_404(session, ApiToken, token_id, "token_id", f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now
        await session.commit()
    return row
