"""/v1/customers/{customer_id}/music-on-hold: what a customer's held calls hear. A customer
token may use it on its own customer (centrex/access/rules.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, visible
from centrex.moh import service

router = APIRouter(prefix="/v1/customers/{customer_id}", tags=["music on hold"])

_WAV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": "A WAV file (audio/wav): 8000 Hz, 16-bit, mono PCM; 1 s to "
        "CENTREX_MOH_MAX_S, at most CENTREX_MOH_MAX_BYTES.",
    }
}


class MusicOnHoldOut(BaseModel):
    customer_id: uuid.UUID
    music: Literal["default", "uploaded"]
    class_: str | None = Field(None, alias="class")
    seconds: float | None = None
    size_bytes: int | None = None
    uploaded_at: datetime | None = None


def _visible(principal, customer_id: uuid.UUID) -> None:
    visible(principal, customer_id, "customer_id", f"no customer with id {customer_id}")


@router.get("/music-on-hold", response_model=MusicOnHoldOut, response_model_by_alias=True)
async def get_music(customer_id: uuid.UUID, session: SessionDep,
                    principal: PrincipalDep) -> dict:  # fmt: skip
    _visible(principal, customer_id)
    return await service.get_music(session, customer_id)


@router.put("/music-on-hold", response_model=MusicOnHoldOut, response_model_by_alias=True,
            openapi_extra=_WAV_BODY)  # fmt: skip
async def upload_music(
    customer_id: uuid.UUID, request: Request, session: SessionDep, principal: PrincipalDep,
    settings: SettingsDep,
) -> dict:  # fmt: skip
    """The customer's held calls hear this instead of the default music, from the next hold
    on (no reload of Asterisk)."""
    _visible(principal, customer_id)
    data = await request.body()  # bounded by CENTREX_API_MAX_BODY_BYTES before it is read
    root = request.app.state.moh_root
    return await service.upload(session, root, customer_id, data, settings)


@router.delete("/music-on-hold", response_model=MusicOnHoldOut, response_model_by_alias=True)
async def remove_music(customer_id: uuid.UUID, request: Request, session: SessionDep,
                       principal: PrincipalDep) -> dict:  # fmt: skip
    """Back to the default music."""
    _visible(principal, customer_id)
    return await service.remove(session, request.app.state.moh_root, customer_id)
