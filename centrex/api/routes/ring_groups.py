"""Ring groups: lines of a customer rung together for the numbers routed to the group."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from centrex.api.deps import PrincipalDep, SessionDep, own_customer, refuse_fields, visible
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
        extension=group.extension,
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
        extension=body.extension,
    )
    return _out(group)


@router.get("", response_model=list[RingGroupOut])
async def list_groups(
    session: SessionDep, principal: PrincipalDep, customer_id: uuid.UUID | None = None
) -> list:
    customer_id = own_customer(principal, customer_id)
    return [_out(g) for g in await service.list_groups(session, customer_id)]


async def _group_of(principal: PrincipalDep, session: SessionDep, group_id: uuid.UUID) -> RingGroup:
    """The group, if it exists for ``principal`` (a customer's own groups only)."""
    group = await service.get_group(session, group_id)
    visible(principal, group.customer_id, "ring_group_id", f"no ring group with id {group_id}")
    return group


@router.get("/{ring_group_id}", response_model=RingGroupOut)
async def get_group(
    ring_group_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
) -> RingGroupOut:
    return _out(await _group_of(principal, session, ring_group_id))


@router.patch("/{ring_group_id}", response_model=RingGroupOut)
async def update_group(
    ring_group_id: uuid.UUID,
    body: RingGroupPatch,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
) -> RingGroupOut:
    group = await _group_of(principal, session, ring_group_id)
    refuse_fields(principal, request, set(body.model_fields_set))
    changes = body.model_dump(exclude_unset=True)
    if changes.get("strategy") is not None:
        changes["strategy"] = RingStrategy(changes["strategy"])
    return _out(await service.update_group(session, group, changes))


@router.delete("/{ring_group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(ring_group_id: uuid.UUID, session: SessionDep) -> Response:
    await service.delete_group(session, await service.get_group(session, ring_group_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
