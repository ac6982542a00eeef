"""The number inventory: blocks, Silver/Gold rules, allocation and release (contract art. 9)."""

from __future__ import annotations

from fastapi import APIRouter, status

from centrex.api.deps import PrincipalDep, SessionDep, SettingsDep, visible
from centrex.api.fields import NumberText
from centrex.api.schemas import (
    AllocateIn,
    DestinationIn,
    NumberBlockIn,
    NumberBlockOut,
    NumberOut,
    TierRuleIn,
    TierRuleOut,
)
from centrex.core.number_tiers import TierRuleError, check_pattern
from centrex.core.numbering import NumberKind
from centrex.db.models import NumberBlock, NumberTierRule, PhoneNumber
from centrex.services import numbers as number_service
from centrex.services import ring_groups as ring_group_service
from centrex.services.errors import ServiceError

router = APIRouter(tags=["numbers"])


@router.post(
    "/v1/number-blocks", status_code=status.HTTP_201_CREATED, response_model=NumberBlockOut
)
async def load_block(
    body: NumberBlockIn, session: SessionDep, settings: SettingsDep
) -> NumberBlock:
    return await number_service.load_block(
        session, body.first, body.last, special_fee_cents=settings.special_number_monthly_fee_cents
    )


@router.post(
    "/v1/number-tier-rules", status_code=status.HTTP_201_CREATED, response_model=TierRuleOut
)
async def add_tier_rule(
    body: TierRuleIn, session: SessionDep, settings: SettingsDep
) -> NumberTierRule:
    try:
        check_pattern(body.pattern)
    except TierRuleError as exc:
        raise ServiceError("pattern", str(exc)) from None
    rule = NumberTierRule(**body.model_dump())
    session.add(rule)
    await session.commit()
    await number_service.reclassify_free_numbers(
        session, special_fee_cents=settings.special_number_monthly_fee_cents
    )
    return rule


@router.post("/v1/numbers/allocate", status_code=status.HTTP_201_CREATED, response_model=NumberOut)
async def allocate(body: AllocateIn, session: SessionDep) -> PhoneNumber:
    return await number_service.allocate(
        session,
        customer_id=body.customer_id,
        kind=NumberKind(body.kind),
        zone=body.zone,
        number=body.number,
        now=number_service.utcnow(),
    )


@router.get("/v1/numbers/{number}", response_model=NumberOut)
async def get_number(
    number: NumberText, session: SessionDep, principal: PrincipalDep
) -> PhoneNumber:
    return await _number_of(principal, session, number)


async def _number_of(principal: PrincipalDep, session: SessionDep, number: str) -> PhoneNumber:
    """The number, if it exists for ``principal`` (a customer's own numbers only)."""
    found = await number_service.get_number(session, number)
    visible(principal, found.customer_id, "number", f"{found.national} is not in the inventory")
    return found


@router.post("/v1/numbers/{number}/release", response_model=NumberOut)
async def release(number: NumberText, session: SessionDep, settings: SettingsDep) -> PhoneNumber:
    found = await number_service.get_number(session, number)
    return await number_service.release(
        session, found, now=number_service.utcnow(), quarantine_s=settings.number_quarantine_s
    )


@router.put("/v1/numbers/{number}/destination", response_model=NumberOut)
async def set_destination(
    number: NumberText, body: DestinationIn, session: SessionDep, principal: PrincipalDep
) -> PhoneNumber:
    """Attach an alias number to a line or a ring group; it rings there from the next call."""
    found = await _number_of(principal, session, number)
    return await ring_group_service.set_destination(
        session, found, line_id=body.line_id, ring_group_id=body.ring_group_id
    )


@router.delete("/v1/numbers/{number}/destination", response_model=NumberOut)
async def clear_destination(
    number: NumberText, session: SessionDep, principal: PrincipalDep
) -> PhoneNumber:
    """Detach an alias number: from the next call it answers "not in service"."""
    found = await _number_of(principal, session, number)
    return await ring_group_service.clear_destination(session, found)
