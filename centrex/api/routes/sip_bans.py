"""SIP bans: the addresses the guard banned for failed authentications (docs/sip-bans.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, IPvAnyAddress, WithJsonSchema
from sqlalchemy import select

from centrex.api.deps import SessionDep
from centrex.db.models import SipBan
from centrex.services import sip_bans as service
from centrex.services.errors import NotFound

router = APIRouter(prefix="/v1/sip-bans", tags=["sip-bans"])

#: pydantic's own schema says "ipvanyaddress", a format no client knows.
Address = Annotated[
    IPvAnyAddress,
    WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]


class SipBanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    address: str
    banned_at: datetime
    until: datetime
    failures: int
    rule: str
    evidence: dict[str, Any]  # {"events": [{"at", "event", "account_id" (escaped)}]}
    node: str
    lifted_at: datetime | None
    lifted_by: str | None


@router.get("", response_model=list[SipBanOut])
async def list_sip_bans(session: SessionDep, include_ended: bool = False) -> list[SipBanOut]:
    """Bans in force (with ``include_ended``, lifted and expired ones too), newest first."""
    query = select(SipBan).order_by(SipBan.banned_at.desc()).limit(1000)
    if not include_ended:
        query = query.where(service.in_force())
    bans = (await session.scalars(query)).all()
    return [SipBanOut.model_validate({**_row(b), "address": str(b.address)}) for b in bans]


def _row(ban: SipBan) -> dict[str, Any]:
    return {c: getattr(ban, c) for c in SipBanOut.model_fields if c != "address"}


@router.delete("/{address}", status_code=status.HTTP_204_NO_CONTENT)
async def lift_sip_ban(address: Address, session: SessionDep) -> Response:
    """Lift the bans in force on ``address``; the guard drops it from the kernel within
    ``CENTREX_SIP_BAN_RECONCILE_S``."""
    if not await service.lift(session, str(address)):
        await session.rollback()
        raise NotFound("address", f"no ban in force on {address}", location="path")
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
