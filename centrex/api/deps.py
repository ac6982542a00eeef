"""FastAPI dependencies: operator authentication, a DB session per request, the projector."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.config import Settings
from centrex.services.provisioning import AsteriskProjector

_bearer = HTTPBearer(auto_error=False, description="The operator token (CENTREX_API_TOKEN).")


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def require_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = request.app.state.settings.api_token.get_secret_value()
    # An empty configured token refuses everyone: a forgotten setting never means "open".
    if (
        credentials is None
        or not expected
        or not secrets.compare_digest(credentials.credentials.encode(), expected.encode())
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


def get_projector(request: Request) -> AsteriskProjector:
    return request.app.state.projector


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ProjectorDep = Annotated[AsteriskProjector, Depends(get_projector)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
