"""Ring groups and number destinations: which lines a number rings (contract art. 2, 9).

A number reaches a line when it is the line's main number; any other number of the customer is
an alias, attached here to a line or a ring group (or to nothing: then it is "not in service").
Nothing of this lives in Asterisk: the daemon resolves numbers from the database on each call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from centrex.audit.recorder import record
from centrex.db.lookup import get_or_404
from centrex.db.models import (
    Customer,
    Line,
    NumberStatus,
    PhoneNumber,
    RingGroup,
    RingGroupMember,
    RingStrategy,
)
from centrex.extensions import service as extensions
from centrex.services.errors import Conflict, ServiceError, UnknownReference


async def get_group(session: AsyncSession, group_id: uuid.UUID) -> RingGroup:
    return await get_or_404(
        session, RingGroup, group_id, "ring_group_id", f"no ring group with id {group_id}"
    )


async def _check_members(
    session: AsyncSession, customer_id: uuid.UUID, members: Sequence[uuid.UUID]
) -> None:
    if len(set(members)) != len(members):
        raise ServiceError("members", "a line appears twice in members")
    rows = await session.execute(
        select(Line.id, Line.customer_id).where(Line.id.in_(members), Line.deleted_at.is_(None))
    )
    found = dict(rows.tuples().all())
    for position, line_id in enumerate(members):
        if line_id not in found:
            raise UnknownReference("members", f"members[{position}]: no line with id {line_id}")
        if found[line_id] != customer_id:
            raise ServiceError(
                "members", f"members[{position}]: line {line_id} belongs to another customer"
            )


def _set_members(group: RingGroup, members: Sequence[uuid.UUID]) -> None:
    group.members = [
        RingGroupMember(position=i, line_id=line_id) for i, line_id in enumerate(members)
    ]


async def create_group(
    session: AsyncSession,
    *,
    customer_id: uuid.UUID,
    name: str,
    strategy: RingStrategy,
    ring_timeout_s: int,
    members: Sequence[uuid.UUID],
    extension: str | None = None,
) -> RingGroup:
    if await session.get(Customer, customer_id) is None:
        raise UnknownReference("customer_id", f"no customer with id {customer_id}")
    await _check_members(session, customer_id, members)
    group = RingGroup(
        id=uuid.uuid4(), customer_id=customer_id, name=name, strategy=strategy,
        ring_timeout_s=ring_timeout_s,
    )  # fmt: skip
    _set_members(group, members)
    session.add(group)
    if extension is not None:
        short = await extensions.checked_free(session, customer_id, extension)
        await session.flush()
        await extensions.give(session, customer_id, short, ring_group_id=group.id)
    await _commit(session)
    session.expunge(group)  # read back whole: members and extension
    return await get_group(session, group.id)


async def update_group(
    session: AsyncSession, group: RingGroup, changes: dict[str, object]
) -> RingGroup:
    """Partial update; ``members`` replaces the whole list (its order is the hunt order)."""
    if "extension" in changes and changes["extension"] != group.extension:
        wanted = changes["extension"]
        short = None if wanted is None else await extensions.checked_free(
            session, group.customer_id, str(wanted))  # fmt: skip
        await extensions.give(session, group.customer_id, short, ring_group_id=group.id)
    for field in ("name", "strategy", "ring_timeout_s"):
        if field in changes:
            if changes[field] is None:
                raise ServiceError(field, f"{field} cannot be null")
            setattr(group, field, changes[field])
    if "members" in changes:
        if changes["members"] is None:
            raise ServiceError("members", "members cannot be null; [] empties the group")
        members = list(changes["members"])  # type: ignore[call-overload]
        await _check_members(session, group.customer_id, members)
        # The old rows go first: (group, position) and (group, line) are unique.
        await _delete_members(session, RingGroupMember.group_id == group.id)
        session.add_all(
            RingGroupMember(group_id=group.id, position=i, line_id=line_id)
            for i, line_id in enumerate(members)
        )
    await _commit(session)
    session.expunge(group)
    return await get_group(session, group.id)


async def delete_group(session: AsyncSession, group: RingGroup) -> None:
    routed = (
        await session.scalars(
            select(PhoneNumber.national).where(PhoneNumber.ring_group_id == group.id)
        )
    ).all()
    if routed:
        raise Conflict(
            "ring_group_id",
            f"numbers are routed to this ring group ({', '.join(sorted(routed))}); "
            "detach them first",
            location="path",
        )
    await session.delete(group)
    await session.commit()


async def list_groups(session: AsyncSession, customer_id: uuid.UUID | None) -> list[RingGroup]:
    query = select(RingGroup).order_by(RingGroup.created_at, RingGroup.id)
    if customer_id is not None:
        query = query.where(RingGroup.customer_id == customer_id)
    return list((await session.scalars(query)).all())


async def set_destination(
    session: AsyncSession,
    number: PhoneNumber,
    *,
    line_id: uuid.UUID | None,
    ring_group_id: uuid.UUID | None,
) -> PhoneNumber:
    """Attach an alias number to a line or a ring group of its customer."""
    if number.status != NumberStatus.assigned or number.customer_id is None:
        raise Conflict(
            "number", f"{number.national} is not assigned to a customer", location="path"
        )
    main_of = await session.scalar(
        select(Line.id).where(Line.main_number == number.e164, Line.deleted_at.is_(None))
    )
    if main_of is not None:
        raise Conflict(
            "number",
            f"{number.national} is the main number of line {main_of}; only other numbers "
            "(aliases) can be routed",
            location="path",
        )
    if line_id is not None:
        line = await session.get(Line, line_id)
        if line is None or line.deleted_at is not None:
            raise UnknownReference("line_id", f"no line with id {line_id}")
        if line.customer_id != number.customer_id:
            raise ServiceError("line_id", "the line belongs to another customer than the number")
    if ring_group_id is not None:
        group = await session.get(RingGroup, ring_group_id)
        if group is None:
            raise UnknownReference("ring_group_id", f"no ring group with id {ring_group_id}")
        if group.customer_id != number.customer_id:
            raise ServiceError(
                "ring_group_id", "the ring group belongs to another customer than the number"
            )
    number.line_id = line_id
    number.ring_group_id = ring_group_id
    await session.commit()
    return number


async def clear_destination(session: AsyncSession, number: PhoneNumber) -> PhoneNumber:
    number.line_id = None
    number.ring_group_id = None
    await session.commit()
    return number


async def forget_line(session: AsyncSession, line_id: uuid.UUID) -> None:
    """A line is deleted: it leaves its ring groups, and aliases attached to it lead nowhere
    (they answer "not in service" until attached elsewhere). Committed by the caller."""
    await _delete_members(session, RingGroupMember.line_id == line_id)
    detached = await session.scalars(
        update(PhoneNumber)
        .where(PhoneNumber.line_id == line_id)
        .values(line_id=None)
        .returning(PhoneNumber.e164)
        .execution_options(audited="record() below")
    )
    for e164 in detached.all():
        before, after = {"line_id": line_id}, {"line_id": None}
        await record(session, PhoneNumber, e164, "updated", before=before, after=after)


async def _delete_members(session: AsyncSession, where) -> None:
    """Delete the ring group memberships ``where`` selects, each recorded."""
    deleted = await session.execute(
        delete(RingGroupMember)
        .where(where)
        .returning(RingGroupMember.group_id, RingGroupMember.position, RingGroupMember.line_id)
        .execution_options(audited="record() below")
    )
    for member in deleted.mappings().all():
        member_id = f"{member['group_id']}/{member['position']}"
        await record(session, RingGroupMember, member_id, "deleted", before=dict(member))


async def _commit(session: AsyncSession) -> None:
    try:
        await session.commit()
    except IntegrityError:  # two requests chose the same extension at once
        await session.rollback()
        raise Conflict("extension", "this extension was just taken in this customer") from None
