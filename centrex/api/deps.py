"""FastAPI dependencies: the caller's principal and what it may do, a DB session per request,
the projector."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.access import rules
from centrex.access.principal import Principal
from centrex.config import Settings
from centrex.metrics import API_REFUSED
from centrex.services.errors import Forbidden, NotFound
from centrex.services.provisioning import AsteriskProjector

# For the OpenAPI document: the check itself is centrex.access.middleware.Authenticate.
_bearer = HTTPBearer(
    auto_error=False,
    description="A token from POST /v1/tokens, or the bootstrap token (CENTREX_API_TOKEN).",
)


# The dependencies are coroutines, even those that compute nothing: FastAPI runs a plain
# function in a worker thread, a hop that cost ~7 % of the API's CPU per POST /v1/lines
# (py-spy, docs/benchmarks-provisioning.md).
async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    if principal is None:  # a route outside the middleware's prefix: never meant to happen
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="missing bearer token")
    return principal


async def get_principal(request: Request) -> Principal:
    return principal_of(request)


async def authorize(
    request: Request,
    principal: Annotated[Principal, Depends(get_principal)],
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The scope's rules (centrex.access.rules) for this route: 403 when they say no."""
    route = request.scope["route"].path
    if not rules.may_call(principal, request.method, route):
        API_REFUSED.labels(reason="forbidden").inc()
        raise Forbidden(
            None,
            f"a token of scope {principal.scope!r} may not {request.method} {route}",
            location="path",
        )


def refuse_fields(principal: Principal, request: Request, fields: set[str]) -> None:
    """403 naming the first field of a change this token may not make on this route."""
    route = request.scope["route"].path
    if refused := rules.fields_refused(principal, request.method, route, fields):
        API_REFUSED.labels(reason="forbidden").inc()
        field = sorted(refused)[0]
        raise Forbidden(field, f"a {principal.scope} token may not change {field!r}")


def visible(
    principal: Principal,
    customer_id: uuid.UUID | None,
    field: str,
    what: str,
    *,
    location: str = "path",
) -> None:
    """404, as for an object that does not exist, when it is another customer's."""
    if not rules.sees(principal, customer_id):
        raise NotFound(field, what, location=location)


def own_customer(principal: Principal, customer_id: uuid.UUID | None) -> uuid.UUID | None:
    """A list's customer filter as ``principal`` may use it: a customer token lists its own
    customer's objects, and another customer's id answers 404 like an unknown one."""
    if principal.scope != "customer":
        return customer_id
    visible(
        principal, customer_id or principal.customer_id, "customer_id",
        f"no customer with id {customer_id}", location="query",
    )  # fmt: skip
    return principal.customer_id


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_projector(request: Request) -> AsteriskProjector:
    return request.app.state.projector


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ProjectorDep = Annotated[AsteriskProjector, Depends(get_projector)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
