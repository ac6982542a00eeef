"""Usage policy: the destination list, suspensions and restrictions, fraud suspicions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Response, status
from sqlalchemy import select

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, own_customer, visible
from centrex.api.schemas import (
    AllowedDestinationIn,
    ChangeIn,
    DestinationOut,
    FraudSuspicionOut,
    RestrictionIn,
    RestrictionOut,
    SuspensionOut,
)
from centrex.core.policy import PolicyLevel
from centrex.db.models import Destination, FraudSuspicion, Line, PolicyRestriction
from centrex.services import policy as service

router = APIRouter(tags=["policy"])

DestinationCode = Annotated[
    str,
    Path(
        max_length=16,
        pattern=r"^[0-9][0-9a-z-]*$",
        description='A destination of the list: "44", "33-premium", ...',
    ),
]


@router.get("/v1/destinations", response_model=list[DestinationOut])
async def list_destinations(session: SessionDep) -> list[Destination]:
    return list((await session.scalars(select(Destination).order_by(Destination.code))).all())


@router.post("/v1/destinations", status_code=status.HTTP_201_CREATED,
             response_model=DestinationOut)  # fmt: skip
async def add_destination(body: AllowedDestinationIn, session: SessionDep) -> Destination:
    return await service.add_destination(session, body.code, body.name)


@router.delete("/v1/destinations/{code}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_destination(code: DestinationCode, session: SessionDep) -> Response:
    await session.delete(await service.get_destination(session, code))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/destinations/{code}/suspend", response_model=SuspensionOut)
async def suspend_destination(
    code: DestinationCode, body: ChangeIn, session: SessionDep, settings: SettingsDep
) -> SuspensionOut:
    """From now calls there get 403; every customer who called it this billing period is
    sent a notice by email."""
    destination = await service.get_destination(session, code)
    destination, emails, missing = await service.suspend_destination(
        session, settings, destination, reason=body.reason, actor=body.actor,
        now=datetime.now(UTC),
    )  # fmt: skip
    return SuspensionOut(
        destination=DestinationOut.model_validate(destination),
        notified=emails,
        customers_without_email=missing,
    )


@router.post("/v1/destinations/{code}/resume", response_model=DestinationOut)
async def resume_destination(
    code: DestinationCode, body: ChangeIn, session: SessionDep
) -> Destination:
    destination = await service.get_destination(session, code)
    return await service.resume_destination(
        session, destination, actor=body.actor, reason=body.reason
    )


def _restriction_routes(target_type: Literal["line", "customer"], collection: str) -> None:
    @router.post(
        f"/v1/{collection}/{{target_id}}/restrictions",
        status_code=status.HTTP_201_CREATED,
        response_model=RestrictionOut,
        name=f"restrict_{target_type}",
    )
    async def restrict(target_id: uuid.UUID, body: RestrictionIn, session: SessionDep,
                       principal: PrincipalDep) -> PolicyRestriction:  # fmt: skip
        """Suspend or restrict (art. 19); emergency calls always go through."""
        return await service.restrict(
            session, target_type=target_type, target_id=target_id,
            level=PolicyLevel(body.level), reason=body.reason, actor=body.actor, by=principal,
        )  # fmt: skip

    @router.get(
        f"/v1/{collection}/{{target_id}}/restrictions",
        response_model=list[RestrictionOut],
        name=f"restrictions_of_{target_type}",
    )
    async def history(
        target_id: uuid.UUID, session: SessionDep, principal: PrincipalDep
    ) -> list[PolicyRestriction]:
        """Every restriction, lifted or not: the audit trail."""
        owner = target_id
        if target_type == "line":
            line = await session.get(Line, target_id)
            owner = line.customer_id if line is not None else None
        visible(principal, owner, "target_id", f"no {target_type} with id {target_id}")
        return await service.restrictions_of(session, target_type, target_id)


_restriction_routes("line", "lines")
_restriction_routes("customer", "customers")


@router.post("/v1/restrictions/{restriction_id}/lift", response_model=RestrictionOut)
async def lift(
    restriction_id: uuid.UUID, body: ChangeIn, session: SessionDep, principal: PrincipalDep
) -> PolicyRestriction:
    return await service.lift(
        session, restriction_id, actor=body.actor, reason=body.reason, by=principal
    )


@router.get("/v1/fraud-suspicions", response_model=list[FraudSuspicionOut])
async def fraud_suspicions(
    session: SessionDep,
    principal: PrincipalDep,
    line_id: uuid.UUID | None = None,
    customer_id: uuid.UUID | None = None,
    rule: Literal["distinct_numbers", "long_call", "automated_dialling"] | None = None,
) -> list[FraudSuspicion]:
    customer_id = own_customer(principal, customer_id)
    return await service.suspicions(session, line_id=line_id, customer_id=customer_id, rule=rule)
