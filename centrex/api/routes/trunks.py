"""Trunks: the operator's interconnects to the public network."""

from __future__ import annotations

import ipaddress
import uuid

from fastapi import APIRouter, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from centrex.api.deps import ProjectorDep, SessionDep, SettingsDep
from centrex.api.schemas import TrunkIn, TrunkOut
from centrex.asterisk.errors import AsteriskError
from centrex.db.lookup import get_or_404
from centrex.db.models import Trunk
from centrex.services.errors import Conflict, ServiceError

router = APIRouter(prefix="/v1/trunks", tags=["trunks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TrunkOut)
async def create_trunk(
    body: TrunkIn, session: SessionDep, projector: ProjectorDep, settings: SettingsDep
) -> Trunk:
    if settings.sip_proxy and not _is_ipv4(body.host):
        # The edge recognises a carrier by the source address of its packets (docs/cluster.md):
        # a name would have to be resolved, and re-resolved, where the edge cannot do it safely.
        raise ServiceError(
            "host",
            "behind the SIP edge (clustered shape) a trunk's host must be an IPv4 address: "
            "Kamailio recognises the carrier by its source address",
        )
    trunk = Trunk(**body.model_dump())
    session.add(trunk)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict("name", f"a trunk named {body.name!r} already exists") from None
    try:
        await projector.forget_trunk(trunk.name)  # Asterisk reads it; identify read again
    except AsteriskError:
        pass  # saved; the reconciler expires Asterisk's trunk cache when Asterisk answers
    return trunk


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


@router.get("", response_model=list[TrunkOut])
async def list_trunks(session: SessionDep) -> list[Trunk]:
    return list((await session.scalars(select(Trunk).order_by(Trunk.name))).all())


async def _get(session: SessionDep, trunk_id: uuid.UUID) -> Trunk:
    return await get_or_404(session, Trunk, trunk_id, "trunk_id", f"no trunk with id {trunk_id}")


@router.get("/{trunk_id}", response_model=TrunkOut)
async def get_trunk(trunk_id: uuid.UUID, session: SessionDep) -> Trunk:
    return await _get(session, trunk_id)


@router.delete("/{trunk_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_trunk(
    trunk_id: uuid.UUID, session: SessionDep, projector: ProjectorDep
) -> Response:
    trunk = await _get(session, trunk_id)
    await session.delete(trunk)
    await session.commit()
    try:
        await projector.forget_trunk(trunk.name)
    except AsteriskError:
        pass  # the reconciler expires Asterisk's trunk cache when Asterisk answers
    return Response(status_code=status.HTTP_204_NO_CONTENT)
