"""SIP bans: addresses the guard or the edge banned, or an operator banned by hand
(docs/sip-bans.md, docs/cluster.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Response, status
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from centrex.api.deps import SessionDep
from centrex.api.fields import IntRange, Text
from centrex.db.models import SipBan
from centrex.services import sip_bans as service
from centrex.services.errors import NotFound

router = APIRouter(prefix="/v1/sip-bans", tags=["sip-bans"])

#: pydantic's own schema says "ipvanyaddress", a format no client knows.
Address = Annotated[
    IPvAnyAddress,
    WithJsonSchema({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
]


def _text_only(value: Any) -> Any:
    # pydantic would take a number (or false) as an address: 0 is 0.0.0.0.
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "Input should be an IP address as text")
    return value


BodyAddress = Annotated[Address, BeforeValidator(_text_only)]
BanSeconds = IntRange(1, 604800, "How long the ban lasts (at most 7 days).")
BanReason = Text(200, min_length=0)


class SipBanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    address: str
    banned_at: datetime
    until: datetime
    failures: int
    rule: str
    evidence: dict[str, Any]  # {"events": [{"at", "event", "account_id" (escaped)}]}
    node: str
    lifted_at: datetime | None
    lifted_by: str | None


class SipBanIn(BaseModel):
    """A manual ban: the guard's nftables and every edge's Kamailio apply it (within
    ``CENTREX_SIP_BAN_RECONCILE_S`` and ``CENTREX_EDGE_BAN_SYNC_S``)."""

    model_config = ConfigDict(extra="forbid")

    address: BodyAddress
    seconds: BanSeconds
    reason: BanReason = Field("", description="Kept as the ban's evidence.")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SipBanOut)
async def add_sip_ban(body: SipBanIn, session: SessionDep) -> SipBanOut:
    """Ban ``address`` by hand (rule ``manual``); a ban already in force on it stays too."""
    now = datetime.now(UTC)
    ban = SipBan(
        address=str(body.address),
        banned_at=now,
        until=now + timedelta(seconds=body.seconds),
        failures=0,
        rule="manual",
        evidence={"events": [], "reason": body.reason},
        node="api",
    )
    session.add(ban)
    await session.commit()
    return SipBanOut.model_validate({**_row(ban), "address": str(ban.address)})


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
