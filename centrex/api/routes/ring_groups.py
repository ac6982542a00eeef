"""Ring groups: lines of a customer rung together for the numbers routed to the group."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from centrex.api.deps import SessionDep
from centrex.api.schemas import RingGroupIn, RingGroupOut, RingGroupPatch
from centrex.db.models import RingGroup, RingStrategy
from centrex.services import ring_groups as service

router = APIRouter(prefix="/v1/ring-groups", tags=["ring groups"])


def _out(group: RingGroup) -> RingGroupOut:
    return RingGroupOut(
        id=group.id,
        customer_id=group.customer_id,
        name=group.name,
        strategy=group.strategy,
        ring_timeout_s=group.ring_timeout_s,
        members=[m.line_id for m in group.members],
        created_at=group.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RingGroupOut)
async def create_group(body: RingGroupIn, session: SessionDep) -> RingGroupOut:
    group = await service.create_group(
        session,
        customer_id=body.customer_id,
        name=body.name,
        strategy=RingStrategy(body.strategy),
        ring_timeout_s=body.ring_timeout_s,
        members=body.members,
    )
    return _out(group)


@router.get("", response_model=list[RingGroupOut])
async def list_groups(session: SessionDep, customer_id: uuid.UUID | None = None) -> list:
    return [_out(g) for g in await service.list_groups(session, customer_id)]


@router.get("/{ring_group_id}", response_model=RingGroupOut)
async def get_group(ring_group_id: uuid.UUID, session: SessionDep) -> RingGroupOut:
    return _out(await service.get_group(session, ring_group_id))


@router.patch("/{ring_group_id}", response_model=RingGroupOut)
async def update_group(
    ring_group_id: uuid.UUID, body: RingGroupPatch, session: SessionDep
) -> RingGroupOut:
    group = await service.get_group(session, ring_group_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("strategy") is not None:
        changes["strategy"] = RingStrategy(changes["strategy"])
    return _out(await service.update_group(session, group, changes))


@router.delete("/{ring_group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(ring_group_id: uuid.UUID, session: SessionDep) -> Response:
    await service.delete_group(session, await service.get_group(session, ring_group_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
